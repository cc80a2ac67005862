CREATE OR REPLACE FUNCTION get_unified_inbox(p_user_id uuid, p_limit int DEFAULT 50)
RETURNS TABLE (id bigint, lead_id uuid, channel text, subject text, created_at timestamptz)
LANGUAGE plpgsql
STABLE
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
DECLARE
    seen uuid[] := '{}';
    picked bigint[] := '{}';
    event record;
BEGIN
    -- Newest first: the first message met for a lead is its latest, so the walk stops after p_limit leads
    -- instead of aggregating every inbound message of the user.
    FOR event IN
        SELECT m.id, m.lead_id
        FROM message_events AS m
        WHERE m.user_id = p_user_id AND m.direction = 'inbound' AND m.lead_id IS NOT NULL
        ORDER BY m.created_at DESC
    LOOP
        CONTINUE WHEN event.lead_id = ANY (seen);
        seen := seen || event.lead_id;
        picked := picked || event.id;
        EXIT WHEN cardinality(seen) >= p_limit;
    END LOOP;
    RETURN QUERY
        SELECT m.id, m.lead_id, m.channel, m.subject, m.created_at
        FROM message_events AS m
        WHERE m.id = ANY (picked)
        ORDER BY m.created_at DESC;
END;
$$;
