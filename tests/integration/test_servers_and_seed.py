"""The real servers the fixtures start, and the deterministic seed."""

from __future__ import annotations

import psycopg
import pytest
import redis

from pgconverge.errors import UserError
from pgconverge.lab import seed


def test_cluster_preloads_both_extensions_and_app_role_is_not_superuser(servers, cron_db):
    with psycopg.connect(servers.superuser_url()) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        assert "pg_stat_statements" in preload and "pg_cron" in preload
    with psycopg.connect(cron_db) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0] is False
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone()[0] == 0


def test_redis_requires_the_password(servers):
    state = servers.state()
    assert redis.Redis(port=state.redis_port, password=state.redis_password).ping() is True
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=state.redis_port).ping()


def test_scale_s_counts_and_every_lead_has_activity(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in seed.TABLES}
        idle = conn.execute("SELECT count(*) FROM leads WHERE last_activity_at IS NULL").fetchone()[0]
        inbound = conn.execute("SELECT avg((direction = 'inbound')::int) FROM message_events").fetchone()[0]
    assert counts == {"users": 20, "leads": 2000, "message_templates": 200, "message_events": 20000,
                      "crm_notes": 2000, "rlhf_feedback_sessions": 4000}
    assert idle == 0
    assert 0.30 < float(inbound) < 0.37


def test_seeding_again_is_a_noop_and_same_seed_gives_same_data(fresh_db, cron_db):
    lines: list[str] = []
    seed.seed(fresh_db, "S", 42, echo=lines.append)
    assert lines == [f"already seeded ({seed.SEED_MARK} scale=S seed=42) — nothing to do"]
    checksum = "SELECT md5(string_agg(id::text || p_score::text || status, ',' ORDER BY id)) FROM leads"
    with psycopg.connect(fresh_db) as a, psycopg.connect(cron_db) as b:
        assert a.execute(checksum).fetchone() == b.execute(checksum).fetchone()
    with pytest.raises(UserError, match="already holds SalesFlow tables"):
        seed.seed(fresh_db, "M", 42)
