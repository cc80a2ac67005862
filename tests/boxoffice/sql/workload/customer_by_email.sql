SELECT id, full_name, city FROM box.customers WHERE lower(email) = lower(%(email)s)
