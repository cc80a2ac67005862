SELECT org_id, status, count(*) AS tickets, max(created_at) AS last_ticket_at
FROM app."Tickets"
GROUP BY org_id, status
