SELECT id, author_id, body, created_at FROM app.comments WHERE ticket_id = %(ticket_id)s ORDER BY created_at DESC
