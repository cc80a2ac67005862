"""pg_cron jobs (kinds/cron_job.py) through the run's catalog path: scheduled, converged, rescheduled when the
schedule changes, unscheduled by rollback."""

from __future__ import annotations

import pytest

from pgconverge.model import Action

pytestmark = pytest.mark.integration

PHASES = """
version: 1
phases:
  - id: upkeep
    title: "Nightly upkeep"
    cron_jobs:
      - name: analyze-leads
        schedule: "15 3 * * *"
        command: ANALYZE leads;
"""


def test_schedule_reschedule_and_unschedule(cron_kit):
    loaded = cron_kit.spec(PHASES)
    steps = cron_kit.plan(loaded, "upkeep").steps
    assert [(s.action, s.target) for s in steps] == [(Action.SCHEDULE, "cron job")]
    cron_kit.apply(loaded, steps)
    assert cron_kit.plan(loaded, "upkeep").steps == ()
    changed = cron_kit.spec(PHASES.replace("15 3 * * *", "45 2 * * *"))
    again = cron_kit.plan(changed, "upkeep").steps
    assert len(again) == 1 and "changed schedule" in again[0].why
    cron_kit.apply(changed, again)
    assert cron_kit.scalar("SELECT schedule FROM cron.job WHERE jobname = 'analyze-leads'") == "45 2 * * *"
    rollback = cron_kit.rollback(changed, "upkeep").steps
    cron_kit.apply(changed, rollback)
    assert cron_kit.scalar("SELECT count(*) FROM cron.job WHERE jobname = 'analyze-leads'") == 0
