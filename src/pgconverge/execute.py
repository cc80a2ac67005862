"""Running steps: psycopg, autocommit, one statement per call; lock waits that fit each lock; signals."""

from __future__ import annotations

import contextlib
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import errors, sql

from . import pacing
from .connection import open_connection
from .errors import UserError
from .plan import Step
from .secrets import mask
from .spec import Settings, seconds

APPLICATION_NAME = "pgconverge"
# One advisory lock key per database for every pgconverge run ("pgconverge" hashed, fixed forever).
RUN_LOCK_KEY = 0x7067636F6E76
Log = Callable[[str], None]


class StepFailed(UserError):
    """A step could not be applied; the message is one masked line for the operator."""


class RunLocked(StepFailed):
    pass


def connect(url: str, where: str = "the database") -> psycopg.Connection:
    return open_connection(url, APPLICATION_NAME, where)


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


def is_concurrent_index_step(step: Step) -> bool:
    """CREATE/DROP INDEX CONCURRENTLY: never blocks the application, waits politely for old transactions."""
    return step.concurrent


def is_exclusive_step(step: Step) -> bool:
    """Steps whose queued lock request would stall every later writer (or query) on the object."""
    return step.lock.queues_writers and not step.long_running


def lock_timeout_for(settings: Settings, step: Step) -> str:
    if is_concurrent_index_step(step):
        return "0"  # bounded by build_max_wait and watched instead: a lock timeout would throw the build away
    if is_exclusive_step(step):
        return settings.exclusive_lock_timeout
    return settings.lock_timeout


def session_statements(settings: Settings, step: Step) -> tuple[str, ...]:
    """Run before every step: the lock wait that fits the step's lock; no statement timeout for builds."""
    timeout = "0" if step.long_running or is_concurrent_index_step(step) else settings.statement_timeout
    return (
        sql.SQL("SET lock_timeout = {}").format(sql.Literal(lock_timeout_for(settings, step))).as_string(None),
        sql.SQL("SET statement_timeout = {}").format(sql.Literal(timeout)).as_string(None),
        # A runner killed mid-build must not leave its backend building on: the server notices within 2 s.
        "SET client_connection_check_interval = '2s'",
        sql.SQL("SET max_parallel_maintenance_workers = {}").format(
            sql.Literal(settings.build_parallel_workers)).as_string(None),
    )


def _set_session(conn: psycopg.Connection, settings: Settings, step: Step) -> None:
    for statement in session_statements(settings, step):
        conn.execute(statement)  # type: ignore[arg-type]


SESSION_LINE = (
    "SELECT a.pid, coalesce(a.state, '?'), coalesce(extract(epoch FROM now() - a.xact_start)::int, 0),"
    " left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 100) FROM pg_stat_activity a"
)


def describe_sessions(rows: list[tuple]) -> str:
    return "; ".join(f"pid {pid} ({state}, transaction open {age} s): {query}" for pid, state, age, query in rows)


def old_snapshot_holders(conn: psycopg.Connection, min_age_seconds: int = 5) -> str:
    """Sessions of this database whose snapshot a concurrent index build will wait for (long or idle transactions)."""
    rows = conn.execute(
        SESSION_LINE + " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
        " AND a.backend_xmin IS NOT NULL AND a.backend_type = 'client backend'"
        " AND (a.state LIKE 'idle in transaction%%' OR a.xact_start < now() - make_interval(secs => %s))"
        " ORDER BY a.xact_start",
        [min_age_seconds],
    ).fetchall()
    return describe_sessions(rows)


@dataclass
class BuildWatch:
    """What the watcher saw of one build: set by the watcher greenlet, read by the step when the build ends."""

    stopped_because: str = ""
    waited_for: str = ""


def _watch_build(url: str, pid: int, settings: Settings, log: Log, stop: threading.Event, watch: BuildWatch) -> None:
    """Every few seconds: progress, or whom the build waits for; cancel it once it waited build_max_wait."""
    max_wait = seconds(settings.build_max_wait)
    poll = min(0.5, settings.progress_interval_seconds)
    waited = 0.0
    last_log = time.monotonic()
    try:
        with psycopg.connect(url, autocommit=True, application_name=f"{APPLICATION_NAME}-progress") as watcher:
            while not stop.wait(poll):
                row = watcher.execute(
                    "SELECT coalesce(p.phase, a.wait_event_type, 'running'), p.blocks_done, p.blocks_total,"
                    " p.tuples_done, p.tuples_total, a.wait_event_type = 'Lock', pg_blocking_pids(a.pid)"
                    " FROM pg_stat_activity a LEFT JOIN pg_stat_progress_create_index p ON p.pid = a.pid"
                    " WHERE a.pid = %s", [pid]).fetchone()
                if not row:
                    continue
                phase, blocks_done, blocks_total, tuples_done, tuples_total, waiting, blocking = row
                who = describe_sessions(watcher.execute(SESSION_LINE + " WHERE a.pid = ANY(%s)",
                                                        [blocking]).fetchall()) if waiting and blocking else ""
                waited = waited + poll if waiting else waited
                if who:
                    watch.waited_for = who
                if waiting and waited >= max_wait:
                    watch.stopped_because = (f"waited {waited:.0f} s, longer than build_max_wait "
                                             f"{settings.build_max_wait}, for {who or 'other transactions'}")
                    watcher.execute("SELECT pg_cancel_backend(%s)", [pid])
                    return
                if time.monotonic() - last_log < settings.progress_interval_seconds:
                    continue
                last_log = time.monotonic()
                if waiting:
                    log(f"  … {phase}: waiting {waited:.0f} s for {who or 'other transactions'}")
                else:
                    share = (f"{100 * blocks_done / blocks_total:.0f}% of blocks" if blocks_total
                             else f"{100 * tuples_done / tuples_total:.0f}% of tuples" if tuples_total else "")
                    log(f"  … {phase} {share}".rstrip())
    except psycopg.Error:
        return


class Interruption:
    """SIGINT/SIGTERM: cancel the statement running on the server, let its step clean up, run no further step."""

    received: str | None = None
    running: dict[int, psycopg.Connection] = {}

    @classmethod
    def install(cls) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, cls.handle)

    @classmethod
    def handle(cls, signum: int, frame: object) -> None:
        first = cls.received is None
        cls.received = signal.Signals(signum).name
        if first and cls.running:
            print(f"{cls.received}: cancelling the running statement, cleaning up, then stopping", file=sys.stderr)
            for conn in list(cls.running.values()):
                with contextlib.suppress(Exception):
                    conn.cancel()
            return
        # Nothing is half-done between statements (each step commits or not): stop now, never with exit 0.
        print(f"{cls.received}: stopped", file=sys.stderr)
        raise SystemExit(130)

    @classmethod
    def check(cls) -> None:
        if cls.received:
            raise StepFailed(f"interrupted by {cls.received}: no further step runs — run again to finish")


@contextlib.contextmanager
def _cancellable(conn: psycopg.Connection):
    Interruption.running[id(conn)] = conn
    try:
        yield
    finally:
        Interruption.running.pop(id(conn), None)


def _act_as(conn: psycopg.Connection, step: Step) -> None:
    """SET ROLE for a step that must create objects as their owner; a clear line when this login may not."""
    if not step.run_as:
        return
    row = conn.execute("SELECT current_user, pg_has_role(current_user, %s, 'MEMBER')", [step.run_as]).fetchone()
    if not (row and row[1]):
        raise StepFailed(f"{step.object}: belongs to {step.run_as}, and {row[0] if row else 'this login'} may not act"
                         f" as it — GRANT {step.run_as} TO {row[0] if row else 'the login'}, run as {step.run_as},"
                         " or set settings.owner in phases.yml")
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(step.run_as)))


def _run_once(conn: psycopg.Connection, step: Step) -> None:
    _act_as(conn, step)
    try:
        _run_statements(conn, step)
    finally:
        if step.run_as and not conn.closed and not conn.broken:
            conn.execute("RESET ROLE")


def _run_statements(conn: psycopg.Connection, step: Step) -> None:
    with _cancellable(conn):
        if step.transactional:
            with conn.transaction():
                for statement in step.statements:
                    _execute_noting(conn, statement)
        else:
            for statement in step.statements:
                _execute_noting(conn, statement)


def _execute_noting(conn: psycopg.Connection, statement: str) -> None:
    """One statement; a failure carries it as a note, so the message names the statement that failed."""
    try:
        conn.execute(statement)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        exc.add_note(statement)
        raise


def failed_statement(exc: BaseException, step: Step) -> str:
    notes = getattr(exc, "__notes__", None)
    return notes[-1] if notes else step.statements[0]


def drop_failed_build(conn: psycopg.Connection, step: Step, settings: Settings) -> str:
    """A failed or cancelled CREATE INDEX CONCURRENTLY leaves an INVALID index: drop it, bounded; say what is left."""
    name = step.builds
    if name is None or conn.closed or conn.broken:
        return ""
    try:
        row = conn.execute("SELECT NOT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
                           [name]).fetchone()
        if not (row and row[0]):
            return ""
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(settings.lock_timeout)))
        conn.execute("SET statement_timeout = 0")
        with _cancellable(conn):
            conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # type: ignore[arg-type]
        return f"; its INVALID leftover {name} was dropped"
    except psycopg.Error as exc:
        return f"; its INVALID leftover {name} is still there ({_first_line(exc)}) — the next run drops it"


def _jittered(delay: float) -> float:
    return delay * random.uniform(0.5, 1.5)


def _interruptible_sleep(wait: float) -> None:
    time.sleep(wait)
    Interruption.check()


def run_step(conn: psycopg.Connection, url: str, step: Step, settings: Settings, log: Log) -> None:
    """Apply one step; retry lock timeouts with jittered doubling backoff, then fail naming who holds the lock."""
    Interruption.check()
    pacing.yield_to_application(conn, step, settings, settings.build_window, log, sleep=_interruptible_sleep)
    attempts = settings.lock_retries + 1
    delay = settings.retry_backoff_seconds
    if step.builds:
        waiting_for = old_snapshot_holders(conn)
        if waiting_for:
            log(f"  note: this build will wait for sessions holding old snapshots: {waiting_for}")
    for attempt in range(1, attempts + 1):
        stop = threading.Event()
        watch = BuildWatch()
        watcher = None
        try:
            _set_session(conn, settings, step)
            if is_concurrent_index_step(step):
                watcher = threading.Thread(
                    target=_watch_build, args=(url, conn.info.backend_pid, settings, log, stop, watch), daemon=True)
                watcher.start()
            with pacing.build_priority(conn, step, settings.build_priority, log):
                _run_once(conn, step)
            return
        except errors.LockNotAvailable as exc:
            held_by = blockers(conn, step.table) if not conn.closed else ""
            left = drop_failed_build(conn, step, settings)
            timeout = lock_timeout_for(settings, step)
            if attempt == attempts or Interruption.received:
                left += clean_up_after(conn, step)
                raise StepFailed(mask(
                    f"{step.object}: lock not available after {attempt} tries of lock_timeout {timeout}"
                    f" ({_first_line(exc)})" + (f"; blocked by {held_by}" if held_by else "") + left
                    + " — end the blocking session, or run again at a quieter time"
                    " (lock_timeout, exclusive_lock_timeout, lock_retries in phases.yml settings)"
                )) from None
            wait = _jittered(delay)
            log(f"  lock busy on {step.object} (try {attempt}/{attempts} of {timeout}); retrying in {wait:.1f}s"
                + (f"; held by {held_by}" if held_by else ""))
            time.sleep(wait)
            delay *= 2
        except errors.InsufficientPrivilege as exc:
            hint = (" — enable it in the Supabase dashboard (Database → Extensions) or have a superuser run it"
                    if step.target == "extension" else " — grant the privilege or run as the object's owner")
            raise StepFailed(mask(f"{step.object}: {_first_line(exc)}{hint}")) from None
        except psycopg.Error as exc:
            stop.set()
            if watcher is not None:
                watcher.join(timeout=5)
            left = drop_failed_build(conn, step, settings) + clean_up_after(conn, step)
            if Interruption.received:
                raise StepFailed(mask(f"{step.object}: interrupted by {Interruption.received}, statement cancelled"
                                      f" on the server{left}; no further step runs — run again to finish")) from None
            if watch.stopped_because:
                raise StepFailed(mask(f"{step.object}: build stopped: {watch.stopped_because}{left}"
                                      " — end that session or raise build_max_wait, then run again")) from None
            cron_home = re.search(r"can only create extension in database (\S+)", str(exc))
            if cron_home:
                here = conn.info.dbname
                raise StepFailed(mask(
                    f"{step.object}: pg_cron lives in database {cron_home.group(1)} (cron.database_name), not in {here}"
                    f" — declare pg_cron and the cron jobs (each with `database: {here}`) in a phase of their own and"
                    f" converge that phase against {cron_home.group(1)}, where they are scheduled with"
                    " cron.schedule_in_database")) from None
            raise StepFailed(mask(f"{step.object}: {_first_line(exc)}{left} — while running: "
                                  f"{failed_statement(exc, step)[:160]}")) from None
        finally:
            stop.set()
            if watcher is not None:
                watcher.join(timeout=5)


def clean_up_after(conn: psycopg.Connection, step: Step) -> str:
    """What a step that failed for good leaves for nobody (a new view built for a swap that did not happen)."""
    if not step.on_failure or conn.closed or conn.broken:
        return ""
    try:
        for statement in step.on_failure:
            conn.execute(statement)  # type: ignore[arg-type]
        return "; what was built for it was removed"
    except psycopg.Error as exc:
        return f"; cleaning up failed ({_first_line(exc)}) — the next run removes it"
