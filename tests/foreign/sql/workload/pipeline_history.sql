SELECT captured_at, stage, amount FROM reporting.deal_snapshots
WHERE org_id = %(org_id)s ORDER BY captured_at DESC LIMIT 100
