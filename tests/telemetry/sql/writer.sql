-- The tracker's ingest while the bench runs: 10 fresh events every 50 ms (~200 rows/s, several hundred times the
-- history's average of 2 M events over 90 days) for busy projects.
INSERT INTO telemetry.events (project_id, session_id, user_id, event_type, name, path, duration_ms, country, created_at)
SELECT 1 + (g % 3) * (g % 5), g, g / 4, 'pageview', 'page_loaded', '/app/dashboard', 120, 'de', now()
FROM generate_series(1, 10) g
