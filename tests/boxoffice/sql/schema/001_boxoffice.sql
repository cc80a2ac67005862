-- A box office for events (modelled on pretix's orders and payments): organizers' events at venues, customers,
-- orders with a status and an expiry, payments partitioned by month. Sized by :orders (1,200,000 for the bench);
-- only the primary keys and the foreign keys' own indexes the framework created exist, as in a young application.
CREATE SCHEMA box;
CREATE TABLE box.venues (
    id integer PRIMARY KEY,
    name text NOT NULL,
    city text NOT NULL
);
CREATE TABLE box.events (
    id integer PRIMARY KEY,
    venue_id integer NOT NULL REFERENCES box.venues (id),
    title text NOT NULL,
    category text NOT NULL,
    starts_at timestamptz NOT NULL
);
CREATE TABLE box.customers (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    full_name text NOT NULL,
    city text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE box.orders (
    id bigint PRIMARY KEY,
    code text NOT NULL UNIQUE,
    customer_id bigint NOT NULL REFERENCES box.customers (id),
    event_id integer NOT NULL REFERENCES box.events (id),
    status char(1) NOT NULL,  -- n pending, p paid, e expired, c canceled
    total_cents integer NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE box.payments (
    id bigint NOT NULL,
    order_id bigint NOT NULL,
    customer_id bigint NOT NULL,
    provider text NOT NULL,
    amount_cents integer NOT NULL,
    paid_at timestamptz NOT NULL,
    PRIMARY KEY (id, paid_at)
) PARTITION BY RANGE (paid_at);
DO $$
BEGIN
    FOR m IN 0..11 LOOP
        EXECUTE format('CREATE TABLE box.payments_%s PARTITION OF box.payments FOR VALUES FROM (%L) TO (%L)',
                       to_char(date '2025-12-01' + make_interval(months => m), 'YYYY_MM'),
                       date '2025-12-01' + make_interval(months => m),
                       date '2025-12-01' + make_interval(months => m + 1));
    END LOOP;
END $$;
CREATE TABLE box.payments_later PARTITION OF box.payments DEFAULT;

INSERT INTO box.venues SELECT v, 'Venue ' || v, (ARRAY['Berlin', 'Lyon', 'Porto', 'Gdansk', 'Turin'])[1 + v % 5]
FROM generate_series(1, 400) v;
INSERT INTO box.events
SELECT e, 1 + (e * 37) % 400,
       (ARRAY['Spring', 'Midnight', 'Harbour', 'Festival', 'Winter', 'Open Air', 'Jazz', 'Chamber'])[1 + e % 8] || ' '
       || (ARRAY['Gala', 'Session', 'Tour', 'Nights', 'Concert', 'Marathon', 'Weekend'])[1 + (e / 8) % 7] || ' ' || e,
       (ARRAY['music', 'theatre', 'sport', 'comedy'])[1 + e % 4],
       timestamptz '2025-12-01' + make_interval(hours => (e * 7) % 9500)
FROM generate_series(1, 20000) e;
INSERT INTO box.customers
SELECT c, 'Customer' || c || '@' || (ARRAY['mail.example', 'post.example', 'inbox.example'])[1 + c % 3],
       (ARRAY['Anna', 'Jonas', 'Marta', 'Luca', 'Ines', 'Piotr', 'Sofia', 'Tomas', 'Lena', 'Hugo'])[1 + c % 10] || ' '
       || (ARRAY['Keller', 'Rossi', 'Nowak', 'Silva', 'Dubois', 'Berg', 'Costa', 'Lind'])[1 + (c / 10) % 8]
       || '-' || md5(c::text)::char(6),
       (ARRAY['Berlin', 'Lyon', 'Porto', 'Gdansk', 'Turin'])[1 + c % 5],
       timestamptz '2025-06-01' + make_interval(mins => c % 250000)
FROM generate_series(1, greatest(:orders / 4, 1000)) c;
INSERT INTO box.orders
SELECT o, 'O' || lpad(upper(to_hex(o)), 8, '0'), 1 + (o::bigint * 7919) % greatest(:orders / 4, 1000),
       1 + (o::bigint * 104729) % 20000,
       CASE WHEN o % 50 = 0 THEN 'n' WHEN o % 17 = 0 THEN 'c' WHEN o % 23 = 0 THEN 'e' ELSE 'p' END,
       1500 + (o * 13) % 20000,
       timestamptz '2025-12-01' + make_interval(secs => (o::bigint * 104723) % 31000000),
       timestamptz '2025-12-01' + make_interval(secs => (o::bigint * 104723) % 31000000 + 900)
FROM generate_series(1, :orders) o;
INSERT INTO box.payments
SELECT o.id, o.id, o.customer_id, (ARRAY['card', 'paypal', 'sepa', 'voucher'])[1 + o.id % 4], o.total_cents,
       o.created_at + interval '3 minutes'
FROM box.orders o WHERE o.status IN ('p', 'c');
ANALYZE box.venues, box.events, box.customers, box.orders, box.payments;
