-- KPI 3 P-score batch, the new way: inbound/outbound counts for the last 14 and 7 days of 100 of a user's leads,
-- one call instead of one query per lead.
SELECT lead_id, inbound_14d, outbound_14d, inbound_7d, outbound_7d
FROM calculate_lead_event_stats(%(user_id)s, now() - interval '14 days', now() - interval '7 days', %(lead_ids)s)
