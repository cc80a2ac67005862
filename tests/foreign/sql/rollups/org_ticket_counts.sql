CREATE OR REPLACE FUNCTION app.org_ticket_counts(p_org uuid)
RETURNS TABLE (status text, tickets bigint)
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = app, pg_temp
AS $$
    SELECT s.status, s.tickets FROM app.org_ticket_stats s WHERE s.org_id = p_org ORDER BY s.status
$$;
