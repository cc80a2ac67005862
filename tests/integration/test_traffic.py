"""A database with traffic: long readers, old snapshots, signals, same-named databases of a fleet, live writes
during the restore drill, pg_cron that is installed but not running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgconverge import cli
from pgconverge.lab import Lab, seed
from tests.conftest import PYINFRA, REPO, pg_tool, run_pyinfra
from tests.integration.test_converge import ok

pytestmark = pytest.mark.integration

INVALID = "SELECT count(*) FROM pg_index WHERE NOT indisvalid"


def tuned(project: Path, **settings: str) -> Path:
    """The project's phases.yml with some settings replaced or added."""
    phases = project / "phases.yml"
    lines = phases.read_text().splitlines()
    at = lines.index("settings:") + 1
    lines = [line for line in lines if not any(line.strip().startswith(f"{k}:") for k in settings)]
    lines[at:at] = [f"  {k}: {v}" for k, v in settings.items()]
    phases.write_text("\n".join(lines) + "\n")
    return phases


def scalar(url: str, query: str, params: list | None = None):
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def test_index_build_outlasts_a_reader_longer_than_lock_timeout(cron_db, project):
    phases = tuned(project, lock_timeout="1s", progress_interval_seconds="1")
    reader_pid: list[int] = []

    def long_report() -> None:
        with psycopg.connect(cron_db, autocommit=True) as conn:
            reader_pid.append(conn.info.backend_pid)
            conn.execute("SELECT count(*), pg_sleep(6) FROM message_events")

    reader = threading.Thread(target=long_report)
    reader.start()
    time.sleep(0.5)
    try:
        out = ok(run_pyinfra(cron_db, "deploys/phase1.py", "-y", phases=phases))
    finally:
        reader.join()
    assert f"pid {reader_pid[0]} (active" in out and "SELECT count(*), pg_sleep(6) FROM message_events" in out
    assert "waiting" in out
    assert scalar(cron_db, INVALID) == 0
    assert scalar(cron_db, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_%'") == 12


def test_old_snapshot_stops_a_build_at_build_max_wait_naming_the_session(cron_db, project):
    phases = tuned(project, build_max_wait="3s", progress_interval_seconds="1")
    with psycopg.connect(cron_db) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM users").fetchone()  # a snapshot, idle in transaction
        started = time.monotonic()
        result = run_pyinfra(cron_db, "deploys/phase1.py", "-y", phases=phases)
        elapsed = time.monotonic() - started
        out = result.stdout + result.stderr
        pid = holder.info.backend_pid
        assert result.returncode != 0
        assert f"note: this build will wait for sessions holding old snapshots: pid {pid} (idle in transaction" in out
        assert "build stopped: waited 3 s, longer than build_max_wait 3s, for pid" in out, out[-3000:]
        assert f"pid {pid} (idle in transaction" in out.split("build stopped:")[1]
        assert "INVALID leftover" in out and "was dropped" in out
        assert "Traceback" not in out
        assert scalar(cron_db, INVALID) == 0
        assert elapsed < 120
        holder.rollback()
    ok(run_pyinfra(cron_db, "deploys/phase1.py", "-y", phases=phases))
    assert scalar(cron_db, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_%'") == 12


def _big_table_spec(tmp_path: Path) -> Path:
    phases = tmp_path / "phases.yml"
    phases.write_text(
        "version: 1\n"
        "settings:\n  progress_interval_seconds: 1\n"
        "phases:\n"
        "  - id: big\n    title: one long build, then more steps\n    backup: false\n    indexes:\n"
        "      - name: big_body\n        table: big_events\n        columns: [body]\n"
        "      - name: big_id\n        table: big_events\n        columns: [id]\n"
    )
    return phases


def _wait_for(url: str, query: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as probe:
        while time.monotonic() < deadline:
            if probe.execute(query).fetchone():
                return
            time.sleep(0.05)
    pytest.fail(f"never saw: {query}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_build_cancels_cleans_and_exits_nonzero(fresh_db, tmp_path, signum):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE big_events AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS body"
                     " FROM generate_series(1, 1500000) g")
    phases = _big_table_spec(tmp_path)
    env = {**os.environ, "DATABASE_URL": fresh_db, "PGCONVERGE_PHASES": str(phases),
           "PGCONVERGE_REPORTS_DIR": str(tmp_path / "reports")}
    runner = subprocess.Popen([PYINFRA, "inventory/lab.py", "deploys/all.py", "-y"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        # Really in flight: the server reports the build scanning or sorting the 1.5 M rows.
        _wait_for(fresh_db, "SELECT 1 FROM pg_stat_progress_create_index WHERE phase LIKE 'building index%'")
        runner.send_signal(signum)
        output, _ = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode != 0, output[-3000:]
    assert f"interrupted by {signum.name}" in output
    assert "Traceback" not in output
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'big_events'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX%big%'"
                            " AND pid <> pg_backend_pid()").fetchone()[0] == 0


def test_sigint_while_a_build_waits_stops_it_and_the_next_run_finishes(cron_db, project):
    phases = tuned(project, progress_interval_seconds="1")
    env = {**os.environ, "DATABASE_URL": cron_db, "PGCONVERGE_PHASES": str(phases),
           "PGCONVERGE_BACKUP_DIR": str(project / "backups"), "PGCONVERGE_REPORTS_DIR": str(project / "reports")}
    with psycopg.connect(cron_db) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT 1").fetchone()
        runner = subprocess.Popen([PYINFRA, "inventory/lab.py", "deploys/all.py", "-y"], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  stdin=subprocess.DEVNULL)
        _wait_for(cron_db, "SELECT 1 FROM pg_stat_progress_create_index WHERE phase LIKE 'waiting%'")
        runner.send_signal(signal.SIGINT)
        output, _ = runner.communicate(timeout=120)
        holder.rollback()
    assert runner.returncode != 0 and "interrupted by SIGINT" in output, output[-3000:]
    assert "gate pg_stat_statements_enabled" not in output  # no further operation ran
    assert scalar(cron_db, INVALID) == 0
    assert scalar(cron_db, "SELECT count(*) FROM pg_matviews") == 0  # no later step ran
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    assert scalar(cron_db, "SELECT count(*) FROM pg_matviews") == 3


@pytest.fixture
def second_server():
    """Another PostgreSQL whose app database has the same name as the first one's (as every Supabase one has)."""
    base = Path(tempfile.mkdtemp(prefix="pgconverge-second-"))
    base.chmod(0o755)
    lab = Lab(base / "lab")
    try:
        lab.up(echo=lambda _: None)
        seed.seed(lab.urls()["DATABASE_URL"], "S", 42, echo=lambda _: None)
    except Exception as exc:
        lab.destroy()
        pytest.fail(f"second test server did not start: {exc}")
    yield lab
    lab.destroy()
    shutil.rmtree(base, ignore_errors=True)


def test_two_same_named_databases_of_a_fleet_back_up_apart(cron_db, second_server, tmp_path):
    other = second_server.urls()["DATABASE_URL"]
    assert cron_db.rsplit("/", 1)[1] == other.rsplit("/", 1)[1]
    inventory = tmp_path / "fleet.py"
    inventory.write_text('db = ([("@db/eu", {"database_url_env": "EU_URL"}),\n'
                         '       ("@db/us", {"database_url_env": "US_URL"})], {"environment": "prod"})\n')
    env = {**os.environ, "EU_URL": cron_db, "US_URL": other, "PGCONVERGE_BACKUP_DIR": str(tmp_path / "b"),
           "PGCONVERGE_REPORTS_DIR": str(tmp_path / "r")}
    result = subprocess.run([PYINFRA, str(inventory), "deploys/phase1.py", "-y"], cwd=REPO, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    dumps = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.dump"))
    assert [p.parent.as_posix() for p in dumps] == ["prod/db_eu", "prod/db_us"], dumps
    assert all(p.name.startswith(f"prod-{p.parent.name}-salesflow-") and p.name.endswith("-phase1.dump")
               for p in dumps)
    for host, url in (("db_eu", cron_db), ("db_us", other)):
        [dump] = (tmp_path / "b" / "prod" / host).glob("*.dump")
        sidecar = dump.with_name(dump.name + ".json").read_text()
        assert f'"host": "@db/{host[3:]}"' in sidecar and '"mode": "schema"' in sidecar
        assert scalar(url, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_%'") == 12
    assert not list((tmp_path / "b").rglob(".partial-*"))


def test_restore_drill_passes_on_a_database_written_after_the_dump(cron_db, tmp_path, capsys):
    assert cli.main(["backup", "take", "--database-url", cron_db, "--backup-dir", str(tmp_path)]) == 0
    with psycopg.connect(cron_db, autocommit=True) as conn:
        conn.execute("DELETE FROM crm_notes WHERE id IN (SELECT id FROM crm_notes LIMIT 10)")
        conn.execute("INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'late@example.com')")
    assert cli.main(["backup", "restore-drill", "--database-url", cron_db, "--backup-dir", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "all row counts equal" in report and "public.crm_notes" in report


def test_restore_drill_reports_a_restored_copy_that_differs(cron_db, tmp_path, capsys):
    assert cli.main(["backup", "take", "--database-url", cron_db, "--backup-dir", str(tmp_path)]) == 0
    [sidecar] = (tmp_path / "lab" / "cli").glob("*.dump.json")
    sidecar.write_text(sidecar.read_text().replace('"public.crm_notes": ', '"public.crm_notes": 1'))
    assert cli.main(["backup", "restore-drill", "--database-url", cron_db, "--backup-dir", str(tmp_path)]) == 1
    assert "DIFFERENT" in capsys.readouterr().out


def test_full_backup_is_available_per_phase(cron_db, project, tmp_path):
    phases = project / "phases.yml"
    phases.write_text(phases.read_text().replace("backup: true", "backup: full", 1))
    out = ok(run_pyinfra(cron_db, "deploys/phase1.py", "-y", "--data", f"backup_dir={tmp_path}", phases=phases))
    [dump] = (tmp_path / "lab" / "local").glob("*-phase1.dump")
    assert f"backup {dump} (full," in out
    listing = subprocess.run([pg_tool("pg_restore"), "--list", str(dump)], capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA public message_events" in listing


def test_pg_cron_installed_but_not_running_fails_verify(servers, cron_db):
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    superuser = servers.superuser_url()

    def restart_with(libraries: str) -> None:
        with psycopg.connect(superuser, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER SYSTEM SET shared_preload_libraries = {}").format(sql.Literal(libraries)))
        servers._pg(["pg_ctl", "-D", str(servers.pg_data), "-m", "fast", "-w", "restart", "-l", str(servers.pg_log)])

    restart_with("pg_stat_statements")
    try:
        result = run_pyinfra(cron_db, "deploys/verify.py", "-y")
    finally:
        with psycopg.connect(superuser, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET shared_preload_libraries")
        servers._pg(["pg_ctl", "-D", str(servers.pg_data), "-m", "fast", "-w", "restart", "-l", str(servers.pg_log)])
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "gate refresh_jobs_running (cron_health) FAILED: measured no pg_cron launcher" in out, out[-3000:]
    assert "shared_preload_libraries" in out


def test_dry_and_plan_fail_when_the_catalog_cannot_be_read(servers, cron_db, tmp_path):
    superuser = servers.superuser_url(servers.database)
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute("REVOKE USAGE ON SCHEMA cron FROM salesflow")
    try:
        dry = run_pyinfra(cron_db, "deploys/all.py", "--dry")
        env = {**os.environ, "DATABASE_URL": cron_db}
        planned = subprocess.run([str(Path(PYINFRA).parent / "pgconverge"), "plan", "inventory/lab.py",
                                  "deploys/all.py"], cwd=REPO, env=env, capture_output=True, text=True)
    finally:
        with psycopg.connect(superuser, autocommit=True) as conn:
            conn.execute("GRANT USAGE ON SCHEMA cron TO salesflow")
    for result in (dry, planned):
        out = result.stdout + result.stderr
        assert result.returncode != 0, out[-2000:]
        assert "GRANT USAGE ON SCHEMA cron TO salesflow" in out
        assert "Traceback" not in out
