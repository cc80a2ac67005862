SELECT status, count(*) AS orders, sum(total_cents) AS cents
FROM box.orders WHERE event_id = %(event)s GROUP BY status
