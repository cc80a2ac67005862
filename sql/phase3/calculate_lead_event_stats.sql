CREATE OR REPLACE FUNCTION calculate_lead_event_stats(
    p_user_id uuid,
    p_cutoff_14d timestamptz,
    p_cutoff_7d timestamptz,
    p_lead_ids uuid[] DEFAULT NULL
)
RETURNS TABLE (lead_id uuid, inbound_14d bigint, outbound_14d bigint, inbound_7d bigint, outbound_7d bigint)
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
    -- One aggregate over the user's recent events replaces one query per lead in a Python loop.
    -- p_lead_ids (optional) limits the answer to one batch of leads; NULL answers for all of the user's leads.
    SELECT e.lead_id,
           count(*) FILTER (WHERE e.direction = 'inbound' AND e.created_at >= p_cutoff_14d),
           count(*) FILTER (WHERE e.direction = 'outbound' AND e.created_at >= p_cutoff_14d),
           count(*) FILTER (WHERE e.direction = 'inbound' AND e.created_at >= p_cutoff_7d),
           count(*) FILTER (WHERE e.direction = 'outbound' AND e.created_at >= p_cutoff_7d)
    FROM message_events AS e
    WHERE e.user_id = p_user_id
      AND e.created_at >= least(p_cutoff_14d, p_cutoff_7d)
      AND e.lead_id IS NOT NULL
      AND (p_lead_ids IS NULL OR e.lead_id = ANY (p_lead_ids))
    GROUP BY e.lead_id
$$;
