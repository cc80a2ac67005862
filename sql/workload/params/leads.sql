-- A repeatable sample of up to 1,000 leads (the old per-lead P-score query).
SELECT id AS lead_id FROM leads TABLESAMPLE SYSTEM (5) REPEATABLE (7) LIMIT 1000
