SELECT id AS project_id FROM telemetry.projects ORDER BY id
