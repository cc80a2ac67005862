-- KPI 4 hot leads: one user's leads with p_score >= 70 and activity in the last 7 days, best first, 50.
SELECT id, name, status, p_score, last_activity_at
FROM leads
WHERE user_id = %(user_id)s
  AND p_score >= 70
  AND last_activity_at >= now() - interval '7 days'
ORDER BY p_score DESC
LIMIT 50
