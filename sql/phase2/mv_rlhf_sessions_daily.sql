-- Dashboard analytics precomputed: one row per user and day.
SELECT user_id,
       date_trunc('day', created_at) AS day,
       count(*) AS sessions,
       round(avg(rating), 2) AS mean_rating,
       round(avg(accepted::int), 3) AS acceptance_rate
FROM rlhf_feedback_sessions
GROUP BY user_id, date_trunc('day', created_at)
