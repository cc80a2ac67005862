-- Users × message statuses × channels, a fixed pseudo-random 1,000 of the combinations.
SELECT u.user_id, s.status, c.channel
FROM (SELECT user_id FROM leads GROUP BY user_id ORDER BY user_id LIMIT 200) AS u
CROSS JOIN (VALUES ('queued'), ('sent'), ('delivered'), ('opened'), ('replied'), ('bounced'), ('failed')) AS s (status)
CROSS JOIN (VALUES ('email'), ('linkedin'), ('whatsapp'), ('sms')) AS c (channel)
ORDER BY md5(u.user_id::text || s.status || c.channel)
LIMIT 1000
