SELECT project_id, date_trunc('day', created_at) AS day, count(*) AS events, sum(duration_ms) AS sum_duration_ms
FROM telemetry.events
GROUP BY 1, 2
