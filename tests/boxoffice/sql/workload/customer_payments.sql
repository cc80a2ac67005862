SELECT id, order_id, provider, amount_cents, paid_at
FROM box.payments
WHERE customer_id = %(customer)s AND paid_at >= %(since)s AND paid_at < %(until)s
ORDER BY paid_at
