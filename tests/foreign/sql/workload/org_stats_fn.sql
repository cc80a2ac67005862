SELECT * FROM app.org_ticket_counts(%(org_id)s)
