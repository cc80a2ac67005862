"""When a build yields: the stress thresholds and the build window, as pure rules."""

from __future__ import annotations

import datetime as dt

import pytest

from pgconverge.errors import UserError
from pgconverge.pacing import Stress, in_window, stress_reasons
from pgconverge.spec import Settings


def test_a_window_may_span_midnight():
    assert in_window("22:00-06:00", dt.time(23, 30)) and in_window("22:00-06:00", dt.time(5, 59))
    assert not in_window("22:00-06:00", dt.time(6, 0)) and not in_window("22:00-06:00", dt.time(12, 0))
    assert in_window("09:00-17:00", dt.time(9, 0)) and not in_window("09:00-17:00", dt.time(17, 0))
    with pytest.raises(UserError, match="is not HH:MM-HH:MM"):
        in_window("9-17", dt.time(9, 0))


def test_stress_names_each_threshold_it_crossed():
    settings = Settings(pause_builds_at_lock_waiters=2, pause_builds_at_replication_lag="10s")
    assert stress_reasons(Stress(2, 10.0, 500), settings) == []  # active sessions are not watched by default
    assert stress_reasons(Stress(3, 12.5, 0), settings) == [
        "3 sessions waiting for locks (> 2)", "replication lag 12.5 s (> 10 s)"]
    watched = Settings(pause_builds_at_active_sessions=40)
    assert stress_reasons(Stress(0, 0.0, 41), watched) == ["41 active sessions (> 40)"]
