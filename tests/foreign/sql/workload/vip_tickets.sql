SELECT id, title FROM app."Tickets" WHERE metadata @> '{"vip": true}' AND org_id = %(org_id)s
