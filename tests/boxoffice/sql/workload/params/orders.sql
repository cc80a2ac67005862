SELECT id AS order_id FROM box.orders TABLESAMPLE SYSTEM (1) REPEATABLE (7) WHERE status = 'p'
