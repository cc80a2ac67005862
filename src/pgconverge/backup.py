"""Verified backups before every change (pg_dump -Fc, pg_restore --list, checksum, retention) and the restore drill."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from . import clienttools
from .connection import open_connection
from .errors import UserError
from .secrets import mask, remember_url

SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class BackupFailed(UserError):
    pass


@dataclass(frozen=True)
class BackupRecord:
    path: Path
    sha256: str
    entries: int
    size: int
    mode: str = "schema"
    tool: str = ""  # the pg_dump that took it: "pg_dump 18 (/usr/lib/postgresql/18/bin/pg_dump)"


def libpq_env(url: str) -> dict[str, str]:
    """The connection as PG* variables, so that no password appears on a command line (ps) or in a message."""
    remember_url(url)
    params = conninfo_to_dict(url)
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE",
             "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT"}
    env = {**os.environ, **{names[k]: str(v) for k, v in params.items() if k in names and v is not None}}
    # a login's idle_in_transaction_session_timeout must not end the dump's long snapshot transaction
    env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " -c idle_in_transaction_session_timeout=0").strip()
    return env


def _run(argv: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise BackupFailed(f"{argv[0]} is not installed — install the postgresql-client of the server's major") \
            from None
    if result.returncode != 0:
        raise BackupFailed(mask(f"{what} failed: {tool_reason(result.stderr) or f'exit {result.returncode}'}"))
    return result


def tool_reason(stderr: str) -> str:
    """pg_dump/pg_restore end with 'detail: Query was: …'; the reason is the error line before it, with the details
    that explain it (a version mismatch names both versions there)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line.split("error: ", 1)[1] if "error: " in line else line.split("detail: ", 1)[1] for line in lines
              if "error: " in line or ("detail: " in line and "Query was:" not in line)]
    return "; ".join(dict.fromkeys(errors)) if errors else (lines[-1] if lines else "")


def backup_name(environment: str, host: str, database: str, label: str, now: dt.datetime | None = None) -> str:
    """Unique per host and moment: every Supabase database is called postgres, a fleet backs up in the same second."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    return "-".join(safe(part) for part in (environment, host, database, stamp, label)) + ".dump"


def safe(part: str) -> str:
    return SAFE.sub("_", part).strip("_") or "_"


def host_directory(base: Path, environment: str, host: str) -> Path:
    """One folder per inventory host: retention and the restore drill never mix two databases."""
    return base / safe(environment) / safe(host)


def _snapshot_facts(conn: psycopg.Connection, with_counts: bool, schemas: tuple[str, ...]) -> dict:
    """Tables (with row counts for a data backup) and pg_cron jobs, read inside the exported snapshot."""
    counts = table_counts(conn, exact=with_counts, schemas=schemas)
    jobs: list[dict] = []
    try:
        with conn.transaction():
            jobs = [dict(zip(("jobname", "schedule", "command", "database", "username", "active"), row, strict=True))
                    for row in conn.execute("SELECT jobname, schedule, command, database, username, active"
                                            " FROM cron.job ORDER BY jobid").fetchall()]
    except psycopg.Error:
        pass  # no pg_cron here, or its jobs are not readable by this role
    extensions: dict[str, str] = dict(conn.execute("SELECT e.extname, n.nspname FROM pg_extension e"
                                   " JOIN pg_namespace n ON n.oid = e.extnamespace").fetchall())
    return {"tables": counts, "cron_jobs": jobs, "extensions": extensions}


def take_backup(url: str, directory: Path, environment: str, label: str, retention: int = 5, *,
                host: str = "cli", mode: str = "schema", schemas: tuple[str, ...] = (),
                pg_bin: str | None = None) -> BackupRecord:
    """pg_dump -Fc from one exported snapshot (schema only, or with data), verified by pg_restore --list, with a
    .sha256 and a .json sidecar (tables, row counts seen in that snapshot, cron jobs); older ones pruned.
    A schema backup can be limited to the schemas the phases change (pg_dump locks every table it dumps, and
    the owner of the app's schemas may not read other teams' tables)."""
    env = libpq_env(url)
    database = env.get("PGDATABASE", "db")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / backup_name(environment, host, database, label)
    remove_orphaned_partials(directory)
    handle, partial_name = tempfile.mkstemp(prefix=f".partial-{os.getpid()}-", suffix=".dump", dir=directory)
    os.close(handle)
    partial = Path(partial_name)
    argv = ["pg_dump", "-Fc", "--no-password", "--exclude-table-data=cron.*", "-f", str(partial)]
    if mode != "full":
        argv.append("--schema-only")
        # exact names: a pattern in double quotes, its own double quotes doubled
        argv += [f'--schema="{schema.replace(chr(34), chr(34) * 2)}"' for schema in schemas]
    try:
        try:
            with open_connection(url, "pgconverge-backup", autocommit=False) as conn:
                conn.execute("SET idle_in_transaction_session_timeout = 0")
                conn.commit()
                dump = clienttools.find("pg_dump", conn.info.server_version // 10000, pg_bin)
                restore = clienttools.find("pg_restore", dump.major, str(dump.path.parent))
                argv[0] = str(dump.path)
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
                facts = _snapshot_facts(conn, with_counts=mode == "full", schemas=schemas if mode != "full" else ())
                # The dump sees exactly what the counts saw, whatever the application writes meanwhile.
                _run([*argv, f"--snapshot={snapshot}"], env, "pg_dump")
                conn.rollback()
        except psycopg.Error as exc:
            raise BackupFailed(mask(f"cannot read the database for the backup: {str(exc).strip().splitlines()[0]}")) \
                from None
        listing = _run([str(restore.path), "--list", str(partial)], env, "pg_restore --list")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    entries = sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))
    if entries == 0:
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"backup {target.name} lists no entries — not keeping it")
    digest = hashlib.sha256(partial.read_bytes()).hexdigest()
    sidecar = {"host": host, "database": database, "environment": environment, "label": label, "mode": mode,
               "schemas": list(schemas) if mode != "full" else [],
               "taken_at": dt.datetime.now(dt.UTC).isoformat(), "sha256": digest, "entries": entries, **facts}
    target.with_name(target.name + ".json").write_text(json.dumps(sidecar, indent=1, default=str) + "\n")
    target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    partial.rename(target)
    prune(directory, retention)
    return BackupRecord(target, digest, entries, target.stat().st_size, mode, str(dump))


def remove_orphaned_partials(directory: Path) -> None:
    """A run killed mid-dump leaves .partial-<pid>-*.dump: remove those whose process is gone."""
    for partial in directory.glob(".partial-*.dump"):
        pid = partial.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            partial.unlink(missing_ok=True)


def backups_of(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.dump"), key=lambda p: p.stat().st_mtime_ns, reverse=True)


def prune(directory: Path, retention: int) -> None:
    for old in backups_of(directory)[retention:]:
        for path in (old, old.with_name(old.name + ".sha256"), old.with_name(old.name + ".json")):
            path.unlink(missing_ok=True)


def verify_checksum(path: Path) -> None:
    recorded = path.with_name(path.name + ".sha256").read_text().split()[0]
    if hashlib.sha256(path.read_bytes()).hexdigest() != recorded:
        raise BackupFailed(f"{path.name}: checksum differs from the one recorded — the file is damaged")


def table_counts(conn: psycopg.Connection, exact: bool = True, schemas: tuple[str, ...] = ()) -> dict[str, int | None]:
    tables = [r[0] for r in conn.execute(
        "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'cron')"
        " AND (cardinality(%s::text[]) = 0 OR schemaname = ANY(%s)) ORDER BY 1", [list(schemas), list(schemas)]
    ).fetchall()]
    if not exact:
        return dict.fromkeys(tables)
    return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(t))).fetchone()[0]  # type: ignore[index]
            for t in tables}


def create_scratch(scratch_url: str, name: str) -> None:
    """The drill's database; a login without CREATEDB gets one line saying what is needed."""
    with open_connection(scratch_url, "pgconverge-drill", "the scratch server") as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
            raise BackupFailed(
                f"restore drill: role {user} may not create databases — grant it CREATEDB (ALTER ROLE … CREATEDB), or"
                " pass --scratch-url (or --scratch-url-env) naming a server where the drill may create its scratch"
                " database; nothing was restored") from None


def server_major(url: str) -> int:
    with open_connection(url, "pgconverge-backup") as conn:
        return conn.info.server_version // 10000


def restore_drill(url: str, directory: Path, echo=print, scratch_url: str | None = None,
                  pg_bin: str | None = None) -> bool:
    """Restore the newest backup of this host into a scratch database (on `scratch_url`'s server, else the
    database's own) and compare it with what the backup's own snapshot held (tables, and row counts for a data
    backup): later writes to the live database don't matter."""
    url = scratch_url or url
    env = libpq_env(url)
    candidates = backups_of(directory)
    if not candidates:
        raise BackupFailed(f"no backup in {directory} — take one first (pgconverge backup take)")
    newest = candidates[0]
    verify_checksum(newest)
    sidecar_path = newest.with_name(newest.name + ".json")
    if not sidecar_path.exists():
        raise BackupFailed(f"{newest.name} has no {sidecar_path.name} — take a new backup")
    sidecar = json.loads(sidecar_path.read_text())
    recorded: dict[str, int | None] = sidecar["tables"]
    full = sidecar.get("mode") == "full"
    schemas: dict[str, str] = sidecar.get("extensions", {})
    restore = str(clienttools.find("pg_restore", server_major(url), pg_bin).path)
    scratch = f"pgconverge_drill_{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S%f}"
    create_scratch(url, scratch)
    try:
        listing = _run([restore, "--list", str(newest)], env, "pg_restore --list").stdout
        # Extensions may need a superuser (pg_stat_statements) or one database (pg_cron): create what this role
        # may, leave the rest out; they hold no table data of the app.
        extensions = re.findall(r"^\d+; \d+ \d+ EXTENSION - (\S+) ", listing, re.M)  # "4; 3079 16433 EXTENSION - pg_trgm"
        created_schemas = {"public"}  # a new database has it; a dump limited to schemas lists it
        with psycopg.connect(url, dbname=scratch, autocommit=True) as conn:
            for extension in extensions:
                schema = schemas.get(extension)
                statement = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension))
                try:
                    with conn.transaction():
                        if schema and schema not in ("public", "pg_catalog"):
                            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                            created_schemas.add(schema)
                        if schema and schema != "pg_catalog":
                            statement += sql.SQL(" WITH SCHEMA {}").format(sql.Identifier(schema))
                        conn.execute(statement)
                except psycopg.Error:
                    echo(f"note: extension {extension} not created in the scratch database (needs other privileges)")
        # Extensions were created above in their own schemas; those schemas exist already.
        kept = "\n".join(line for line in listing.splitlines()
                         if " EXTENSION " not in line and " cron " not in line
                         and not any(line.rstrip().endswith(f" SCHEMA - {s}") or f" SCHEMA - {s} " in line
                                     for s in created_schemas))
        with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as handle:
            handle.write(kept + "\n")
        _run([restore, "--no-owner", "--no-acl", "--exit-on-error", "-L", handle.name, "-d", scratch, str(newest)],
             {**env, "PGDATABASE": scratch}, "pg_restore")
        os.unlink(handle.name)
        with psycopg.connect(url, dbname=scratch, autocommit=True) as conn:
            restored = table_counts(conn, exact=full)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    what = "row counts" if full else "tables (schema-only backup)"
    echo(f"restore drill of {newest.name} (sha256 verified): {what} compared with the backup's own snapshot")
    echo(f"{'table':<40} {'in backup':>12} {'restored':>12}")
    equal = True
    for table in sorted(set(recorded) | set(restored)):
        a, b = recorded.get(table, "-"), restored.get(table, "-")
        same = table in recorded and table in restored and a == b
        equal = equal and same
        echo(f"{table:<40} {'' if a is None else a:>12} {'' if b is None else b:>12}{'' if same else '  DIFFERENT'}")
    echo(f"all {what} equal" if equal else f"{what} differ")
    return equal
