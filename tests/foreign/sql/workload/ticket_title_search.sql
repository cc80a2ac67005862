SELECT id, title, status FROM app."Tickets"
WHERE org_id = %(org_id)s AND title ILIKE %(pattern)s
ORDER BY created_at DESC LIMIT 20
