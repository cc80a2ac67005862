SELECT date_trunc('hour', created_at) AS hour, count(*) AS errors
FROM telemetry.events
WHERE project_id = %(project_id)s AND event_type = 'error' AND created_at >= now() - interval '2 days'
GROUP BY 1 ORDER BY 1
