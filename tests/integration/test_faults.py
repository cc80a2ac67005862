"""Reduced fault matrix in `make test`; the full one is `make faults` (tests/fault_matrix.py)."""

from __future__ import annotations

import os
import subprocess
import time

import psycopg
import pytest

from tests.conftest import PYINFRA, REPO, run_pyinfra
from tests.fault_matrix import checksums, inject, points_from_plan, summary
from tests.integration.test_converge import ok

pytestmark = pytest.mark.integration


def test_reduced_fault_matrix_converges_and_loses_nothing(cron_db, tmp_path, capsys):
    every = points_from_plan(cron_db)
    wanted = ("backup of phase1", "phase1 index idx_message_events_user_status_created: CREATE",
              "phase1 index idx_crm_notes_user_created: COMMENT", "phase2 materialized view mv_hot_leads",
              "phase2 function refresh_hot_leads_mv", "phase2 cron job refresh-hot-leads")
    points = [next(p for p in every if p.label.startswith(w)) for w in wanted]
    outcomes = []
    for point in points:
        outcomes.append(inject(cron_db, point, tmp_path, delay=0.3))
        from tests.fault_matrix import rollback_everything

        rollback_everything(cron_db)
    report = summary(outcomes)
    with capsys.disabled():
        print("\n" + report)
    assert [o.point.label for o in outcomes if not o.injected] == []
    assert [(o.point.label, o.detail) for o in outcomes if not o.converged] == []
    assert [o.rows_changed for o in outcomes if o.rows_changed] == []


def test_postgres_restart_mid_run_fails_clearly_and_rerun_converges(cron_db, servers, tmp_path):
    before = checksums(cron_db)
    env = {**os.environ, "DATABASE_URL": cron_db, "PGCONVERGE_STEP_DELAY": "0.3",
           "PGCONVERGE_BACKUP_DIR": str(tmp_path)}
    runner = subprocess.Popen([PYINFRA, "inventory/lab.py", "deploys/all.py", "-y"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    with psycopg.connect(cron_db, autocommit=True) as probe:
        for _ in range(3000):
            if probe.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'idx_message_events%'").fetchone()[0] >= 2:
                break
            time.sleep(0.01)
    servers._pg(["pg_ctl", "-D", str(servers.pg_data), "-m", "fast", "-w", "restart", "-l", str(servers.pg_log)])
    output, _ = runner.communicate(timeout=300)
    assert runner.returncode != 0
    failure = [line for line in output.splitlines() if "terminat" in line.lower() or "connection" in line.lower()]
    assert failure, output[-2000:]
    assert "Traceback" not in output
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    with psycopg.connect(cron_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0] == 0
    assert checksums(cron_db) == before


def test_app_queries_never_wait_behind_an_mv_swap_longer_than_exclusive_lock_timeout(cron_db, project):
    """A long transaction reads the view; our swap's ACCESS EXCLUSIVE request queues behind it and gives up within
    exclusive_lock_timeout (not the 3 s lock_timeout), so the application's queries queue at most that long."""
    phases = project / "phases.yml"
    phases.write_text(phases.read_text().replace("exclusive_lock_timeout: 400ms", "exclusive_lock_timeout: 300ms")
                      .replace("lock_retries: 5", "lock_retries: 3").replace("retry_backoff_seconds: 1.0",
                                                                             "retry_backoff_seconds: 0.2"))
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    view_sql = project / "sql" / "phase2" / "mv_hot_leads.sql"
    view_sql.write_text(view_sql.read_text().replace("p_score >= 70", "p_score >= 75"))
    waits = []
    with psycopg.connect(cron_db) as long_tx:
        long_tx.execute("SELECT count(*) FROM mv_hot_leads")  # holds ACCESS SHARE until the end
        long_pid = long_tx.info.backend_pid
        runner = subprocess.Popen([PYINFRA, "inventory/lab.py", "deploys/phase2.py", "-y"], cwd=REPO,
                                  env={**os.environ, "DATABASE_URL": cron_db, "PGCONVERGE_PHASES": str(phases)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with psycopg.connect(cron_db, autocommit=True) as app:
            deadline = time.monotonic() + 20
            while runner.poll() is None and time.monotonic() < deadline:
                started = time.monotonic()
                app.execute("SELECT count(*) FROM mv_hot_leads").fetchone()
                waits.append(time.monotonic() - started)
                time.sleep(0.01)
        long_tx.rollback()
        output, _ = runner.communicate(timeout=120)
    assert "lock busy on materialized view mv_hot_leads" in output, output[-2000:]
    assert runner.returncode != 0 and "lock not available after 4 tries of lock_timeout 300ms" in output
    assert f"blocked by pid {long_pid}" in output and "SELECT count(*) FROM mv_hot_leads" in output
    # 300 ms per try plus scheduling noise on a busy machine; the 3 s lock_timeout would show as ~3 s
    assert max(waits) < 1.5, f"an application query waited {max(waits):.3f} s"
    assert len(waits) > 50
