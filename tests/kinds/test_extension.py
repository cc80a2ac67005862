"""Extensions (kinds/extension.py) through the run's catalog path: created and marked, converged, rolled back only
when ours; one placed elsewhere by a superuser stays (a note, not a stop)."""

from __future__ import annotations

import pytest

from pgconverge.model import Action

pytestmark = pytest.mark.integration

PHASES = """
version: 1
phases:
  - id: search
    title: "Trigram search"
    extensions:
      - name: pg_trgm
"""


def test_create_converged_rollback(kit):
    loaded = kit.spec(PHASES)
    steps = kit.plan(loaded, "search").steps
    assert [(s.action, s.target) for s in steps] == [(Action.CREATE, "extension")]
    kit.apply(loaded, steps)
    assert kit.plan(loaded, "search").steps == ()
    rollback = kit.rollback(loaded, "search").steps
    assert [(s.action, s.target) for s in rollback] == [(Action.DROP, "extension")]
    kit.apply(loaded, rollback)
    assert kit.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'") == 0


@pytest.mark.needs_hypopg
def test_one_the_login_may_not_move_is_a_note(kit):
    declared = kit.spec("""
version: 1
phases:
  - id: stats
    title: "Statistics"
    extensions:
      - name: hypopg
        schema: public
""")
    result = kit.plan(declared, "stats")
    assert result.steps == ()  # hypopg sits in `extensions`, a superuser's: not this login's to move
    assert any("a superuser runs: ALTER EXTENSION hypopg SET SCHEMA public" in u for u in result.unrepairable)
