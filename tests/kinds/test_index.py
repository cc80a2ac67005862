"""Indexes (kinds/index.py) through the run's catalog path: create concurrently, adopt, drift rebuilt beside,
INVALID rebuilt, rollback of ours only — on a plain and on a partitioned table."""

from __future__ import annotations

import psycopg
import pytest

from pgconverge.errors import UserError
from pgconverge.model import Action, Lock

pytestmark = pytest.mark.integration

PHASES = """
version: 1
phases:
  - id: lookups
    title: "Leads by owner and status"
    indexes:
      - name: idx_leads_owner_status
        table: leads
        columns: [user_id, status]
"""


def actions(steps) -> list[tuple[Action, str]]:
    return [(s.action, s.target) for s in steps]


def test_create_adopt_and_converged(kit):
    loaded = kit.spec(PHASES)
    steps = kit.plan(loaded, "lookups").steps
    assert actions(steps) == [(Action.BUILD_CONCURRENTLY, "index"), (Action.MARK, "index")]
    assert steps[0].builds == '"public"."idx_leads_owner_status"' and steps[0].lock == Lock.SHARE_UPDATE_EXCLUSIVE
    kit.execute("CREATE INDEX idx_leads_owner_status ON leads (user_id, status)")  # by hand, from the runbook
    adopt = kit.plan(loaded, "lookups").steps
    assert actions(adopt) == [(Action.MARK, "index")] and adopt[0].why.startswith("adopt")
    kit.apply(loaded, adopt)
    assert kit.plan(loaded, "lookups").steps == ()


def test_drift_is_rebuilt_beside_and_invalid_is_rebuilt(kit):
    loaded = kit.spec(PHASES)
    kit.apply(loaded, kit.plan(loaded, "lookups").steps)
    kit.execute("DROP INDEX idx_leads_owner_status", "CREATE INDEX idx_leads_owner_status ON leads (status)")
    steps = kit.plan(loaded, "lookups").steps
    assert [s.action for s in steps] == [Action.BUILD_CONCURRENTLY, Action.MARK, Action.SWAP,
                                         Action.DROP_CONCURRENTLY]
    assert "definition differs" in steps[0].why
    kit.apply(loaded, steps)
    assert kit.plan(loaded, "lookups").steps == ()
    # a failed concurrent build leaves an INVALID index: a unique one on a column with duplicates
    kit.execute("DROP INDEX idx_leads_owner_status")
    with pytest.raises(psycopg.errors.UniqueViolation):
        kit.execute("CREATE UNIQUE INDEX CONCURRENTLY idx_leads_owner_status ON leads (status)")
    invalid = kit.plan(loaded, "lookups").steps
    assert [s.action for s in invalid][:2] == [Action.DROP_CONCURRENTLY, Action.BUILD_CONCURRENTLY]
    assert "INVALID" in invalid[0].why


def test_rollback_drops_ours_and_leaves_the_applications(kit):
    loaded = kit.spec(PHASES)
    kit.execute("CREATE INDEX app_leads_status ON leads (status)")
    kit.apply(loaded, kit.plan(loaded, "lookups").steps)
    rollback = kit.rollback(loaded, "lookups").steps
    assert actions(rollback) == [(Action.DROP_CONCURRENTLY, "index")]
    kit.apply(loaded, rollback)
    assert kit.scalar("SELECT to_regclass('idx_leads_owner_status') IS NULL"
                      " AND to_regclass('app_leads_status') IS NOT NULL") is True


def test_on_a_partitioned_table_one_index_per_leaf_attached(kit):
    kit.execute("CREATE TABLE visits (site int, at date) PARTITION BY RANGE (at)",
                "CREATE TABLE visits_a PARTITION OF visits FOR VALUES FROM ('2026-01-01') TO ('2026-07-01')",
                "CREATE TABLE visits_b PARTITION OF visits FOR VALUES FROM ('2026-07-01') TO ('2027-01-01')")
    loaded = kit.spec(PHASES.replace("idx_leads_owner_status", "visits_site_at").replace("table: leads",
                                                                                         "table: visits")
                      .replace("[user_id, status]", "[site, at]"))
    steps = kit.plan(loaded, "lookups").steps
    assert [s.action for s in steps] == [Action.CREATE, Action.BUILD_CONCURRENTLY, Action.ATTACH,
                                         Action.BUILD_CONCURRENTLY, Action.ATTACH, Action.MARK]
    assert steps[0].lock == Lock.SHARE and "ON ONLY" in steps[0].statements[0]
    kit.apply(loaded, steps)
    assert kit.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'visits_site_at'::regclass") is True
    assert kit.plan(loaded, "lookups").steps == ()
    rollback = kit.rollback(loaded, "lookups").steps
    assert [(s.action, s.lock) for s in rollback] == [(Action.DROP, Lock.ACCESS_EXCLUSIVE)]
    kit.apply(loaded, rollback)
    assert kit.scalar("SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'visits%'") == 0


def test_an_existing_index_whose_declaration_the_server_cannot_render_is_a_note_and_a_new_one_a_problem(kit):
    loaded = kit.spec(PHASES)
    kit.apply(loaded, kit.plan(loaded, "lookups").steps)
    # the declaration now names a column the table lacks: the live index is compared by its marker, and says why
    broken = kit.spec(PHASES.replace("[user_id, status]", "[user_id, no_such_column]"))
    notes = kit.plan(broken, "lookups").notes
    assert any(n.startswith("index public.idx_leads_owner_status: compared by its marker only — the server could not"
                            ' render the declared definition here (column "no_such_column" does not exist')
               for n in notes), notes
    assert not any("compared by its marker" in n for n in kit.plan(loaded, "lookups").notes)
    # still to be built, the same mistake stops the plan before anything runs
    kit.apply(loaded, kit.rollback(loaded, "lookups").steps)
    with pytest.raises(UserError, match=r"index idx_leads_owner_status on leads: column \"no_such_column\" does not"
                                         r" exist — fix it in phases.yml \(nothing was changed\)"):
        kit.plan(broken, "lookups")
