"""Plain views (kinds/view.py): create with privileges, adopt, drift of query and options, replace in place,
rollback, absent — on a real server, as the table owner."""

from __future__ import annotations

import psycopg
import pytest

from pgconverge.model import Action

pytestmark = pytest.mark.integration

PHASES = """
version: 1
phases:
  - id: boards
    title: "A board of the hottest leads"
    views:
      - name: hot_board
        sql: boards/hot_board.sql
        security_invoker: true
    grants:
      - privileges: [SELECT]
        on: hot_board
        to: [authenticated]
"""
QUERY = "SELECT id, name, p_score FROM leads WHERE p_score >= 80"


def test_a_view_is_created_with_its_grant_then_converged(kit):
    loaded = kit.spec(PHASES, {"boards/hot_board.sql": QUERY})
    steps = kit.plan(loaded, "boards").steps
    assert [(s.action, s.object) for s in steps] == [(Action.CREATE, "view hot_board")]
    assert steps[0].transactional and steps[0].statements[0].startswith(
        'CREATE VIEW "public"."hot_board" WITH ("security_invoker" = true) AS SELECT')
    assert any(s.startswith('GRANT SELECT ON TABLE "public"."hot_board" TO "authenticated"')
               for s in steps[0].statements)
    kit.apply(loaded, steps)
    assert kit.scalar("SELECT has_table_privilege('authenticated', 'hot_board', 'SELECT')") is True
    assert kit.scalar("SELECT reloptions::text FROM pg_class WHERE relname = 'hot_board'") == "{security_invoker=true}"
    assert kit.plan(loaded, "boards").steps == ()


def test_a_hand_made_view_equal_to_the_declared_one_is_adopted(kit):
    loaded = kit.spec(PHASES, {"boards/hot_board.sql": QUERY})
    kit.execute(f"CREATE VIEW hot_board WITH (security_invoker = true) AS {QUERY}",
                "GRANT SELECT ON hot_board TO authenticated")
    steps = kit.plan(loaded, "boards").steps
    assert [(s.action, s.why.split(":")[0]) for s in steps] == [(Action.MARK, "adopt")]
    kit.apply(loaded, steps)
    assert kit.plan(loaded, "boards").steps == ()


def test_drift_of_query_or_options_is_replaced_in_place_keeping_grants_and_dependents(kit):
    loaded = kit.spec(PHASES, {"boards/hot_board.sql": QUERY})
    kit.apply(loaded, kit.plan(loaded, "boards").steps)
    oid = kit.scalar("SELECT 'hot_board'::regclass::oid")
    kit.execute("CREATE VIEW hot_board_top AS SELECT * FROM hot_board LIMIT 5",
                "CREATE OR REPLACE VIEW hot_board AS SELECT id, name, p_score FROM leads WHERE p_score >= 10")
    steps = kit.plan(loaded, "boards").steps
    assert [s.action for s in steps] == [Action.ALTER]
    assert "live query and options differ" in steps[0].why
    assert steps[0].statements[0].startswith('CREATE OR REPLACE VIEW "public"."hot_board" WITH')
    kit.apply(loaded, steps)
    assert kit.scalar("SELECT 'hot_board'::regclass::oid") == oid  # same view: grants and dependents kept
    assert kit.scalar("SELECT has_table_privilege('authenticated', 'hot_board', 'SELECT')") is True
    assert kit.scalar("SELECT count(*) >= 0 FROM hot_board_top") is True
    assert kit.plan(loaded, "boards").steps == ()


def test_rollback_drops_only_a_managed_view_and_absent_drops_a_named_one(kit):
    loaded = kit.spec(PHASES, {"boards/hot_board.sql": QUERY})
    kit.execute("CREATE VIEW not_ours AS SELECT 1 AS one")
    assert kit.rollback(loaded, "boards").steps == ()  # nothing of ours yet
    kit.apply(loaded, kit.plan(loaded, "boards").steps)
    rollback = kit.rollback(loaded, "boards").steps
    assert [(s.action, s.object) for s in rollback] == [(Action.DROP, "view hot_board")]
    kit.apply(loaded, rollback)
    assert kit.scalar("SELECT to_regclass('hot_board')") is None
    absent = kit.spec(PHASES.replace("        security_invoker: true\n", "        state: absent\n")
                      .replace("name: hot_board\n", "name: not_ours\n"), {"boards/hot_board.sql": QUERY})
    steps = kit.plan(absent, "boards").steps
    assert [s.why for s in steps if s.object == "view not_ours"] == [
        "declared absent: not created by pgconverge, named in phases.yml"]


def test_a_declared_view_on_a_managed_mv_follows_its_swap_and_its_rollback(cron_db, project):
    from tests.conftest import run_pyinfra
    from tests.integration.test_converge import ok
    from tests.integration.test_drift import scalar

    phases = project / "phases.yml"
    (project / "sql" / "phase2" / "hot_board.sql").write_text("SELECT id, name, p_score FROM mv_hot_leads")
    phases.write_text(phases.read_text().replace(
        "    materialized_views:\n      - name: mv_rlhf_sessions_daily\n",
        "    views:\n      - name: hot_board\n        sql: phase2/hot_board.sql\n        security_barrier: true\n"
        "    materialized_views:\n      - name: mv_rlhf_sessions_daily\n", 1))
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    assert scalar(cron_db, "SELECT obj_description('hot_board'::regclass, 'pg_class')").startswith("pgconverge:phase2:")
    view_sql = project / "sql" / "phase2" / "mv_hot_leads.sql"
    view_sql.write_text(view_sql.read_text().replace("p_score >= 70", "p_score >= 75"))
    out = ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    assert "re-points public.hot_board" in out
    assert "phase2: 0 steps to run (converged)" in ok(run_pyinfra(cron_db, "deploys/phase2.py", "--dry", phases=phases))
    ok(run_pyinfra(cron_db, "deploys/rollback.py", "--data", "phase=phase2", "-y", phases=phases))
    assert scalar(cron_db, "SELECT to_regclass('hot_board') IS NULL AND to_regclass('mv_hot_leads') IS NULL") is True


def test_a_new_materialized_view_on_a_new_view_of_its_phase_converges_and_rolls_back(kit):
    """The MV reads the view: created after it, dropped before it (the house issue's ordering bug)."""
    loaded = kit.spec(PHASES.replace("    grants:", "    materialized_views:\n      - name: hot_board_daily\n"
                                     "        sql: boards/hot_board_daily.sql\n        unique_key: [p_score]\n"
                                     "    grants:"),
                      {"boards/hot_board.sql": QUERY,
                       "boards/hot_board_daily.sql": "SELECT p_score, count(*) AS leads FROM hot_board GROUP BY p_score"})
    steps = kit.plan(loaded, "boards").steps
    order = [s.object for s in steps]
    assert order.index("view hot_board") < order.index("materialized view hot_board_daily"), order
    kit.apply(loaded, steps)
    assert kit.scalar("SELECT count(*) FROM hot_board_daily") >= 1
    assert kit.plan(loaded, "boards").steps == ()
    kit.apply(loaded, kit.rollback(loaded, "boards").steps)
    assert kit.scalar("SELECT to_regclass('hot_board')") is None
    assert kit.scalar("SELECT to_regclass('hot_board_daily')") is None


def test_a_view_owned_by_another_role_is_given_back_to_its_schemas_owner(kit, servers):
    """A developer's role took the view over (the owner is a member of it, as a team role is)."""
    loaded = kit.spec(PHASES, {"boards/hot_board.sql": QUERY})
    kit.apply(loaded, kit.plan(loaded, "boards").steps)
    with psycopg.connect(servers.superuser_url(kit.url.rsplit("/", 1)[1]), autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE board_devs NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute("GRANT board_devs TO salesflow")
        conn.execute("ALTER VIEW hot_board OWNER TO board_devs")
    steps = kit.plan(loaded, "boards").steps
    assert [(s.action, s.why) for s in steps] == [(Action.ALTER, "owned by board_devs, belongs to salesflow")]
    kit.apply(loaded, steps)
    assert kit.scalar("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'hot_board'") == "salesflow"
    assert kit.plan(loaded, "boards").steps == ()
