"""The ways people really connect: a transaction-mode pooler (a real pgbouncer), a streaming standby, a role with
read-only defaults, raw passwords, unreachable servers — each one line, nothing written, nothing leaked."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from pgconverge.lab import APP_ROLE, PG_BIN, free_port
from tests.conftest import REPO, TEMPLATE, app_url, run_pyinfra

pytestmark = pytest.mark.integration
PGCONVERGE = str(Path(sys.executable).parent / "pgconverge")
PGBOUNCER = "/usr/sbin/pgbouncer"
SETTINGS = ("search_path", "client_connection_check_interval", "idle_in_transaction_session_timeout",
            "max_parallel_maintenance_workers", "lock_timeout", "statement_timeout")


def _as_postgres(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, cwd="/",
                          env=env)


def _private_folder(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    subprocess.run(["chown", "postgres:postgres", str(folder)], check=True)
    return folder


def _wait_for_port(port: int, what: str, log: Path) -> None:
    import socket

    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"{what} did not start on 127.0.0.1:{port}: {log.read_text()[-800:] if log.exists() else ''}")


@pytest.fixture(scope="module")
def pooler(servers):
    """A real pgbouncer in transaction mode in front of the test server (as Supabase's port 6543)."""
    if not Path(PGBOUNCER).exists():
        pytest.fail("pgbouncer is not installed — apt-get install pgbouncer (the Makefile's deps do)")
    folder = _private_folder("pgconverge-pgbouncer-")
    state, port = servers.state(), free_port()
    (folder / "userlist.txt").write_text(f'"{APP_ROLE}" "{state.app_password}"\n')
    (folder / "pgbouncer.ini").write_text("\n".join([
        "[databases]", f"* = host=127.0.0.1 port={state.pg_port}", "[pgbouncer]", "listen_addr = 127.0.0.1",
        f"listen_port = {port}", "unix_socket_dir =", "auth_type = scram-sha-256",
        f"auth_file = {folder}/userlist.txt", "pool_mode = transaction", "default_pool_size = 3",
        "max_client_conn = 200", "ignore_startup_parameters = extra_float_digits,options",
        f"logfile = {folder}/pgbouncer.log", f"pidfile = {folder}/pgbouncer.pid", ""]))
    subprocess.run(["chown", "-R", "postgres:postgres", str(folder)], check=True)
    started = _as_postgres(PGBOUNCER, "-d", str(folder / "pgbouncer.ini"))
    if started.returncode != 0:
        pytest.fail(f"pgbouncer did not start: {started.stderr or started.stdout}")
    _wait_for_port(port, "pgbouncer", folder / "pgbouncer.log")
    yield port
    pid = (folder / "pgbouncer.pid").read_text().strip()
    subprocess.run(["kill", pid])
    time.sleep(0.3)
    subprocess.run(["rm", "-rf", str(folder)])


def pooled(url: str, port: int) -> str:
    head, tail = url.rsplit("@", 1)
    database = tail.split("/", 1)[1]
    return f"{head}@127.0.0.1:{port}/{database}"


class ApplicationClients:
    """Clients of the application behind the same pooler: each keeps reading its settings and a table."""

    def __init__(self, url: str, clients: int = 4):
        self.url = url
        self.seen: set[tuple] = set()
        self.errors: list[str] = []
        self.queries = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def read(self, conn: psycopg.Connection) -> tuple:
        row = conn.execute("SELECT " + ", ".join(f"current_setting('{s}')" for s in SETTINGS)
                           + ", (SELECT count(*) FROM leads WHERE status = 'new')").fetchone()
        assert row is not None
        return tuple(row[:-1])

    def _run(self) -> None:
        # no prepared statements: behind a transaction pooler they vanish (as for any pgbouncer client)
        with psycopg.connect(self.url, autocommit=True, prepare_threshold=None) as conn:
            while not self.stop.is_set():
                try:
                    self.seen.add(self.read(conn))
                    self.queries += 1
                except psycopg.Error as exc:
                    self.errors.append(str(exc).splitlines()[0])
                time.sleep(0.005)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def managed_objects(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_description WHERE description LIKE 'pgconverge:%'").fetchone()[0]


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_a_transaction_pooler_is_refused_and_the_application_sees_no_changed_setting(pooler, fresh_db, tmp_path):
    url = pooled(fresh_db, pooler)
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        baseline = ApplicationClients(url).read(conn)
    with ApplicationClients(url) as clients:
        results = [run_pyinfra(url, deploy, *args, "--data", f"backup_dir={tmp_path}")
                   for deploy, args in (("deploys/all.py", ("-y",)), ("deploys/all.py", ("--dry",)),
                                        ("deploys/rollback.py", ("-y",)), ("deploys/verify.py", ("-y",)))]
        plan = subprocess.run([PGCONVERGE, "plan", "inventory/lab.py", "deploys/all.py"], cwd=REPO,
                              capture_output=True, text=True, env={**os.environ, "DATABASE_URL": url})
        time.sleep(0.3)
    for result in results:
        combined = result.stdout + result.stderr
        assert result.returncode != 0, combined[-2000:]
        assert len(lines_with(combined, "is a connection pooler")) == 1, combined[-3000:]
        assert "use the direct connection (Supabase: the direct host, port 5432" in combined
        assert "Traceback" not in combined
    assert plan.returncode == 1 and "**Cannot plan:**" in plan.stdout and "is a connection pooler" in plan.stdout
    assert not list(tmp_path.rglob("*.dump")), "no backup through a pooler"
    assert managed_objects(fresh_db) == 0
    assert clients.queries > 50 and not clients.errors, clients.errors[:3]
    assert clients.seen == {baseline}, f"the application saw changed settings: {clients.seen - {baseline}}"
    with psycopg.connect(fresh_db) as conn:
        held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]
    assert held == 0, "no run lock left on a pooled backend"
    # the same database directly: the run goes through
    direct = run_pyinfra(fresh_db, "deploys/phase1.py", "-y", "--data", f"backup_dir={tmp_path}")
    assert direct.returncode == 0, (direct.stdout + direct.stderr)[-2000:]


def test_backup_take_through_a_pooler_is_refused(pooler, fresh_db, tmp_path):
    result = subprocess.run([PGCONVERGE, "backup", "take", "--database-url", pooled(fresh_db, pooler),
                             "--backup-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1 and "is a connection pooler" in result.stderr, result.stderr
    assert not list(tmp_path.rglob("*.dump"))


@pytest.fixture(scope="module")
def standby(servers):
    """A streaming hot standby of the test server, made with pg_basebackup -R."""
    folder = _private_folder("pgconverge-standby-")
    state, port = servers.state(), free_port()
    env = {**os.environ, "PGPASSWORD": state.superuser_password}
    made = _as_postgres(str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(state.pg_port), "-U", "postgres",
                        "-D", str(folder / "data"), "-R", "-X", "stream", env=env)
    if made.returncode != 0:
        pytest.fail(f"pg_basebackup failed: {made.stderr}")
    started = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-o", f"-p {port}",
                           "-l", str(folder / "log"), "-w", "-t", "60", "start")
    if started.returncode != 0:
        pytest.fail(f"standby did not start: {started.stderr} {(folder / 'log').read_text()[-800:]}")
    yield app_url(servers, TEMPLATE).replace(f":{state.pg_port}/", f":{port}/")
    _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "-w", "stop")
    subprocess.run(["rm", "-rf", str(folder)])


def test_a_standby_is_refused_with_one_line_before_any_backup(standby, tmp_path):
    with psycopg.connect(standby) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    for deploy, args in (("deploys/all.py", ("-y",)), ("deploys/all.py", ("--dry",)),
                         ("deploys/verify.py", ("-y",)), ("deploys/rollback.py", ("-y",))):
        result = run_pyinfra(standby, deploy, *args, "--data", f"backup_dir={tmp_path}")
        combined = result.stdout + result.stderr
        assert result.returncode != 0, combined[-2000:]
        assert len(lines_with(combined, "a read replica (hot standby")) == 1, combined[-3000:]
        assert "point the run at the primary" in combined and "Traceback" not in combined
        assert "fix it in phases.yml" not in combined
    assert not list(tmp_path.rglob("*.dump"))
    plan = subprocess.run([PGCONVERGE, "plan", "inventory/lab.py", "deploys/all.py"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "DATABASE_URL": standby})
    assert plan.returncode == 1 and "read replica" in plan.stdout


def test_a_role_with_read_only_defaults_is_named_with_where_it_is_set(servers, fresh_db, tmp_path):
    database = fresh_db.rsplit("/", 1)[1]
    with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET default_transaction_read_only = on").format(
            sql.Identifier(APP_ROLE), sql.Identifier(database)))
    try:
        result = run_pyinfra(fresh_db, "deploys/all.py", "-y", "--data", f"backup_dir={tmp_path}")
        combined = result.stdout + result.stderr
        assert result.returncode != 0
        assert len(lines_with(combined, "default_transaction_read_only is on, set for role salesflow in database"
                              f" {database}")) == 1, combined[-3000:]
        assert "fix it in phases.yml" not in combined and "Traceback" not in combined
        assert not list(tmp_path.rglob("*.dump"))
    finally:
        with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET default_transaction_read_only").format(
                sql.Identifier(APP_ROLE), sql.Identifier(database)))
    assert managed_objects(fresh_db) == 0


def _planned(output: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in output.splitlines() if "] -- [" in line or "]    " in line]


def test_dry_with_yes_prints_the_same_plan_and_changes_nothing(fresh_db):
    plain = run_pyinfra(fresh_db, "deploys/all.py", "--dry")
    yes = run_pyinfra(fresh_db, "deploys/all.py", "--dry", "-y")
    assert plain.returncode == 0 and yes.returncode == 0, yes.stderr[-2000:]
    steps = _planned(plain.stdout + plain.stderr)
    assert sum("CREATE INDEX CONCURRENTLY" in line for line in steps) == 12
    assert _planned(yes.stdout + yes.stderr) == steps
    env_yes = subprocess.run([sys.executable, "-m", "pyinfra", "inventory/lab.py", "deploys/rollback.py", "--dry"],
                             cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             env={**os.environ, "DATABASE_URL": fresh_db, "PYINFRA_YES": "1"})
    assert env_yes.returncode == 0 and "rollback from phase1: 0 steps to run" in env_yes.stdout + env_yes.stderr
    assert managed_objects(fresh_db) == 0


RAW_PASSWORD = "S3cr@t:/pa%ss word"


def test_raw_and_encoded_passwords_never_appear(servers, fresh_db, tmp_path):
    database = fresh_db.rsplit("/", 1)[1]
    with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS raw_secret_user")
        conn.execute(sql.SQL("CREATE ROLE raw_secret_user LOGIN PASSWORD {}").format(sql.Literal(RAW_PASSWORD)))
    port = servers.state().pg_port
    raw = f"postgresql://raw_secret_user:{RAW_PASSWORD}@127.0.0.1:{port}/{database}"
    encoded = f"postgresql://raw_secret_user:{quote(RAW_PASSWORD, safe='')}@127.0.0.1:{port}/{database}"
    wrong = f"postgresql://raw_secret_user:{quote(RAW_PASSWORD + 'x', safe='')}@127.0.0.1:{port}/{database}"
    reports = tmp_path / "reports"
    outputs = []
    for url in (raw, encoded, wrong):
        env = {**os.environ, "DATABASE_URL": url, "PGCONVERGE_REPORTS_DIR": str(reports)}
        for argv in (["pyinfra", "inventory/lab.py", "deploys/all.py", "-y", "--data", f"backup_dir={tmp_path}"],
                     ["pgconverge", "plan", "inventory/lab.py", "deploys/all.py", "--output",
                      str(tmp_path / "plan.md")],
                     ["pgconverge", "kpi", "--runs", "3"],
                     ["pgconverge", "snapshot", "--reports", str(reports)]):
            result = subprocess.run([str(Path(sys.executable).parent / argv[0]), *argv[1:]], cwd=REPO, env=env,
                                    capture_output=True, text=True, stdin=subprocess.DEVNULL)
            outputs.append(result.stdout + result.stderr)
            assert "Traceback" not in outputs[-1], outputs[-1][-2000:]
    assert "is not a valid PostgreSQL URL — percent-encode" in outputs[0]
    assert "password authentication failed" in outputs[-1]
    written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    names = [str(p) for p in tmp_path.rglob("*")]
    for text in outputs + written + names:
        for fragment in (RAW_PASSWORD, quote(RAW_PASSWORD, safe=""), "pa%ss word", "pa%25ss", "S3cr@t"):
            assert fragment not in text, f"{fragment!r} leaked"


@pytest.mark.parametrize("problem", ["wrong-password", "closed-port", "unknown-host"])
def test_every_command_says_one_line_when_it_cannot_connect(servers, problem, tmp_path):
    port = servers.state().pg_port
    url = {"wrong-password": f"postgresql://salesflow:not-it-MARK@127.0.0.1:{port}/salesflow",
           "closed-port": f"postgresql://salesflow:not-it-MARK@127.0.0.1:{free_port()}/salesflow",
           "unknown-host": "postgresql://salesflow:not-it-MARK@no-such-host.invalid:5432/salesflow"}[problem]
    reason = {"wrong-password": 'password authentication failed for user "sa****"',
              "closed-port": "Connection refused", "unknown-host": "no-such-host.invalid"}[problem]
    env = {**os.environ, "DATABASE_URL": url}
    commands = [["kpi"], ["snapshot", "--reports", str(tmp_path)], ["advise"],
                ["backup", "take", "--backup-dir", str(tmp_path)], ["backup", "restore-drill", "--backup-dir",
                                                                   str(tmp_path)],
                ["plan", "inventory/lab.py", "deploys/all.py"]]
    for command in commands:
        result = subprocess.run([PGCONVERGE, *command], cwd=REPO, env=env, capture_output=True, text=True)
        combined = result.stdout + result.stderr
        assert result.returncode != 0, (command, combined)
        assert "Traceback" not in combined and "not-it-MARK" not in combined, (command, combined)
        message = [line for line in combined.splitlines() if "cannot connect to" in line]
        assert len(message) == 1 and reason in message[0], (command, combined)


def _role_setting(servers, database: str, setting: str) -> None:
    with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} " + setting).format(  # type: ignore[arg-type]
            sql.Identifier(APP_ROLE), sql.Identifier(database)))


def test_a_full_backup_survives_the_logins_idle_in_transaction_timeout(servers, fresh_db, tmp_path):
    database = fresh_db.rsplit("/", 1)[1]
    _role_setting(servers, database, "SET idle_in_transaction_session_timeout = '1s'")
    try:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            # slow enough to outlive the timeout: a second of work per 1,000 rows read by the dump's COPY
            conn.execute("CREATE TABLE slow_copy AS SELECT g AS id, repeat('x', 2000) AS pad"
                         " FROM generate_series(1, 200000) g")
        result = subprocess.run([PGCONVERGE, "backup", "take", "--mode", "full", "--database-url", fresh_db,
                                 "--backup-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    finally:
        _role_setting(servers, database, "RESET idle_in_transaction_session_timeout")
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.rglob("*.dump"))) == 1


def test_restore_drill_without_createdb_says_what_is_needed_and_scratch_url_works(servers, fresh_db, tmp_path):
    take = subprocess.run([PGCONVERGE, "backup", "take", "--mode", "full", "--database-url", fresh_db,
                           "--backup-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert take.returncode == 0, take.stderr
    with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} NOCREATEDB").format(sql.Identifier(APP_ROLE)))
    try:
        drill = subprocess.run([PGCONVERGE, "backup", "restore-drill", "--database-url", fresh_db, "--backup-dir",
                                str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    finally:
        with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(APP_ROLE)))
    assert drill.returncode == 1 and "Traceback" not in drill.stderr
    assert "role salesflow may not create databases — grant it CREATEDB" in drill.stderr
    assert "--scratch-url" in drill.stderr
    scratch = subprocess.run([PGCONVERGE, "backup", "restore-drill", "--database-url", fresh_db, "--backup-dir",
                              str(tmp_path), "--scratch-url-env", "DRILL_URL"], cwd=REPO, capture_output=True,
                             text=True, env={**os.environ, "DRILL_URL": servers.superuser_url()})
    assert scratch.returncode == 0, scratch.stdout[-2000:] + scratch.stderr
    assert "all row counts equal" in scratch.stdout


def test_restore_drill_of_a_trigram_index_on_an_extension_in_public(servers, fresh_db, tmp_path):
    with psycopg.connect(servers.superuser_url(fresh_db.rsplit("/", 1)[1]), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE films (id bigint PRIMARY KEY, title text NOT NULL)")
        conn.execute("INSERT INTO films SELECT g, 'film ' || g FROM generate_series(1, 5000) g")
        conn.execute("CREATE INDEX film_title_trgm ON films USING gin (title public.gin_trgm_ops)")
    for user_url in (fresh_db, servers.superuser_url(fresh_db.rsplit("/", 1)[1])):
        take = subprocess.run([PGCONVERGE, "backup", "take", "--database-url", user_url, "--backup-dir",
                               str(tmp_path)], cwd=REPO, capture_output=True, text=True)
        assert take.returncode == 0, take.stderr
        drill = subprocess.run([PGCONVERGE, "backup", "restore-drill", "--database-url", user_url, "--backup-dir",
                                str(tmp_path)], cwd=REPO, capture_output=True, text=True)
        assert drill.returncode == 0, drill.stdout[-1500:] + drill.stderr
        assert "all row counts equal" in drill.stdout


def test_snapshot_reaches_a_database_host_of_an_inventory(fresh_db, tmp_path):
    inventory = tmp_path / "fleet.py"
    inventory.write_text('db = ([("@db/one", {"database_url_env": "ONE_URL"}), ("@db/two", {"database_url_env":'
                         ' "TWO_URL"})], {})\n')
    env = {**os.environ, "ONE_URL": fresh_db, "TWO_URL": "postgresql://salesflow:pw@127.0.0.1:1/salesflow"}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([PGCONVERGE, "snapshot", "--inventory", str(inventory), "--host", "@db/one", "--reports",
                             str(tmp_path / "reports")], cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    written = list((tmp_path / "reports" / "lab" / "db_one").glob("*-manual.json"))
    assert len(written) == 1 and str(written[0]) == result.stdout.strip()
    ambiguous = subprocess.run([PGCONVERGE, "snapshot", "--inventory", str(inventory), "--reports",
                                str(tmp_path / "reports")], cwd=REPO, capture_output=True, text=True, env=env)
    assert ambiguous.returncode == 1 and "has 2 database hosts (@db/one, @db/two) — pick one with --host" in \
        ambiguous.stderr
