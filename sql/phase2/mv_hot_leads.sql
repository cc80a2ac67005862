-- Hot leads: p_score >= 70 with activity in the last 7 days.
SELECT id, user_id, name, status, p_score, last_activity_at
FROM leads
WHERE p_score >= 70
  AND last_activity_at >= now() - interval '7 days'
