-- Deterministic synthetic SalesFlow data, generated set-based inside PostgreSQL.
-- Parameters (psql-style placeholders replaced by pgconverge.seed): :seed, :users, :leads, :events, :notes, :sessions.
-- Every random choice is a bit field of hashint8extended(row number, seed): same seed, same data, any plan.
CREATE TEMP TABLE seed_anchor AS SELECT date_trunc('hour', now()) AS now_;

INSERT INTO users (id, email, created_at)
SELECT md5(:seed || ':user:' || u)::uuid, 'user' || u || '@example.test', (SELECT now_ FROM seed_anchor) - interval '400 days'
FROM generate_series(0, :users - 1) AS u;

INSERT INTO message_templates (id, user_id, name)
SELECT md5(:seed || ':template:' || t)::uuid, md5(:seed || ':user:' || (t / 10))::uuid, 'Template ' || t
FROM generate_series(0, :users * 10 - 1) AS t;

INSERT INTO message_events (user_id, lead_id, template_id, channel, direction, status, subject, created_at)
SELECT md5(:seed || ':user:' || (j % :users))::uuid,
       md5(:seed || ':lead:' || j)::uuid,
       CASE WHEN inbound THEN NULL ELSE md5(:seed || ':template:' || ((j % :users) * 10 + (h >> 20) % 10))::uuid END,
       (ARRAY['email', 'linkedin', 'whatsapp', 'sms'])[1 + ((h & 3))::int],
       CASE WHEN inbound THEN 'inbound' ELSE 'outbound' END,
       CASE WHEN inbound THEN (ARRAY['delivered', 'opened', 'replied'])[1 + (((h >> 4) & 255) % 3)::int]
            ELSE (ARRAY['queued', 'sent', 'delivered', 'opened', 'replied', 'bounced', 'failed'])[1 + (((h >> 4) & 255) % 7)::int]
       END,
       'Subject ' || (h >> 30) % 1000,
       (SELECT now_ FROM seed_anchor) - make_interval(secs => ((h >> 12) & 1073741823) % (180 * 86400))
FROM (
    SELECT i, h, CASE WHEN i < :leads THEN i ELSE ((h >> 33) & 1073741823) % :leads END AS j, (h >> 2) % 3 = 0 AS inbound
    FROM (SELECT i, hashint8extended(i, :seed) & 9223372036854775807 AS h FROM generate_series(0, :events - 1) AS i) AS r
) AS e;

INSERT INTO leads (id, user_id, name, status, p_score, last_activity_at, created_at)
SELECT md5(:seed || ':lead:' || j)::uuid,
       md5(:seed || ':user:' || (j % :users))::uuid,
       'Lead ' || j,
       (ARRAY['new', 'contacted', 'qualified', 'won', 'lost'])[1 + ((h & 7) % 5)::int],
       ((h >> 8) % 10001) / 100.0,
       a.last_at,
       (SELECT now_ FROM seed_anchor) - interval '181 days' - make_interval(secs => (h >> 24) % (180 * 86400))
FROM (SELECT j, hashint8extended(j, :seed + 1) & 9223372036854775807 AS h FROM generate_series(0, :leads - 1) AS j) AS l
LEFT JOIN (SELECT lead_id, max(created_at) AS last_at FROM message_events GROUP BY lead_id) AS a
       ON a.lead_id = md5(:seed || ':lead:' || l.j)::uuid;

INSERT INTO crm_notes (lead_id, user_id, content, created_at)
SELECT md5(:seed || ':lead:' || (i % :leads))::uuid,
       md5(:seed || ':user:' || ((i % :leads) % :users))::uuid,
       'Note ' || i,
       (SELECT now_ FROM seed_anchor) - make_interval(secs => (h >> 4) % (180 * 86400))
FROM (SELECT i, hashint8extended(i, :seed + 2) & 9223372036854775807 AS h FROM generate_series(0, :notes - 1) AS i) AS n;

INSERT INTO rlhf_feedback_sessions (user_id, feedback_type, rating, accepted, created_at)
SELECT md5(:seed || ':user:' || (i % :users))::uuid,
       (ARRAY['draft', 'reply', 'score'])[1 + ((h & 255) % 3)::int],
       1 + (h >> 8) % 5,
       (h >> 16) % 10 < 7,
       (SELECT now_ FROM seed_anchor) - make_interval(secs => (h >> 20) % (180 * 86400))
FROM (SELECT i, hashint8extended(i, :seed + 3) & 9223372036854775807 AS h FROM generate_series(0, :sessions - 1) AS i) AS s;
