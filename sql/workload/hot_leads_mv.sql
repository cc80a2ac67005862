-- KPI 4 hot leads, phase 2: read from mv_hot_leads.
SELECT id, name, status, p_score, last_activity_at
FROM mv_hot_leads
WHERE user_id = %(user_id)s
ORDER BY p_score DESC
LIMIT 50
