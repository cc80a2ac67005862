"""Gates on a busy machine: two CPU-bound processes and a writing client run beside every converge. A not-slower
gate on a statement whose plan the phase does not change passes as "plan unchanged" even at a ratio of 1.0 with no
slack (a stopwatch would fail it on noise); the lending regression fails on the work it does and is reverted. No
assertion here depends on how long anything took."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from pgconverge.lab.bench_gates import busy_cpus
from tests.conftest import run_pyinfra, writing
from tests.integration.test_advise_regressions import LENDING, lending_db, shape  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

UNRELATED_INDEX = """
  - id: loan_history
    title: "Loans by date: an index the shelf query never reads"
    on_gate_failure: revert
    indexes:
      - name: loans_by_lent_at
        table: loans
        columns: [lent_at]
    gates:
      - name: shelf_unchanged
        kind: latency
        query: copies_on_shelf
        max_ratio_to_before: 1.0
        runs: 20
"""


@pytest.fixture
def lending_project(tmp_path) -> Path:
    shutil.copytree(LENDING, tmp_path / "lending")
    phases = tmp_path / "lending" / "phases.yml"
    phases.write_text(phases.read_text() + UNRELATED_INDEX)
    return phases


def converge_under_load(url: str, phase: str, phases: Path) -> str:
    writes = "INSERT INTO lending.loans (id, copy_id, desk_id, lent_at) SELECT max(id) + 1, 1, 1, now() FROM lending.loans"
    with busy_cpus(), writing(url, writes):
        result = run_pyinfra(url, "deploys/phase.py", "-y", "--data", f"phase={phase}", phases=phases)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out[-3000:]
    return out if result.returncode == 0 else "EXIT≠0\n" + out


def test_a_gate_on_a_statement_the_phase_does_not_change_passes_under_load(lending_db, lending_project):  # noqa: F811
    out = converge_under_load(lending_db, "loan_history", lending_project)
    assert not out.startswith("EXIT≠0"), out[-3000:]
    line = re.search(r"gate shelf_unchanged \(latency, query copies_on_shelf\) passed: measured plan unchanged on"
                     r" (\d) parameter sets — not affected by this phase; timing for information p50 [\d.]+ / p95"
                     r" [\d.]+ .*threshold ≤ 1.0× before", out)
    assert line and int(line.group(1)) >= 2, out[-3000:]
    assert "reverted" not in out


def test_a_regression_fails_on_its_work_under_load_and_is_reverted(lending_db, lending_project):  # noqa: F811
    before = shape(lending_db)
    out = converge_under_load(lending_db, "desk_queue", lending_project)
    assert out.startswith("EXIT≠0"), out[-3000:]
    assert re.search(r"gate shelf_not_slower \(query copies_on_shelf\) failed after the phase was applied — reverted:"
                     r" dropped index loans_open_by_desk; .* FAILED: measured plan changed; work [\d,]+ → [\d,]+"
                     r" blocks over \d parameter sets, per-set ratio median [\d.]+ / worst [\d.]+", out), out[-3000:]
    assert shape(lending_db) == before


def settings_with(phases: Path, lines: str) -> None:
    phases.write_text(phases.read_text().replace("  lock_timeout: 3s\n", f"  lock_timeout: 3s\n{lines}", 1))


def test_a_build_pauses_while_sessions_wait_for_locks_and_the_next_run_builds(lending_db, lending_project):  # noqa: F811
    settings_with(lending_project, "  pause_builds_at_lock_waiters: 0\n  max_build_pause: 4s\n")
    with psycopg.connect(lending_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.desk_notes (id int, note text)")
        conn.execute("INSERT INTO public.desk_notes VALUES (1, '')")
    # two clerks editing one note: the second waits for the first's row lock
    holder = psycopg.connect(lending_db)
    holder.execute("SELECT * FROM public.desk_notes WHERE id = 1 FOR UPDATE")
    waiter = threading.Thread(target=lambda: psycopg.connect(lending_db, autocommit=True).execute(
        "UPDATE public.desk_notes SET note = 'returned' WHERE id = 1"))
    waiter.start()
    try:
        stopped = run_pyinfra(lending_db, "deploys/phase.py", "-y", "--data", "phase=loan_history",
                              phases=lending_project, timeout=120)
    finally:
        holder.rollback()
        holder.close()
        waiter.join()
    out = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0 and "Traceback" not in out, out[-3000:]
    assert "pausing before index loans_by_lent_at: 1 sessions waiting for locks (> 0)" in out, out[-3000:]
    assert ("index loans_by_lent_at: the database stayed under stress for 4s (1 sessions waiting for locks (> 0)):"
            " not built — run again at a quieter time") in out, out[-3000:]
    with psycopg.connect(lending_db) as conn:
        assert conn.execute("SELECT to_regclass('lending.loans_by_lent_at')").fetchone()[0] is None
    again = run_pyinfra(lending_db, "deploys/phase.py", "-y", "--data", "phase=loan_history", phases=lending_project)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "pausing" not in again.stdout + again.stderr


def test_outside_the_build_window_nothing_is_built(lending_db, lending_project):  # noqa: F811
    now = dt.datetime.now(dt.UTC)
    window = f"{(now + dt.timedelta(hours=2)):%H:%M}-{(now + dt.timedelta(hours=3)):%H:%M}"
    settings_with(lending_project, f'  build_window: "{window}"\n')
    result = run_pyinfra(lending_db, "deploys/phase.py", "-y", "--data", "phase=loan_history", phases=lending_project)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in out, out[-3000:]
    assert f"index loans_by_lent_at: outside the build window {window} UTC" in out, out[-3000:]
    with psycopg.connect(lending_db) as conn:
        assert conn.execute("SELECT to_regclass('lending.loans_by_lent_at')").fetchone()[0] is None


def test_build_priority_low_lowers_the_build_process_and_gives_it_back(fresh_db):
    from pgconverge import pacing
    from pgconverge.execute import connect
    from pgconverge.model import Action, Lock, Step

    build = Step(("CREATE INDEX CONCURRENTLY …",), "missing", "index x", Lock.SHARE_UPDATE_EXCLUSIVE, "p",
                 long_running=True, action=Action.BUILD_CONCURRENTLY)
    notes: list[str] = []
    with connect(fresh_db) as conn:
        pid = pacing.local_backend(conn)
        assert pid == conn.info.backend_pid  # the test server runs on this machine
        before = os.getpriority(os.PRIO_PROCESS, pid)
        with pacing.build_priority(conn, build, "low", notes.append):
            assert os.getpriority(os.PRIO_PROCESS, pid) == pacing.LOW_NICE
            conn.execute("SELECT count(*) FROM message_events").fetchone()
        assert os.getpriority(os.PRIO_PROCESS, pid) == before
        with pacing.build_priority(conn, build, "normal", notes.append):
            assert os.getpriority(os.PRIO_PROCESS, pid) == before
    assert notes == []
