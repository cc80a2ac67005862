SELECT id, provider, amount_cents, paid_at FROM box.payments WHERE order_id = %(order_id)s
