SELECT upper(email) AS email FROM box.customers TABLESAMPLE SYSTEM (2) REPEATABLE (7)
