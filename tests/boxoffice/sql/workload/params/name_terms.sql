SELECT right(full_name, 5) AS term FROM box.customers TABLESAMPLE SYSTEM (2) REPEATABLE (7)
