SELECT id, user_id, name, path, duration_ms, country, created_at
FROM telemetry.events
WHERE project_id = %(project_id)s AND event_type = 'error'
ORDER BY created_at DESC LIMIT 50
