"""Builds that yield to the application: before each step that builds (an index, an MV swap), the run looks at
what PostgreSQL shows of the application's stress and pauses while it is high; outside a declared build window it
builds nothing. GitLab pauses its background migrations on the same signals."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .errors import UserError
from .model import Action, Step
from .spec import Settings, seconds

# how often a paused run looks again
POLL_SECONDS = 2.0
WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class PausedTooLong(UserError):
    """The database stayed under stress for longer than the run may wait."""


@dataclass(frozen=True)
class Stress:
    lock_waiters: int  # the application's sessions waiting for a lock
    replication_lag_s: float  # the slowest standby's replay lag
    active_sessions: int  # the application's sessions running a statement


def read_stress(conn: psycopg.Connection) -> Stress:
    row = conn.execute(
        """
        SELECT (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                  AND backend_type = 'client backend' AND pid <> pg_backend_pid()),
               (SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) FROM pg_stat_replication),
               (SELECT count(*) FROM pg_stat_activity WHERE state = 'active'
                  AND backend_type = 'client backend' AND pid <> pg_backend_pid())
        """).fetchone()
    assert row is not None
    return Stress(int(row[0]), float(row[1]), int(row[2]))


def stress_reasons(stress: Stress, settings: Settings) -> list[str]:
    """Why a build should wait now (empty: go on)."""
    reasons = []
    if stress.lock_waiters > settings.pause_builds_at_lock_waiters:
        reasons.append(f"{stress.lock_waiters} sessions waiting for locks (> {settings.pause_builds_at_lock_waiters})")
    lag = seconds(settings.pause_builds_at_replication_lag)
    if stress.replication_lag_s > lag:
        reasons.append(f"replication lag {stress.replication_lag_s:.1f} s (> {lag:.0f} s)")
    if settings.pause_builds_at_active_sessions and stress.active_sessions > settings.pause_builds_at_active_sessions:
        reasons.append(f"{stress.active_sessions} active sessions (> {settings.pause_builds_at_active_sessions})")
    return reasons


def in_window(window: str, now: dt.time) -> bool:
    """`HH:MM-HH:MM` (UTC); a window may span midnight (22:00-06:00)."""
    match = WINDOW.match(window)
    if match is None:
        raise UserError(f"build window '{window}' is not HH:MM-HH:MM (UTC) — e.g. build_window: \"22:00-06:00\"")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = dt.time(h1, m1), dt.time(h2, m2)
    return start <= now < end if start <= end else now >= start or now < end


def builds(step: Step) -> bool:
    """A step that reads a whole table or swaps an object the application reads."""
    return step.long_running or step.action in (Action.BUILD_CONCURRENTLY, Action.BUILD, Action.SWAP)


def yield_to_application(conn: psycopg.Connection, step: Step, settings: Settings, window: str | None,
                         log: Callable[[str], None], sleep: Callable[[float], None] = time.sleep) -> None:
    """Before a build: refuse outside the build window; pause while the database is under stress, up to
    max_build_pause, then stop (the next run resumes where this one stopped)."""
    if not builds(step):
        return
    now = dt.datetime.now(dt.UTC)
    if window and not in_window(window, now.time()):
        raise PausedTooLong(f"{step.object}: outside the build window {window} UTC (now {now:%H:%M}): not built —"
                            " run again inside it, or change build_window (settings or host data)")
    reasons = stress_reasons(read_stress(conn), settings)
    if not reasons:
        return
    limit = seconds(settings.max_build_pause)
    started = time.monotonic()
    log(f"  pausing before {step.object}: {'; '.join(reasons)}")
    while reasons:
        if time.monotonic() - started >= limit:
            raise PausedTooLong(f"{step.object}: the database stayed under stress for {settings.max_build_pause}"
                                f" ({'; '.join(reasons)}): not built — run again at a quieter time"
                                " (settings: max_build_pause, pause_builds_at_*)")
        sleep(POLL_SECONDS)
        reasons = stress_reasons(read_stress(conn), settings)
    log(f"  resuming {step.object} after {time.monotonic() - started:.0f} s")


# nice 19 and the idle I/O class: the build gets the CPU and the disk only when the application leaves them
LOW_NICE = 19


def local_backend(conn: psycopg.Connection) -> int | None:
    """The pid of this session's server process when it runs on this machine (the lab, a run on the database host),
    else None: a remote server's processes are out of reach."""
    pid = conn.info.backend_pid
    host = conn.info.host or ""
    if not (host.startswith("/") or host in ("127.0.0.1", "::1", "localhost")):
        return None
    try:
        return pid if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres" else None
    except OSError:
        return None


@contextlib.contextmanager
def build_priority(conn: psycopg.Connection, step: Step, priority: str, log: Callable[[str], None]) -> Iterator[None]:
    """`low`: while a build runs, its server process has the lowest CPU and I/O priority; restored after."""
    pid = local_backend(conn) if priority == "low" and builds(step) else None
    if priority == "low" and builds(step) and pid is None:
        log("  note: build_priority low needs the database server on this machine (the lab, a run on its host):"
            " not lowered")
    if pid is None:
        yield
        return
    try:
        before = os.getpriority(os.PRIO_PROCESS, pid)
        os.setpriority(os.PRIO_PROCESS, pid, LOW_NICE)
        subprocess.run(["ionice", "-c", "3", "-p", str(pid)], capture_output=True, check=False)
    except OSError as exc:
        log(f"  note: build_priority low: cannot renice the server process {pid} ({exc.strerror}): not lowered")
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, before)
            subprocess.run(["ionice", "-c", "2", "-n", "4", "-p", str(pid)], capture_output=True, check=False)
