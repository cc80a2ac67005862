SELECT count(*) AS comments FROM app.comments WHERE created_at >= timestamptz '2026-10-20'
