SELECT id, event_type, name, path, created_at
FROM telemetry.events
WHERE project_id = %(project_id)s AND user_id = %(user_id)s
ORDER BY created_at DESC LIMIT 100
