SELECT upper(email) AS email FROM app.members ORDER BY id LIMIT 200
