SELECT id, org_id, role FROM app.members WHERE lower(email) = lower(%(email)s)
