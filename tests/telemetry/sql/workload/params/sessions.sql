SELECT id AS session_id FROM telemetry.sessions WHERE id % 997 = 0
