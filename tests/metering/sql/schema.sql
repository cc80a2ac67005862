-- Usage metering for an API platform (modelled on Lago's/OpenMeter's events tables): one tenant sends most events.
CREATE SCHEMA metering;
CREATE TABLE metering.usage_events (
    id bigint PRIMARY KEY,
    tenant_id integer NOT NULL,
    meter text NOT NULL,
    quantity integer NOT NULL,
    recorded_at timestamptz NOT NULL
);
INSERT INTO metering.usage_events
SELECT g, CASE WHEN g % 3 <> 0 THEN 1 ELSE 2 + g % 150 END, 'api_calls', 1 + g % 7, now() - g * interval '1 s'
FROM generate_series(1, 300000) AS g;
CREATE INDEX usage_events_tenant ON metering.usage_events (tenant_id) INCLUDE (quantity);
VACUUM ANALYZE metering.usage_events;
