"""Bad input never reaches the database; secrets never reach output, logs, reports or file names."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PYINFRA, REPO, run_pyinfra

pytestmark = pytest.mark.integration
PGCONVERGE = str(Path(sys.executable).parent / "pgconverge")
BROKEN = [
    "version: 1\nphases:\n  - id: phase1\n    title: x\n    colour: red\n",
    "version: 1\nphases:\n  - id: 'x\"; DROP TABLE leads; --'\n    title: x\n",
    "a: &a [1, 1]\nb: &b [*a, *a]\nversion: 1\nphases: *b\n",
    "version: 1\nphases:\n  - id: phase1\n    title: x\n    cron_jobs:\n"
    "      - {name: j, schedule: '99 * * * *', command: SELECT 1}\n",
    "\x1f\x00garbage",
]


class ConnectionCounter:
    """A TCP listener standing in for the database: it only counts who connects."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


@pytest.mark.parametrize("text", BROKEN, ids=["unknown-key", "injection", "alias-bomb", "bad-cron", "garbage"])
def test_broken_phases_file_stops_every_deploy_before_any_connection(tmp_path, text):
    (tmp_path / "phases.yml").write_bytes(text.encode())
    counter = ConnectionCounter()
    url = f"postgresql://salesflow:pw@127.0.0.1:{counter.port}/salesflow"
    for deploy in ("deploys/all.py", "deploys/verify.py", "deploys/rollback.py"):
        result = run_pyinfra(url, deploy, "-y", phases=tmp_path / "phases.yml")
        combined = result.stdout + result.stderr
        assert result.returncode == 2, combined[-2000:]
        assert "Traceback" not in combined
        assert sum(1 for line in combined.splitlines() if "phases.yml" in line) == 1
    counter.server.close()
    assert counter.accepted == 0


MARKER = "S3cr3tMARKER"


@pytest.fixture
def marked_url(servers, cron_db):
    """A login that owns nothing itself but may act for the owner, with the marker in its password."""
    password = f"pw-{MARKER}-x"
    with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS marked")
        conn.execute(sql.SQL("CREATE ROLE marked LOGIN CREATEDB PASSWORD {} IN ROLE salesflow, pg_read_all_stats").format(
            sql.Literal(password)))
    with psycopg.connect(servers.superuser_url(servers.database), autocommit=True) as conn:
        conn.execute("GRANT USAGE ON SCHEMA cron TO marked")
    yield cron_db.replace(cron_db.split("//")[1].split("@")[0], f"marked:{password}")


def test_marker_password_never_appears_anywhere(marked_url, tmp_path):
    scratch = tmp_path / "out"
    env = {**os.environ, "DATABASE_URL": marked_url, "PGCONVERGE_BACKUP_DIR": str(scratch / "backups"),
           "PGCONVERGE_REPORTS_DIR": str(scratch / "reports")}
    outputs = []
    for deploy, extra in (("deploys/all.py", "--dry"), ("deploys/all.py", "-y"), ("deploys/verify.py", "-y"),
                          ("deploys/rollback.py", "-y")):
        done = subprocess.run([PYINFRA, "inventory/lab.py", deploy, extra, "--debug"], cwd=REPO, env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, outputs[-1][-3000:]
    for argv in (["plan", "inventory/lab.py", "deploys/all.py"],
                 ["plan", "inventory/lab.py", "deploys/all.py", "--format", "json"],
                 ["kpi", "--runs", "3"], ["snapshot", "--reports", str(scratch / "reports")],
                 ["backup", "take", "--backup-dir", str(scratch / "backups")],
                 ["backup", "restore-drill", "--backup-dir", str(scratch / "backups")]):
        done = subprocess.run([PGCONVERGE, *argv], cwd=REPO, env=env, capture_output=True, text=True)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, outputs[-1][-3000:]
    wrong = marked_url.replace(MARKER, MARKER + "wrong")
    for argv in (["plan", "inventory/lab.py", "deploys/all.py"], ["kpi"], ["backup", "take", "--backup-dir", str(scratch)]):
        done = subprocess.run([PGCONVERGE, *argv], cwd=REPO, env={**env, "DATABASE_URL": wrong}, capture_output=True,
                              text=True)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode != 0
    debug_log = REPO / "pyinfra-debug.log"
    if debug_log.exists():
        outputs.append(debug_log.read_text())
    files = list(scratch.rglob("*"))
    assert any(f.suffix == ".dump" for f in files) and any(f.suffix == ".json" for f in files)
    leaks = [i for i, text in enumerate(outputs) if MARKER in text]
    assert leaks == [], [outputs[i][max(0, outputs[i].find(MARKER) - 200):][:400] for i in leaks]
    assert not [f for f in files if MARKER in f.name]
    assert not [f for f in files if f.suffix in (".json", ".md", ".sha256") and MARKER in f.read_text()]
