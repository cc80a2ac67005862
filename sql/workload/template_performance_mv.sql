-- Template performance, phase 2: read from mv_template_performance.
SELECT template_id, sent, opened, replied, open_rate, reply_rate
FROM mv_template_performance
WHERE user_id = %(user_id)s
