SELECT id AS org_id FROM app.organizations ORDER BY id
