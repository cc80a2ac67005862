-- KPI 3 P-score, the old way: one query per lead, run 100 times from a Python loop.
SELECT direction, created_at
FROM message_events
WHERE lead_id = %(lead_id)s
  AND created_at >= now() - interval '14 days'
