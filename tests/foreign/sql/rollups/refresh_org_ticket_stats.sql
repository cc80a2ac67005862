CREATE OR REPLACE FUNCTION app.refresh_org_ticket_stats() RETURNS void
LANGUAGE sql
SECURITY INVOKER
SET search_path = app, pg_temp
AS $$ REFRESH MATERIALIZED VIEW CONCURRENTLY app.org_ticket_stats $$;
