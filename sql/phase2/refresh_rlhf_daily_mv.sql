CREATE OR REPLACE FUNCTION refresh_rlhf_daily_mv()
RETURNS void
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
BEGIN
    -- CONCURRENTLY keeps the view readable during the refresh (needs the view's unique index).
    REFRESH MATERIALIZED VIEW CONCURRENTLY public.mv_rlhf_sessions_daily;
END;
$$;
