SELECT date_trunc('day', created_at) AS day, count(*) AS events, avg(duration_ms) AS mean_ms
FROM telemetry.events
WHERE project_id = %(project_id)s AND created_at >= now() - interval '30 days'
GROUP BY 1 ORDER BY 1
