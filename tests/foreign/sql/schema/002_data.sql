-- Deterministic data: 40 organizations, 400 members, 30,000 tickets, 60,000 comments, 20,000 deal snapshots.
INSERT INTO app.organizations (id, name, plan)
SELECT md5('org' || g)::uuid, 'Org ' || g, (ARRAY['free', 'team', 'enterprise'])[1 + g % 3]
FROM generate_series(1, 40) g;

INSERT INTO app.members (id, org_id, email, role)
SELECT md5('member' || g)::uuid, md5('org' || (1 + g % 40))::uuid,
       CASE WHEN g % 3 = 0 THEN 'Agent' || g || '@Example.COM' ELSE 'agent' || g || '@example.com' END,
       (ARRAY['agent', 'admin'])[1 + (g % 7 = 0)::int]
FROM generate_series(1, 400) g;

INSERT INTO app."Tickets" (org_id, author_id, title, body, status, priority, metadata, created_at)
SELECT md5('org' || (1 + g % 40))::uuid, md5('member' || (1 + g % 400))::uuid,
       (ARRAY['Login fails', 'Invoice missing', 'Export to CSV broken', 'Slow dashboard', 'Password reset email',
              'Webhook retries', 'Billing address change', 'API rate limit'])[1 + g % 8] || ' #' || g,
       'Customer reports: ' || md5(g::text),
       (ARRAY['open', 'pending', 'solved', 'closed'])[1 + (g * 7) % 4],
       1 + g % 4,
       jsonb_build_object('channel', (ARRAY['email', 'chat', 'phone', 'web'])[1 + g % 4], 'vip', g % 50 = 0),
       timestamptz '2026-11-01' - make_interval(mins => g * 3)
FROM generate_series(1, 30000) g;

INSERT INTO app.comments (ticket_id, author_id, body, created_at)
SELECT 1 + g % 30000, md5('member' || (1 + g % 400))::uuid, 'Reply ' || g,
       timestamptz '2026-11-01' - make_interval(mins => g)
FROM generate_series(1, 60000) g;

INSERT INTO reporting.deal_snapshots (org_id, stage, amount, captured_at)
SELECT md5('org' || (1 + g % 40))::uuid, (ARRAY['lead', 'qualified', 'won', 'lost'])[1 + g % 4],
       (g % 1000) * 10.5, timestamptz '2026-11-01' - make_interval(hours => g)
FROM generate_series(1, 20000) g;

ANALYZE;
