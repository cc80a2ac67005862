-- Each user with a batch of up to 100 of their leads: the P-score batch.
SELECT user_id, (array_agg(id ORDER BY id))[1:100] AS lead_ids
FROM leads
WHERE user_id IN (SELECT user_id FROM leads GROUP BY user_id ORDER BY user_id LIMIT 200)
GROUP BY user_id
