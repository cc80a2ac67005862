SELECT status, count(*) AS tickets FROM app."Tickets" GROUP BY status ORDER BY status
