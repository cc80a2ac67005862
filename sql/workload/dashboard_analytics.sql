-- KPI 1 dashboard analytics: one user's RLHF feedback per day over the last 30 days.
SELECT date_trunc('day', created_at) AS day,
       count(*) AS sessions,
       round(avg(rating), 2) AS mean_rating,
       round(avg(accepted::int), 3) AS acceptance_rate
FROM rlhf_feedback_sessions
WHERE user_id = %(user_id)s
  AND created_at >= now() - interval '30 days'
GROUP BY 1
ORDER BY 1
