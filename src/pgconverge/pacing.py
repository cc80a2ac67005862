"""Builds that yield to the application: before each step that builds (an index, an MV swap), the run looks at
what PostgreSQL shows of the application's stress and pauses while it is high; outside a declared build window it
builds nothing. GitLab pauses its background migrations on the same signals."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

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
    return step.kind == "build" or step.action in (Action.BUILD_CONCURRENTLY, Action.BUILD, Action.SWAP)


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
