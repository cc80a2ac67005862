CREATE OR REPLACE FUNCTION refresh_hot_leads_mv()
RETURNS void
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
BEGIN
    -- CONCURRENTLY keeps the view readable during the refresh (needs the view's unique index).
    REFRESH MATERIALIZED VIEW CONCURRENTLY public.mv_hot_leads;
END;
$$;
