-- KPI 5 unified inbox: one user's latest inbound message per lead across channels, newest conversations first, 50.
-- The latest message per lead comes from the index alone; only the 50 shown are read from the table.
SELECT e.id, e.lead_id, e.channel, e.subject, e.created_at
FROM (
    SELECT id, created_at
    FROM (
        SELECT DISTINCT ON (lead_id) id, created_at
        FROM message_events
        WHERE user_id = %(user_id)s
          AND direction = 'inbound'
        ORDER BY lead_id, created_at DESC
    ) AS per_lead
    ORDER BY created_at DESC
    LIMIT 50
) AS latest
JOIN message_events AS e ON e.id = latest.id
ORDER BY latest.created_at DESC
