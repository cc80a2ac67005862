-- Users who have leads: up to 200, in a fixed order so every run samples the same set.
SELECT user_id FROM leads GROUP BY user_id ORDER BY user_id LIMIT 200
