SELECT id::text AS member_id FROM app.members ORDER BY id
