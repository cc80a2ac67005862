SELECT id, full_name, email FROM box.customers WHERE full_name ILIKE '%%' || %(term)s || '%%' LIMIT 20
