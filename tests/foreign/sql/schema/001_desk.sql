-- A support-desk application on Supabase, unlike the SalesFlow reference: several schemas, a mixed-case table,
-- full-text search and jsonb, row-level security, a view over an indexed table, API roles. Loaded by the test
-- fixture as the table owner (deskapp, not a superuser); auth.* is a stand-in for what Supabase provides.
CREATE SCHEMA IF NOT EXISTS auth;
CREATE TABLE IF NOT EXISTS auth.users (id uuid PRIMARY KEY, email text NOT NULL);
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;

CREATE SCHEMA app;
CREATE SCHEMA reporting;

CREATE TABLE app.organizations (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    plan text NOT NULL DEFAULT 'free'
);

CREATE TABLE app.members (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES app.organizations (id),
    email text NOT NULL,
    role text NOT NULL DEFAULT 'agent'
);

CREATE TABLE app."Tickets" (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES app.organizations (id),
    author_id uuid NOT NULL,
    title text NOT NULL,
    body text,
    status text NOT NULL CHECK (status IN ('open', 'pending', 'solved', 'closed')),
    priority smallint NOT NULL DEFAULT 2,
    metadata jsonb NOT NULL DEFAULT '{}',
    search tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || coalesce(body, ''))) STORED,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE app.comments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id bigint NOT NULL REFERENCES app."Tickets" (id) ON DELETE CASCADE,
    author_id uuid NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reporting.deal_snapshots (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id uuid NOT NULL,
    stage text NOT NULL,
    amount numeric(12, 2) NOT NULL,
    captured_at timestamptz NOT NULL
);

-- A view that depends on the table the phases index: it must survive every converge and rollback.
CREATE VIEW app.open_tickets AS
    SELECT id, org_id, title, priority, created_at FROM app."Tickets" WHERE status = 'open';

ALTER TABLE app."Tickets" ENABLE ROW LEVEL SECURITY;
CREATE POLICY "members read their organization's tickets" ON app."Tickets" FOR SELECT TO authenticated
    USING (org_id IN (SELECT m.org_id FROM app.members m WHERE m.id = auth.uid()));
CREATE POLICY "authors write their own tickets" ON app."Tickets" FOR INSERT TO authenticated
    WITH CHECK (author_id = auth.uid());
ALTER TABLE app.comments ENABLE ROW LEVEL SECURITY;
CREATE POLICY "comments follow their ticket" ON app.comments FOR SELECT TO authenticated
    USING (EXISTS (SELECT FROM app."Tickets" t WHERE t.id = ticket_id));

GRANT USAGE ON SCHEMA app TO anon, authenticated;
GRANT SELECT ON ALL TABLES IN SCHEMA app TO authenticated;
-- As Supabase does: new objects in the API schema are granted to the API roles by default.
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT ALL ON TABLES TO anon, authenticated;
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT EXECUTE ON FUNCTIONS TO anon, authenticated;
