-- KPI 5 unified inbox: one user's latest inbound message per lead across channels, newest conversations first, 50.
SELECT e.id, e.lead_id, e.channel, e.subject, e.created_at
FROM (
    SELECT DISTINCT ON (lead_id) id, lead_id, channel, subject, created_at
    FROM message_events
    WHERE user_id = %(user_id)s
      AND direction = 'inbound'
    ORDER BY lead_id, created_at DESC
) AS e
ORDER BY e.created_at DESC
LIMIT 50
