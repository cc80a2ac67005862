SELECT country, count(*) AS events, sum(duration_ms) AS total_ms
FROM telemetry.events
WHERE project_id = %(project_id)s AND created_at >= now() - interval '30 days'
GROUP BY country
