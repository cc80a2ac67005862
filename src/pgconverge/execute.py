"""Running steps: psycopg, autocommit, one statement per call, lock_timeout with bounded retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import errors, sql

from .plan import Step
from .secrets import mask, remember_url
from .spec import Settings

APPLICATION_NAME = "pgconverge"
# One advisory lock key per database for every pgconverge run ("pgconverge" hashed, fixed forever).
RUN_LOCK_KEY = 0x7067636F6E76
Log = Callable[[str], None]


class StepFailed(Exception):
    """A step could not be applied; the message is one masked line for the operator."""


class RunLocked(StepFailed):
    pass


def connect(url: str) -> psycopg.Connection:
    remember_url(url)
    try:
        return psycopg.connect(url, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=10)
    except psycopg.Error as exc:
        raise StepFailed(mask(f"cannot connect to the database: {_first_line(exc)}")) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def take_run_lock(conn: psycopg.Connection) -> None:
    """Session-level advisory lock held for the whole run; a second concurrent run stops at once."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", [RUN_LOCK_KEY]).fetchone()
    if row and row[0]:
        return
    holder = conn.execute(
        """
        SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s::bigint & 4294967295
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
        [RUN_LOCK_KEY],
    ).fetchone()
    who = f" (pid {holder[0]}, {holder[1] or 'unknown app'}, connected {holder[2]:%Y-%m-%d %H:%M:%S})" if holder else ""
    raise RunLocked(f"another pgconverge run holds this database{who} — wait for it to finish, then run again")


def blockers(conn: psycopg.Connection, table: str | None) -> str:
    """Who holds locks on the table our DDL waited for: pid and query, for the failure message."""
    if not table:
        return ""
    rows = conn.execute(
        """
        SELECT DISTINCT a.pid, a.state, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120)
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.relation = to_regclass(%s) AND l.granted AND a.pid <> pg_backend_pid()
        """,
        [table],
    ).fetchall()
    return "; ".join(f"pid {pid} ({state}): {query}" for pid, state, query in rows)


def session_statements(settings: Settings, step: Step) -> tuple[str, ...]:
    """Run before every step: a bounded lock wait always; no statement timeout only for builds."""
    timeout = "0" if step.kind == "build" else settings.statement_timeout
    return (
        sql.SQL("SET lock_timeout = {}").format(sql.Literal(settings.lock_timeout)).as_string(None),
        sql.SQL("SET statement_timeout = {}").format(sql.Literal(timeout)).as_string(None),
        # A runner killed mid-build must not leave its backend building on: the server notices within 2 s.
        "SET client_connection_check_interval = '2s'",
        sql.SQL("SET max_parallel_maintenance_workers = {}").format(
            sql.Literal(settings.build_parallel_workers)).as_string(None),
    )


def _set_session(conn: psycopg.Connection, settings: Settings, step: Step) -> None:
    for statement in session_statements(settings, step):
        conn.execute(statement)  # type: ignore[arg-type]


def _watch_index_build(url: str, pid: int, interval: float, log: Log, stop: threading.Event) -> None:
    """Log pg_stat_progress_create_index for our backend every few seconds while a build runs."""
    try:
        with psycopg.connect(url, autocommit=True, application_name=f"{APPLICATION_NAME}-progress") as watcher:
            while not stop.wait(interval):
                row = watcher.execute(
                    "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total"
                    " FROM pg_stat_progress_create_index WHERE pid = %s",
                    [pid],
                ).fetchone()
                if row:
                    phase, blocks_done, blocks_total, tuples_done, tuples_total = row
                    share = (f"{100 * blocks_done / blocks_total:.0f}% of blocks" if blocks_total
                             else f"{100 * tuples_done / tuples_total:.0f}% of tuples" if tuples_total else "")
                    log(f"  … {phase} {share}".rstrip())
    except psycopg.Error:
        return


def _run_once(conn: psycopg.Connection, step: Step) -> None:
    if step.transactional:
        with conn.transaction():
            for statement in step.statements:
                conn.execute(statement)  # type: ignore[arg-type]
    else:
        for statement in step.statements:
            conn.execute(statement)  # type: ignore[arg-type]


def _repair_failed_build(conn: psycopg.Connection, step: Step) -> None:
    """A CREATE INDEX CONCURRENTLY that failed leaves an INVALID index behind: drop it before the retry."""
    statement = step.statements[0]
    if "INDEX CONCURRENTLY" not in statement or not statement.startswith("CREATE"):
        return
    name = statement.split(" CONCURRENTLY ", 1)[1].split(" ON ", 1)[0]
    row = conn.execute(
        "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.oid = to_regclass(%s)", [name]
    ).fetchone()
    if row and row[0]:
        conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # type: ignore[arg-type]


def run_step(conn: psycopg.Connection, url: str, step: Step, settings: Settings, log: Log) -> None:
    """Apply one step; retry lock timeouts with doubling backoff, then fail naming who holds the lock."""
    attempts = settings.lock_retries + 1
    delay = settings.retry_backoff_seconds
    for attempt in range(1, attempts + 1):
        stop = threading.Event()
        watcher = None
        try:
            _set_session(conn, settings, step)
            if step.kind == "build" and "INDEX CONCURRENTLY" in step.statements[0]:
                watcher = threading.Thread(
                    target=_watch_index_build,
                    args=(url, conn.info.backend_pid, settings.progress_interval_seconds, log, stop),
                    daemon=True,
                )
                watcher.start()
            _run_once(conn, step)
            return
        except errors.LockNotAvailable as exc:
            held_by = blockers(conn, step.table) if not conn.closed else ""
            _repair_failed_build(conn, step)
            if attempt == attempts:
                raise StepFailed(mask(
                    f"{step.object}: lock not available after {attempts} tries of lock_timeout "
                    f"{settings.lock_timeout} ({_first_line(exc)})"
                    + (f"; blocked by {held_by}" if held_by else "")
                    + " — end the blocking session or raise lock_timeout/lock_retries in phases.yml settings"
                )) from None
            log(f"  lock busy on {step.object} (try {attempt}/{attempts}); retrying in {delay:.1f}s"
                + (f"; held by {held_by}" if held_by else ""))
            time.sleep(delay)
            delay *= 2
        except errors.InsufficientPrivilege as exc:
            hint = (" — enable it in the Supabase dashboard (Database → Extensions) or have a superuser run it"
                    if "EXTENSION" in step.statements[0] else " — grant the privilege or run as the object's owner")
            raise StepFailed(mask(f"{step.object}: {_first_line(exc)}{hint}")) from None
        except psycopg.Error as exc:
            if not conn.closed and not conn.broken:
                _repair_failed_build(conn, step)
            raise StepFailed(mask(f"{step.object}: {_first_line(exc)} — while running: {step.statements[0][:160]}")) \
                from None
        finally:
            stop.set()
            if watcher is not None:
                watcher.join(timeout=5)
