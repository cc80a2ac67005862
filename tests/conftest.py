"""Real servers for the tests: a throwaway PostgreSQL 15 cluster (pg_stat_statements + pg_cron) and Redis.

If a server cannot start, every test that needs it errors with the reason: nothing is skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgconverge.lab import APP_ROLE, Lab, prepare_app_database, seed

REPO = Path(__file__).resolve().parents[1]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
TEMPLATE = "salesflow_template"
_counter = itertools.count()
# inventory/lab.py writes its cache, backend env and backup files under the lab's folder: never the developer's
SCRATCH_LAB = Path(tempfile.gettempdir()) / "pgconverge-test-output" / "lab"
os.environ["PGCONVERGE_LAB_DIR"] = str(SCRATCH_LAB)
# the validated-spec cache is on in the tests (as for users), in a folder of the run's own, not the developer's
os.environ["PGCONVERGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="pgconverge-spec-cache-")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "needs_hypopg: advise's tests, which need HypoPG in the server build")
    config.addinivalue_line("markers", "needs_pg_cron: needs pg_cron in the server build (beyond the cron_db fixture)")


def pytest_collection_modifyitems(config, items) -> None:
    """On another server build (PGCONVERGE_PG_BIN, e.g. PostgreSQL 18 from PyPI) pg_cron and HypoPG may be missing:
    the tests that need them are skipped there by name, with the reason; on Debian's 15 they always run."""
    from pgconverge.lab import DEBIAN_PG_BIN, PG_BIN, has_library

    if PG_BIN == DEBIAN_PG_BIN:
        return
    for item in items:
        for library, needed in (("pg_cron", {"cron_db", "cron_kit"} & set(item.fixturenames)
                                 or item.get_closest_marker("needs_pg_cron")),
                                ("hypopg", item.get_closest_marker("needs_hypopg"))):
            if needed and not has_library(library):
                item.add_marker(pytest.mark.skip(reason=f"needs {library}, which the server build in {PG_BIN} lacks"
                                                        " (Debian packages it for PostgreSQL 15 only)"))


def pg_tool(name: str) -> str:
    """pg_dump/pg_restore that fit the test servers' major (Debian's 15, or PGCONVERGE_PG_BIN's build)."""
    from pgconverge import clienttools
    from pgconverge.lab import PG_BIN

    major = clienttools.tool_major(PG_BIN / "postgres") or 15
    return str(clienttools.find(name, major, str(PG_BIN)).path)


def cluster_with_template(prefix: str, template: str, seed_value: int):
    """A throwaway cluster with a seeded scale-S template database owned by the app role; destroyed after."""
    # Not under pytest's tmp dir: that is private to root, and the cluster runs as the postgres user.
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    lab = Lab(base / "lab")
    try:
        lab.up(echo=lambda _: None)
    except Exception as exc:
        lab.destroy()
        pytest.fail(f"test servers ({prefix}) did not start: {exc}")
    with psycopg.connect(lab.superuser_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(template), sql.Identifier(APP_ROLE)))
    with psycopg.connect(lab.superuser_url(template), autocommit=True) as conn:
        prepare_app_database(conn, with_cron=False)
    seed.seed(app_url(lab, template), "S", seed_value, echo=lambda _: None)
    yield lab
    lab.destroy()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def servers():
    if os.environ.get("PGCONVERGE_TEST_BACKEND") == "docker":
        pytest.fail("PGCONVERGE_TEST_BACKEND=docker: the testcontainers backend is not available in this version;"
                    " unset it to use local servers")
    yield from cluster_with_template("pgconverge-test-", TEMPLATE, 42)


def app_url(lab: Lab, database: str) -> str:
    return lab.urls()["DATABASE_URL"].rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture
def fresh_db(servers) -> str:
    """A new database cloned from the seeded template (no pg_cron: only the cron database can have it)."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(TEMPLATE), sql.Identifier(APP_ROLE)))
    yield app_url(servers, name)
    with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def cron_db(servers) -> str:
    """The database pg_cron serves (cron.database_name), reset to freshly seeded scale S for each test."""
    with psycopg.connect(servers.superuser_url(servers.database), autocommit=True) as conn:
        conn.execute("SELECT cron.unschedule(jobid) FROM cron.job")
        conn.execute("TRUNCATE cron.job_run_details")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute(sql.SQL("CREATE SCHEMA public AUTHORIZATION {}").format(sql.Identifier(APP_ROLE)))
        conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
        prepare_app_database(conn, with_cron=True)
    url = servers.urls()["DATABASE_URL"]
    seed.seed(url, "S", 42, echo=lambda _: None)
    return url


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of phases.yml and sql/ that a test may edit; point PGCONVERGE_PHASES at project/'phases.yml'."""
    shutil.copy(REPO / "phases.yml", tmp_path / "phases.yml")
    shutil.copytree(REPO / "sql", tmp_path / "sql")
    return tmp_path


def run_pyinfra(database_url: str, deploy: str, *args: str, phases: Path | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """The real pyinfra CLI against the lab inventory, pointed at a test database."""
    scratch = Path(tempfile.gettempdir()) / "pgconverge-test-output"
    env = {**os.environ, "DATABASE_URL": database_url, "PGCONVERGE_BACKUP_DIR": str(scratch / "backups"),
           "PGCONVERGE_REPORTS_DIR": str(scratch / "reports")}
    if phases is not None:
        env["PGCONVERGE_PHASES"] = str(phases)
    return subprocess.run([PYINFRA, "inventory/lab.py", deploy, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def writing(url: str, statement: str, params: list | None = None):
    """An application client running `statement` in a loop (every 10 ms) while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(statement, params)  # type: ignore[arg-type]
                time.sleep(0.01)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
