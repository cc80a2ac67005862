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
    -- One call replaces one query per lead in a Python loop.
    -- Without p_lead_ids: one aggregate over the user's recent events, a row per lead that has any.
    SELECT e.lead_id,
           count(*) FILTER (WHERE e.direction = 'inbound' AND e.created_at >= p_cutoff_14d),
           count(*) FILTER (WHERE e.direction = 'outbound' AND e.created_at >= p_cutoff_14d),
           count(*) FILTER (WHERE e.direction = 'inbound' AND e.created_at >= p_cutoff_7d),
           count(*) FILTER (WHERE e.direction = 'outbound' AND e.created_at >= p_cutoff_7d)
    FROM message_events AS e
    WHERE p_lead_ids IS NULL
      AND e.user_id = p_user_id
      AND e.created_at >= least(p_cutoff_14d, p_cutoff_7d)
      AND e.lead_id IS NOT NULL
    GROUP BY e.lead_id
    UNION ALL
    -- With p_lead_ids (a P-score batch): a row per requested lead, zeros included, from the per-lead index.
    SELECT batch.lead_id, recent.*
    FROM unnest(p_lead_ids) AS batch (lead_id)
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE e.direction = 'inbound' AND e.created_at >= p_cutoff_14d),
               count(*) FILTER (WHERE e.direction = 'outbound' AND e.created_at >= p_cutoff_14d),
               count(*) FILTER (WHERE e.direction = 'inbound' AND e.created_at >= p_cutoff_7d),
               count(*) FILTER (WHERE e.direction = 'outbound' AND e.created_at >= p_cutoff_7d)
        FROM message_events AS e
        WHERE e.lead_id = batch.lead_id
          AND e.user_id = p_user_id
          AND e.created_at >= least(p_cutoff_14d, p_cutoff_7d)
    ) AS recent
    WHERE p_lead_ids IS NOT NULL
$$;
