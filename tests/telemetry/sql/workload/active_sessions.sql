SELECT count(*) AS sessions, avg(duration_s) AS mean_s
FROM telemetry.sessions
WHERE project_id = %(project_id)s AND started_at >= now() - interval '1 day'
