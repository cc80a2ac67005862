SELECT project_id, user_id FROM telemetry.sessions WHERE id % 50 = 0
