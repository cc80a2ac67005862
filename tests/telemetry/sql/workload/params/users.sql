SELECT DISTINCT ON (project_id) project_id, user_id FROM telemetry.sessions ORDER BY project_id, id
