"""End to end with the real pyinfra CLI against a real PostgreSQL 15 with pg_cron."""

from __future__ import annotations

import subprocess
import threading
import time

import psycopg
import pytest

from tests.conftest import PYINFRA, REPO, pg_tool, run_pyinfra

pytestmark = pytest.mark.integration

OIDS = """
SELECT c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND (obj_description(c.oid, 'pg_class') LIKE 'pgconverge:%' OR c.relname LIKE 'mv_%')
UNION ALL SELECT proname, oid FROM pg_proc WHERE obj_description(oid, 'pg_proc') LIKE 'pgconverge:%'
ORDER BY 1
"""


def ok(result: subprocess.CompletedProcess) -> str:
    combined = result.stdout + result.stderr
    assert result.returncode == 0, combined[-4000:]
    return combined


def catalog_oids(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(OIDS).fetchall()


def test_converge_all_then_second_run_changes_nothing(cron_db, tmp_path):
    out = ok(run_pyinfra(cron_db, "deploys/all.py", "-y", "--data", f"reports_dir={tmp_path / 'first'}"))
    # a snapshot before and after each phase that changed something
    assert len(list((tmp_path / "first").rglob("*.json"))) == 6
    assert "gate events_list_uses_index (plan, query message_events_list) passed" in out
    first = catalog_oids(cron_db)
    assert len(first) == 12 + 3 + 3 + 5  # indexes, views, the views' unique indexes, functions
    with psycopg.connect(cron_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone()[0] == 3
        assert conn.execute("SELECT has_table_privilege('anon', 'mv_hot_leads', 'SELECT')").fetchone()[0] is False
    dry = ok(run_pyinfra(cron_db, "deploys/all.py", "--dry"))
    assert "phase1: 0 steps to run (converged)" in dry and "phase3: 0 steps to run (converged)" in dry
    assert "CREATE" not in dry
    again = ok(run_pyinfra(cron_db, "deploys/all.py", "-y", "--data", f"reports_dir={tmp_path / 'again'}"))
    assert "No Change" in again and "CREATE" not in again
    assert catalog_oids(cron_db) == first
    assert not list(tmp_path.glob("again/**/*.json")), "a run that changes nothing writes no snapshot"


def test_dry_prints_exact_sql_and_changes_nothing(cron_db):
    out = ok(run_pyinfra(cron_db, "deploys/phase1.py", "--dry"))
    assert ('CREATE INDEX CONCURRENTLY "idx_message_events_user_status_created" ON "public"."message_events" '
            'USING btree ("user_id", "status", "created_at" DESC);') in out
    assert catalog_oids(cron_db) == []


def test_invalid_index_under_managed_name_is_repaired(cron_db):
    with psycopg.connect(cron_db, autocommit=True) as conn:
        # A unique index over duplicate values fails mid-build and leaves an INVALID index, as in production.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY idx_leads_user_status ON leads (user_id)")
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_leads_user_status'::regclass"
                            ).fetchone()[0] is False
    out = ok(run_pyinfra(cron_db, "deploys/phase1.py", "-y"))
    assert "INVALID" in out
    with psycopg.connect(cron_db) as conn:
        valid, definition = conn.execute(
            "SELECT indisvalid, pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indexrelid = 'idx_leads_user_status'::regclass").fetchone()
    assert valid and "(user_id, status)" in definition


def test_changed_index_rebuilt_without_gap_and_view_and_schedule_converge(cron_db, project):
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=project / "phases.yml"))
    phases = project / "phases.yml"
    text = phases.read_text()
    text = text.replace("columns: [user_id, status]\n", "columns: [user_id, status, created_at]\n")
    text = text.replace('schedule: "*/15 * * * *"', 'schedule: "*/5 * * * *"')
    phases.write_text(text)
    view_sql = project / "sql" / "phase2" / "mv_hot_leads.sql"
    view_sql.write_text(view_sql.read_text().replace("p_score >= 70", "p_score >= 80"))

    missing_seen = []
    stop = threading.Event()

    def watch():
        with psycopg.connect(cron_db, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute("SELECT to_regclass('idx_leads_user_status'), to_regclass('mv_hot_leads')").fetchone()
                if None in row:
                    missing_seen.append(row)
                time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    finally:
        stop.set()
        watcher.join()
    assert "definition differs" in out and "the live query differs" in out and "changed schedule" in out
    with psycopg.connect(cron_db) as conn:
        definition = conn.execute("SELECT pg_get_indexdef('idx_leads_user_status'::regclass)").fetchone()[0]
        assert "(user_id, status, created_at)" in definition
        assert conn.execute("SELECT min(p_score) >= 80 FROM mv_hot_leads").fetchone()[0] in (True, None)
        assert conn.execute("SELECT schedule FROM cron.job WHERE jobname = 'refresh-hot-leads'").fetchone()[0] == \
            "*/5 * * * *"
        assert conn.execute("SELECT to_regclass('idx_leads_user_status_pgc_new')").fetchone()[0] is None
        assert conn.execute("SELECT to_regclass('idx_leads_user_status_pgc_old')").fetchone()[0] is None
    # both swaps are single transactions: a reader always finds the index and the view under their names
    assert missing_seen == []
    assert "No Change" in ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))


def test_index_build_waits_for_a_lock_holder_naming_it_then_succeeds(cron_db, project):
    """A build's SHARE UPDATE EXCLUSIVE blocks none of the application's reads and writes: it waits, watched,
    without lock_timeout, and says every few seconds whom it waits for."""
    phases = project / "phases.yml"
    phases.write_text(phases.read_text().replace("lock_timeout: 3s", "lock_timeout: 200ms")
                      .replace("progress_interval_seconds: 5", "progress_interval_seconds: 1"))
    waits_seen = []

    def release_after_our_build_waited(blocker: psycopg.Connection) -> None:
        with psycopg.connect(cron_db, autocommit=True) as probe:
            for _ in range(6000):
                waiting = probe.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE NOT l.granted AND a.application_name = 'pgconverge'"
                    " AND l.relation = 'crm_notes'::regclass").fetchone()[0]
                if waiting:
                    waits_seen.append(time.monotonic())
                    time.sleep(2.5)  # far past lock_timeout, and long enough for a progress line
                    break
                time.sleep(0.005)
        blocker.rollback()

    with psycopg.connect(cron_db) as blocker:
        blocker.execute("LOCK TABLE crm_notes IN SHARE UPDATE EXCLUSIVE MODE")
        blocker_pid = blocker.info.backend_pid
        releaser = threading.Thread(target=release_after_our_build_waited, args=(blocker,))
        releaser.start()
        out = ok(run_pyinfra(cron_db, "deploys/phase1.py", "-y", phases=phases))
        releaser.join()
    assert waits_seen, "the build never waited for the lock"
    assert "waiting" in out and f"pid {blocker_pid} (idle in transaction" in out, out[-3000:]
    with psycopg.connect(cron_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('idx_crm_notes_lead_created')").fetchone()[0] is not None


def test_lock_never_released_stops_the_build_clearly_at_build_max_wait(cron_db, project):
    phases = project / "phases.yml"
    phases.write_text(phases.read_text().replace("build_max_wait: 30min", "build_max_wait: 2s"))
    with psycopg.connect(cron_db) as blocker:
        blocker.execute("LOCK TABLE crm_notes IN SHARE UPDATE EXCLUSIVE MODE")
        result = run_pyinfra(cron_db, "deploys/phase1.py", "-y", phases=phases)
        blocker.rollback()
    assert result.returncode != 0
    combined = result.stdout + result.stderr
    assert "build stopped: waited 2 s, longer than build_max_wait 2s, for pid" in combined, combined[-3000:]
    assert "LOCK TABLE crm_notes" in combined
    assert "Traceback" not in combined
    with psycopg.connect(cron_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0] == 0


def test_second_concurrent_run_is_refused_first_finishes(cron_db, project):
    phases = project / "phases.yml"
    phases.write_text(phases.read_text().replace("lock_timeout: 3s", "lock_timeout: 200ms"))
    env_db = cron_db
    with psycopg.connect(cron_db) as blocker:
        # Hold up the first run at its crm_notes index so that it holds the run lock while the second starts.
        blocker.execute("LOCK TABLE crm_notes IN SHARE UPDATE EXCLUSIVE MODE")
        import os

        first = subprocess.Popen([PYINFRA, "inventory/lab.py", "deploys/phase1.py", "-y"], cwd=REPO,
                                 env={**os.environ, "DATABASE_URL": env_db, "PGCONVERGE_PHASES": str(phases)},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with psycopg.connect(cron_db, autocommit=True) as probe:
            for _ in range(300):
                if probe.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchone()[0]:
                    break
                time.sleep(0.05)
        started = time.monotonic()
        second = run_pyinfra(cron_db, "deploys/phase1.py", "-y", phases=phases)
        refused_after = time.monotonic() - started
        blocker.rollback()
    first_out, _ = first.communicate(timeout=120)
    assert second.returncode != 0
    assert "another pgconverge run holds this database" in second.stdout + second.stderr
    assert refused_after < 15
    assert first.returncode == 0, first_out[-2000:]


def test_failing_gate_stops_the_run_with_value_and_threshold(cron_db, project):
    phases = project / "phases.yml"
    phases.write_text(phases.read_text().replace("p95_ms: 50\n        runs: 30\n      - name: events_list_p95",
                                                 "p95_ms: 0\n        runs: 30\n      - name: events_list_p95"))
    result = run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases)
    assert result.returncode != 0
    combined = result.stdout + result.stderr
    assert "gate dashboard_p95 (latency, query dashboard_analytics) FAILED: measured p50 " in combined
    assert "threshold p95 ≤ 0 ms" in combined
    assert "(best of 2 measurements)" in combined
    assert "Converge phase2" not in combined.split("--> Results:")[0].split("gate dashboard_p95")[1]


def schema_dump(url: str) -> str:
    text = subprocess.run([pg_tool("pg_dump"), "--schema-only", "--no-owner", url], capture_output=True, text=True,
                          check=True).stdout
    # pg_dump 15.14+ brackets the dump with a random \restrict key: not part of the schema
    return "\n".join(line for line in text.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def test_rollback_phase1_restores_schema_and_reapply_works(cron_db):
    before = schema_dump(cron_db)
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    out = ok(run_pyinfra(cron_db, "deploys/rollback.py", "-y", "--data", "phase=phase1"))
    assert "DROP INDEX CONCURRENTLY" in out or "rollback" in out
    assert schema_dump(cron_db) == before
    with psycopg.connect(cron_db) as conn:
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone()[0] == 0
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    assert len(catalog_oids(cron_db)) == 23


def test_a_superusers_rollback_unschedules_the_owners_cron_jobs(cron_db, servers):
    """pg_cron's cron.unschedule(name) finds only the caller's own jobs: a superuser rolling back the jobs the owner
    scheduled stopped half-way ("could not find valid entry for job") after the functions were dropped."""
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    superuser = servers.superuser_url(servers.database)
    out = ok(run_pyinfra(superuser, "deploys/rollback.py", "-y", "--data", "phase=phase2"))
    assert "could not find valid entry" not in out
    with psycopg.connect(superuser) as conn:
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone()[0] == 0
        assert conn.execute("SELECT to_regproc('calculate_lead_event_stats')").fetchone()[0] is None


def test_missing_database_url_is_one_clear_line(cron_db):
    import os

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([PYINFRA, "inventory/lab.py", "deploys/phase1.py", "-y"], cwd=REPO, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "environment variable DATABASE_URL is not set" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_one_unreachable_database_of_a_fleet_fails_alone(cron_db, tmp_path):
    import os

    inventory = tmp_path / "fleet.py"
    inventory.write_text('db = ([("@db/good", {"database_url_env": "GOOD_URL", "environment": "lab"}),\n'
                         '       ("@db/down", {"database_url_env": "DOWN_URL", "environment": "lab"})], {})\n')
    env = {**os.environ, "GOOD_URL": cron_db, "DOWN_URL": "postgresql://salesflow:pw@127.0.0.1:1/salesflow",
           "PGCONVERGE_BACKUP_DIR": str(tmp_path / "b"), "PGCONVERGE_REPORTS_DIR": str(tmp_path / "r")}
    result = subprocess.run([PYINFRA, str(inventory), "deploys/all.py", "-y"], cwd=REPO, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    combined = result.stdout + result.stderr
    assert result.returncode != 0
    assert ("[@db/down] cannot connect to host @db/down (127.0.0.1:1, database salesflow, user sa****):"
            " Connection refused") in combined
    assert "[@db/good] summary: " in combined and "17/17 gates passed" in combined
    assert len(catalog_oids(cron_db)) == 23


def test_changed_function_signature_replaces_the_old_overload(cron_db, project):
    phases = project / "phases.yml"
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    body = project / "sql" / "phase3" / "calculate_lead_event_stats.sql"
    body.write_text(body.read_text().replace("p_lead_ids uuid[] DEFAULT NULL\n",
                                             "p_lead_ids uuid[] DEFAULT NULL,\n    p_min_events int DEFAULT 0\n"))
    out = ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    assert "function calculate_lead_event_stats: argument list changed" in out
    with psycopg.connect(cron_db) as conn:
        overloads = conn.execute("SELECT pronargs FROM pg_proc WHERE proname = 'calculate_lead_event_stats'").fetchall()
        assert overloads == [(5,)]
        rows = conn.execute("SELECT count(*) FROM calculate_lead_event_stats("
                            "(SELECT user_id FROM leads LIMIT 1), now() - interval '14 days', now() - interval '7 days')"
                            ).fetchone()[0]
        assert rows > 0
    assert "No Change" in ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))


def test_pyinfra_json_output_stays_pure_json(cron_db):
    import json

    def changed_ops() -> dict[str, list]:
        result = run_pyinfra(cron_db, "deploys/all.py", "--dry", "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        return {op["name"]: op["hosts_with_change"] for op in json.loads(result.stdout)["plan"]}

    before = changed_ops()
    assert before["Converge phase1: Quick wins: baseline statistics and 12 concurrent indexes"] == ["@local"]
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    assert all(hosts == [] for hosts in changed_ops().values())


def test_a_failed_step_names_the_statement_that_failed_not_its_first(fresh_db):
    from pgconverge.execute import StepFailed, connect, run_step
    from pgconverge.model import Action, Lock, Step
    from pgconverge.spec import Settings

    step = Step(("CREATE TABLE swap_probe (id int)", "CREATE INDEX ON swap_probe (no_such_column)"), "probe",
                "table swap_probe", Lock.ACCESS_EXCLUSIVE, "p", transactional=True, action=Action.CREATE)
    with connect(fresh_db) as conn:
        with pytest.raises(StepFailed) as failed:
            run_step(conn, fresh_db, step, Settings(), lambda _line: None)
        assert conn.execute("SELECT to_regclass('swap_probe')").fetchone()[0] is None  # one transaction: undone
    assert "while running: CREATE INDEX ON swap_probe (no_such_column)" in str(failed.value)
    assert 'column "no_such_column" does not exist' in str(failed.value)
