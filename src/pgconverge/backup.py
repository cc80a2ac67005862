"""Verified backups before every change (pg_dump -Fc, pg_restore --list, checksum, retention) and the restore drill."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .secrets import mask, remember_url

SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class BackupFailed(Exception):
    pass


@dataclass(frozen=True)
class BackupRecord:
    path: Path
    sha256: str
    entries: int
    size: int


def libpq_env(url: str) -> dict[str, str]:
    """The connection as PG* variables, so that no password appears on a command line (ps) or in a message."""
    remember_url(url)
    params = conninfo_to_dict(url)
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE",
             "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT"}
    return {**os.environ, **{names[k]: str(v) for k, v in params.items() if k in names and v is not None}}


def _run(argv: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise BackupFailed(f"{argv[0]} is not installed — install postgresql-client-15") from None
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
        raise BackupFailed(mask(f"{what} failed: {reason}"))
    return result


def backup_name(environment: str, database: str, label: str, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return "-".join(SAFE.sub("_", part) for part in (environment, database, stamp, label)) + ".dump"


def take_backup(url: str, directory: Path, environment: str, label: str, retention: int = 5) -> BackupRecord:
    """pg_dump -Fc, verified by pg_restore --list, with a .sha256 beside it; older ones beyond `retention` removed."""
    env = libpq_env(url)
    database = env.get("PGDATABASE", "db")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / backup_name(environment, database, label)
    partial = target.with_suffix(".partial")
    try:
        # pg_cron's job table is readable only by its superuser; the jobs themselves are declared in phases.yml.
        _run(["pg_dump", "-Fc", "--no-password", "--exclude-table-data=cron.*", "-f", str(partial)], env, "pg_dump")
        listing = _run(["pg_restore", "--list", str(partial)], env, "pg_restore --list")
    except BackupFailed:
        partial.unlink(missing_ok=True)
        raise
    entries = sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))
    if entries == 0:
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"backup {target.name} lists no entries — not keeping it")
    digest = hashlib.sha256(partial.read_bytes()).hexdigest()
    partial.rename(target)
    target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    prune(directory, environment, database, retention)
    return BackupRecord(target, digest, entries, target.stat().st_size)


def backups_of(directory: Path, environment: str, database: str) -> list[Path]:
    prefix = f"{SAFE.sub('_', environment)}-{SAFE.sub('_', database)}-"
    return sorted((p for p in directory.glob(f"{prefix}*.dump")), key=lambda p: p.name, reverse=True)


def prune(directory: Path, environment: str, database: str, retention: int) -> None:
    for old in backups_of(directory, environment, database)[retention:]:
        old.unlink(missing_ok=True)
        old.with_name(old.name + ".sha256").unlink(missing_ok=True)


def verify_checksum(path: Path) -> None:
    recorded = path.with_name(path.name + ".sha256").read_text().split()[0]
    if hashlib.sha256(path.read_bytes()).hexdigest() != recorded:
        raise BackupFailed(f"{path.name}: checksum differs from the one recorded — the file is damaged")


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    tables = [r[0] for r in conn.execute(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'cron') ORDER BY 1").fetchall()]
    return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(t))).fetchone()[0]  # type: ignore[index]
            for t in tables}


def restore_drill(url: str, directory: Path, environment: str, echo=print) -> bool:
    """Restore the newest backup into a scratch database and compare every table's row count with the source."""
    env = libpq_env(url)
    database = env["PGDATABASE"]
    candidates = backups_of(directory, environment, database)
    if not candidates:
        raise BackupFailed(f"no backup of {environment}/{database} in {directory} — take one first")
    newest = candidates[0]
    verify_checksum(newest)
    scratch = f"pgconverge_drill_{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}"
    with psycopg.connect(url, autocommit=True) as conn:
        source = table_counts(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        listing = _run(["pg_restore", "--list", str(newest)], env, "pg_restore --list").stdout
        # Extensions may need a superuser (pg_stat_statements) or one database (pg_cron): create what this role
        # may, leave the rest out; they hold no table data of the app.
        extensions = re.findall(r"; \d+ \d+ \d+ EXTENSION - (\S+) ", listing)
        with psycopg.connect(url, dbname=scratch, autocommit=True) as conn:
            for extension in extensions:
                try:
                    conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension)))
                except psycopg.Error:
                    echo(f"note: extension {extension} not created in the scratch database (needs other privileges)")
        kept = "\n".join(line for line in listing.splitlines()
                         if " EXTENSION " not in line and " cron " not in line)
        with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as handle:
            handle.write(kept + "\n")
        _run(["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "-L", handle.name, "-d", scratch, str(newest)],
             {**env, "PGDATABASE": scratch}, "pg_restore")
        os.unlink(handle.name)
        with psycopg.connect(url, dbname=scratch, autocommit=True) as conn:
            restored = table_counts(conn)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    echo(f"restore drill of {newest.name} (sha256 verified)")
    echo(f"{'table':<40} {'source':>12} {'restored':>12}")
    equal = True
    for table in sorted(set(source) | set(restored)):
        a, b = source.get(table), restored.get(table)
        mark = "" if a == b else "  DIFFERENT"
        equal = equal and a == b
        echo(f"{table:<40} {a if a is not None else '-':>12} {b if b is not None else '-':>12}{mark}")
    echo("all row counts equal" if equal else "row counts differ")
    return equal
