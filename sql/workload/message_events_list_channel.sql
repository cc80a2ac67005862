-- KPI 2 message events list filtered by channel: one user's events with a status on one channel, page of 50.
SELECT id, lead_id, channel, direction, status, subject, created_at
FROM message_events
WHERE user_id = %(user_id)s
  AND channel = %(channel)s
  AND status = %(status)s
ORDER BY created_at DESC
LIMIT 50
