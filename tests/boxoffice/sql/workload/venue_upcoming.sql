SELECT id, title, starts_at FROM box.events
WHERE venue_id = %(venue)s AND starts_at >= %(after)s ORDER BY starts_at LIMIT 10
