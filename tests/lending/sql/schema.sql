-- A library's circulation (modelled on Koha's items/issues): copies on shelves, loans at circulation desks.
-- The loans table's statistics are stale on purpose: autovacuum is off for it (as on a bulk-loaded table whose
-- nightly ANALYZE ran before the day's loans), so the planner believes almost no loan is open.
CREATE SCHEMA lending;
CREATE TABLE lending.copies (
    id bigint PRIMARY KEY,
    title_id integer NOT NULL,
    branch_id integer NOT NULL,
    shelved_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE lending.loans (
    id bigint PRIMARY KEY,
    copy_id bigint NOT NULL REFERENCES lending.copies (id),
    desk_id integer NOT NULL,
    lent_at timestamptz NOT NULL,
    returned_at timestamptz
) WITH (autovacuum_enabled = false);
CREATE INDEX copies_title_branch ON lending.copies (title_id, branch_id);
CREATE INDEX loans_copy ON lending.loans (copy_id);

INSERT INTO lending.copies (id, title_id, branch_id)
SELECT g, g % 20000, g % 2 + 1 FROM generate_series(1, 100000) AS g;
INSERT INTO lending.loans (id, copy_id, desk_id, lent_at, returned_at)
SELECT g, (g::bigint * 7919) % 100000 + 1, g % 4 + 1, now() - g * interval '30 s', now() - g * interval '29 s'
FROM generate_series(1, :loans) AS g;
ANALYZE lending.copies;
ANALYZE lending.loans;
-- the day's loans after the last ANALYZE: one in 45 is open
UPDATE lending.loans SET returned_at = NULL WHERE id % 45 = 0;
