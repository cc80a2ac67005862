"""Materialized views (kinds/matview.py) through the run's catalog path: build with key index and privileges in
one transaction, adopt, a changed query built beside and swapped (views on it re-pointed), rollback."""

from __future__ import annotations

import pytest

from pgconverge.model import Action

pytestmark = pytest.mark.integration

PHASES = """
version: 1
phases:
  - id: rollups
    title: "Leads per owner"
    materialized_views:
      - name: mv_owner_leads
        sql: rollups/mv_owner_leads.sql
        unique_key: [user_id]
    revokes:
      - privileges: [ALL]
        on: mv_owner_leads
        from: [anon, authenticated]
"""
QUERY = "SELECT user_id, count(*) AS leads FROM leads GROUP BY user_id"


def test_build_adopt_swap_and_rollback(kit):
    loaded = kit.spec(PHASES, {"rollups/mv_owner_leads.sql": QUERY})
    steps = kit.plan(loaded, "rollups").steps
    assert [(s.action, s.target) for s in steps] == [(Action.BUILD, "materialized view")]
    assert any(s.startswith('REVOKE ALL ON TABLE "public"."mv_owner_leads" FROM "anon"') for s in steps[0].statements)
    kit.apply(loaded, steps)
    assert kit.plan(loaded, "rollups").steps == ()

    kit.execute("CREATE VIEW owner_board AS SELECT * FROM mv_owner_leads WHERE leads > 1")
    changed = kit.spec(PHASES, {"rollups/mv_owner_leads.sql": QUERY.replace("count(*)", "count(id)")})
    swap = kit.plan(changed, "rollups").steps
    assert [s.action for s in swap] == [Action.BUILD, Action.SWAP]
    assert any(s.startswith('CREATE OR REPLACE VIEW "public"."owner_board"') for s in swap[1].statements)
    kit.apply(changed, swap)
    assert kit.scalar("SELECT count(*) >= 0 FROM owner_board") is True
    assert kit.plan(changed, "rollups").steps == ()

    kit.execute("DROP VIEW owner_board")
    rollback = kit.rollback(changed, "rollups").steps
    assert [(s.action, s.target) for s in rollback] == [(Action.DROP, "materialized view")]
    kit.apply(changed, rollback)
    assert kit.scalar("SELECT to_regclass('mv_owner_leads')") is None


def test_a_hand_made_view_with_the_declared_query_is_adopted(kit):
    loaded = kit.spec(PHASES, {"rollups/mv_owner_leads.sql": QUERY})
    kit.execute(f"CREATE MATERIALIZED VIEW mv_owner_leads AS {QUERY}")
    steps = kit.plan(loaded, "rollups").steps
    assert [s.action for s in steps if s.target == "materialized view"] == [Action.MARK]
    assert steps[0].why.startswith("adopt")


def test_drift_decided_by_the_marker_because_the_server_cannot_render_says_why(kit):
    loaded = kit.spec(PHASES, {"rollups/mv_owner_leads.sql": QUERY})
    kit.apply(loaded, kit.plan(loaded, "rollups").steps)
    unrenderable = kit.spec(PHASES, {"rollups/mv_owner_leads.sql": QUERY.replace("count(*)", "count(no_such_column)")})
    notes = kit.plan(unrenderable, "rollups").notes
    assert any(n.startswith("materialized view public.mv_owner_leads: compared by its marker only — the server could"
                            " not render the declared definition here (column \"no_such_column\" does not exist")
               for n in notes), notes
    assert not any("compared by its marker" in n for n in kit.plan(loaded, "rollups").notes)
