-- The tracker's ingest while the bench runs: a batch of fresh events for busy projects.
INSERT INTO telemetry.events (project_id, session_id, user_id, event_type, name, path, duration_ms, country, created_at)
SELECT 1 + (g % 3) * (g % 5), g, g / 4, 'pageview', 'page_loaded', '/app/dashboard', 120, 'de', now()
FROM generate_series(1, 50) g
