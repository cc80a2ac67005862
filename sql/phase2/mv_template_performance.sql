-- Template performance: sent, opened, replied counts and rates per template.
SELECT template_id,
       user_id,
       count(*) FILTER (WHERE status IN ('sent', 'delivered', 'opened', 'replied')) AS sent,
       count(*) FILTER (WHERE status IN ('opened', 'replied')) AS opened,
       count(*) FILTER (WHERE status = 'replied') AS replied,
       round(count(*) FILTER (WHERE status IN ('opened', 'replied'))::numeric
             / nullif(count(*) FILTER (WHERE status IN ('sent', 'delivered', 'opened', 'replied')), 0), 3) AS open_rate,
       round(count(*) FILTER (WHERE status = 'replied')::numeric
             / nullif(count(*) FILTER (WHERE status IN ('sent', 'delivered', 'opened', 'replied')), 0), 3) AS reply_rate
FROM message_events
WHERE template_id IS NOT NULL
GROUP BY template_id, user_id
