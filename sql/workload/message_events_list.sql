-- KPI 2 message events list: one user's events with a given status, newest first, page of 50.
SELECT id, lead_id, channel, direction, status, subject, created_at
FROM message_events
WHERE user_id = %(user_id)s
  AND status = %(status)s
ORDER BY created_at DESC
LIMIT 50
