SELECT name, count(*) AS times
FROM telemetry.events
WHERE project_id = %(project_id)s AND event_type = 'custom' AND created_at >= now() - interval '30 days'
GROUP BY name ORDER BY times DESC
