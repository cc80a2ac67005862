SELECT path, count(*) AS views
FROM telemetry.events
WHERE project_id = %(project_id)s AND event_type = 'pageview' AND created_at >= now() - interval '7 days'
GROUP BY path ORDER BY views DESC LIMIT 20
