-- KPI 1 dashboard analytics, phase 2: read from mv_rlhf_sessions_daily instead of aggregating raw sessions.
SELECT day, sessions, mean_rating, acceptance_rate
FROM mv_rlhf_sessions_daily
WHERE user_id = %(user_id)s
  AND day >= now() - interval '30 days'
ORDER BY day
