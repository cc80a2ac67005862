SELECT id, code, event_id, status, total_cents, created_at
FROM box.orders WHERE customer_id = %(customer)s ORDER BY created_at DESC LIMIT 20
