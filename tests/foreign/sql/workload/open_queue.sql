SELECT id, title, priority, created_at FROM app."Tickets"
WHERE org_id = %(org_id)s AND status = 'open'
ORDER BY priority DESC, created_at LIMIT 50
