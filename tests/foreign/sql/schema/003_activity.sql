-- Ticket activity as busy help desks keep it: partitioned by month, the current month sub-partitioned by channel
-- (a partition that is partitioned itself); 150,000 events. And what two old migrations left: the same index on
-- comments twice, under two names — the application's, not ours.
CREATE TABLE app.ticket_events (
    ticket_id bigint NOT NULL,
    org_id uuid NOT NULL,
    channel text NOT NULL,
    kind text NOT NULL,
    happened_at timestamptz NOT NULL
) PARTITION BY RANGE (happened_at);
CREATE TABLE app.ticket_events_2026_09 PARTITION OF app.ticket_events
    FOR VALUES FROM ('2026-09-01') TO ('2026-10-01');
CREATE TABLE app.ticket_events_2026_10 PARTITION OF app.ticket_events
    FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE app.ticket_events_2026_11 PARTITION OF app.ticket_events
    FOR VALUES FROM ('2026-11-01') TO ('2026-12-01') PARTITION BY LIST (channel);
CREATE TABLE app.ticket_events_2026_11_email PARTITION OF app.ticket_events_2026_11 FOR VALUES IN ('email');
CREATE TABLE app.ticket_events_2026_11_other PARTITION OF app.ticket_events_2026_11 DEFAULT;

INSERT INTO app.ticket_events (ticket_id, org_id, channel, kind, happened_at)
SELECT 1 + g % 30000, md5('org' || (1 + g % 40))::uuid, (ARRAY['email', 'chat', 'phone', 'web'])[1 + g % 4],
       (ARRAY['created', 'replied', 'assigned', 'solved'])[1 + (g / 7) % 4],
       timestamptz '2026-09-01' + make_interval(secs => (g * 52) % 7862400)
FROM generate_series(1, 150000) g;

CREATE INDEX comments_ticket ON app.comments (ticket_id);
CREATE INDEX comments_ticket_id_idx ON app.comments (ticket_id);

ANALYZE app.ticket_events;
