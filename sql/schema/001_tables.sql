-- SalesFlow reference schema (../shared/reference-schema.md): for the lab, tests and benchmarks only.
-- Foreign keys and checks live in 002_constraints.sql so that bulk loads can run before them.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text,
    created_at timestamptz DEFAULT now()
);

CREATE TABLE leads (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    name text,
    status text,
    p_score numeric(5,2),
    last_activity_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE message_templates (
    id uuid PRIMARY KEY,
    user_id uuid,
    name text
);

CREATE TABLE message_events (
    id bigserial PRIMARY KEY,
    user_id uuid NOT NULL,
    lead_id uuid,
    template_id uuid,
    channel text,
    direction text,
    status text,
    subject text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE crm_notes (
    id bigserial PRIMARY KEY,
    lead_id uuid,
    user_id uuid NOT NULL,
    content text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rlhf_feedback_sessions (
    id bigserial PRIMARY KEY,
    user_id uuid NOT NULL,
    feedback_type text,
    rating int,
    accepted boolean,
    created_at timestamptz NOT NULL DEFAULT now()
);
