SELECT id, code, customer_id FROM box.orders
WHERE status = 'n' AND expires_at < now() ORDER BY expires_at LIMIT 100
