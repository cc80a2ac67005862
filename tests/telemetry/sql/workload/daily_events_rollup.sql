SELECT day, events, sum_duration_ms::numeric / nullif(events, 0) AS mean_ms
FROM telemetry.events_daily
WHERE project_id = %(project_id)s AND day >= date_trunc('day', now() - interval '30 days')
ORDER BY day
