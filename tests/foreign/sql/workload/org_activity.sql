SELECT ticket_id, kind, happened_at FROM app.ticket_events
WHERE org_id = %(org_id)s ORDER BY happened_at DESC LIMIT 50
