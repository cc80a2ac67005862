-- Template performance: per template of one user, sent/opened/replied counts and rates.
SELECT template_id,
       count(*) FILTER (WHERE status IN ('sent', 'delivered', 'opened', 'replied')) AS sent,
       count(*) FILTER (WHERE status IN ('opened', 'replied')) AS opened,
       count(*) FILTER (WHERE status = 'replied') AS replied
FROM message_events
WHERE user_id = %(user_id)s
  AND template_id IS NOT NULL
GROUP BY template_id
