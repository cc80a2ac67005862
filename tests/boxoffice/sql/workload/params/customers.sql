SELECT id AS customer, timestamptz '2026-01-01' + make_interval(days => (id % 200)::int) AS since,
       timestamptz '2026-01-01' + make_interval(days => (id % 200)::int + 90) AS until
FROM box.customers TABLESAMPLE SYSTEM (2) REPEATABLE (7)
