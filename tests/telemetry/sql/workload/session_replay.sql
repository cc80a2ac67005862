SELECT id, event_type, name, path, duration_ms, created_at
FROM telemetry.events WHERE session_id = %(session_id)s ORDER BY created_at
