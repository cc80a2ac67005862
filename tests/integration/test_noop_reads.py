"""A run that changes nothing costs what it must (issue 30, the deploy path that starts fast), seen from the server's
own statistics (pg_stat_statements), through the real pyinfra CLI: over two phases the catalog is read once, and the
declared indexes are not built on probes again; after a run sends a change, the next phase reads it again."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pgconverge.lab import reset_statements
from tests.conftest import run_pyinfra

pytestmark = pytest.mark.integration

# a CRM's two lookups, one phase each (SalesFlow's tables: the reference schema the lab seeds)
PHASES = """
version: 1
phases:
  - id: owners
    title: leads by owner
    backup: false
    indexes:
      - {name: idx_noop_leads_owner, table: leads, columns: [user_id, created_at DESC]}
  - id: channels
    title: events by channel
    requires: [owners]
    backup: false
    indexes:
      - {name: idx_noop_events_channel, table: message_events, columns: [channel, created_at DESC]}
"""
CATALOG_READ = "%pg_get_indexdef(i.indexrelid)%"  # kinds/index.py's catalog query
PROBE_BUILD = "CREATE TEMP TABLE%pgconverge_probe_%"


def counted(servers, url: str) -> dict[str, int]:
    with psycopg.connect(servers.superuser_url(url.rsplit("/", 1)[1]), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT %s, coalesce(sum(calls), 0) FROM extensions.pg_stat_statements WHERE query LIKE %s"
            " AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " UNION ALL SELECT %s, coalesce(sum(calls), 0) FROM extensions.pg_stat_statements WHERE query LIKE %s"
            " AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            ["catalog", CATALOG_READ, "probes", PROBE_BUILD]).fetchall()
        reset_statements(conn)
    return {name: int(calls) for name, calls in rows}


def test_a_noop_over_two_phases_reads_the_catalog_once_and_renders_from_the_cache(servers, fresh_db, tmp_path: Path):
    (tmp_path / "sql").mkdir()
    (tmp_path / "phases.yml").write_text(PHASES)
    first = run_pyinfra(fresh_db, "deploys/all.py", "-y", phases=tmp_path / "phases.yml")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    counted(servers, fresh_db)  # from here on: what the next runs cost

    noop = run_pyinfra(fresh_db, "deploys/all.py", "-y", phases=tmp_path / "phases.yml")
    assert noop.returncode == 0 and "summary: 0 statements applied" in noop.stdout + noop.stderr, noop.stderr[-2000:]
    assert counted(servers, fresh_db) == {"catalog": 1, "probes": 0}

    # a change in the first phase: the second one plans on a catalog read after it
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DROP INDEX idx_noop_leads_owner")
    repair = run_pyinfra(fresh_db, "deploys/all.py", "-y", phases=tmp_path / "phases.yml")
    assert repair.returncode == 0 and "summary: 2 statements applied" in repair.stdout + repair.stderr, \
        repair.stderr[-2000:]
    assert counted(servers, fresh_db)["catalog"] == 2
