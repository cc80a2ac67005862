"""Drift is the catalog's real state: hand edits are detected by verify (exit != 0, object named) and repaired by
the next converge; what already matches is adopted; what is not ours is left alone; owners and grants survive."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import run_pyinfra
from tests.integration.test_converge import ok

pytestmark = pytest.mark.integration


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def scalar(url: str, query: str):
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def detected_then_repaired(url: str, *names: str) -> str:
    """verify fails naming each object; a converge repairs; verify passes again. Returns verify's output."""
    failed = run_pyinfra(url, "deploys/verify.py", "-y")
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output[-3000:]
    for name in names:
        assert "drift [" in output and name in output.split("summary:")[0], output[-3000:]
    assert "Traceback" not in output
    ok(run_pyinfra(url, "deploys/all.py", "-y"))
    ok(run_pyinfra(url, "deploys/verify.py", "-y"))
    return output


def test_hand_edits_are_detected_by_verify_and_repaired(servers, cron_db):
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    comment = scalar(cron_db, "SELECT obj_description('mv_hot_leads'::regclass, 'pg_class')")
    function_comment = scalar(cron_db, "SELECT obj_description('get_unified_inbox'::regproc, 'pg_proc')")
    execute(cron_db,
            # an MV recreated by hand with another query, same name and comment
            "DROP MATERIALIZED VIEW mv_hot_leads CASCADE",
            "CREATE MATERIALIZED VIEW mv_hot_leads AS SELECT id, user_id, name, status, p_score, last_activity_at"
            " FROM leads WHERE p_score >= 99",
            "CREATE UNIQUE INDEX mv_hot_leads_key ON mv_hot_leads (user_id, p_score, id)",
            f"COMMENT ON MATERIALIZED VIEW mv_hot_leads IS '{comment}'",
            "REVOKE ALL ON mv_hot_leads FROM anon, authenticated",
            # a function body replaced; its comment survives
            "CREATE OR REPLACE FUNCTION get_unified_inbox(p_user_id uuid, p_limit int DEFAULT 50)"
            " RETURNS TABLE (id bigint, lead_id uuid, channel text, subject text, created_at timestamptz)"
            " LANGUAGE sql STABLE SET search_path = public, pg_temp"
            " AS $$ SELECT NULL::bigint, NULL::uuid, NULL::text, NULL::text, NULL::timestamptz WHERE false $$",
            # a cron job switched off; a function switched to SECURITY DEFINER
            "ALTER FUNCTION calculate_lead_event_stats SECURITY DEFINER")
    execute(servers.superuser_url(servers.database),
            "UPDATE cron.job SET active = false WHERE jobname = 'refresh-hot-leads'")
    assert scalar(cron_db, "SELECT obj_description('get_unified_inbox'::regproc, 'pg_proc')") == function_comment
    output = detected_then_repaired(cron_db, "materialized view mv_hot_leads", "function get_unified_inbox",
                                    "cron job refresh-hot-leads", "function calculate_lead_event_stats")
    assert "the live query differs from the declared one" in output
    assert "inactive (active = false)" in output
    # every phase's gates ran although phase 2's security gate failed first
    assert "gate functions_pinned_and_invoker (security) FAILED" in output
    assert "gate inbox_fn_p95 (latency, query unified_inbox_fn)" in output
    assert scalar(cron_db, "SELECT min(p_score) FROM mv_hot_leads") < 99
    assert scalar(cron_db, "SELECT active FROM cron.job WHERE jobname = 'refresh-hot-leads'") is True
    assert scalar(cron_db, "SELECT prosecdef FROM pg_proc WHERE proname = 'calculate_lead_event_stats'") is False
    assert scalar(cron_db, "SELECT count(*) FROM get_unified_inbox((SELECT user_id FROM leads LIMIT 1))") > 0


def test_an_index_made_by_hand_from_the_runbook_is_adopted_not_rebuilt(cron_db):
    execute(cron_db, "CREATE INDEX idx_leads_user_status ON leads (user_id, status)")
    oid = scalar(cron_db, "SELECT 'idx_leads_user_status'::regclass::oid")
    dry = ok(run_pyinfra(cron_db, "deploys/phase1.py", "--dry"))
    assert "index idx_leads_user_status: adopt: the live definition equals the declared one, no build" in dry
    ok(run_pyinfra(cron_db, "deploys/phase1.py", "-y"))
    assert scalar(cron_db, "SELECT 'idx_leads_user_status'::regclass::oid") == oid
    assert scalar(cron_db, "SELECT obj_description('idx_leads_user_status'::regclass, 'pg_class')").startswith(
        "pgconverge:phase1:")


def test_a_duplicate_under_another_name_is_named_and_not_built(cron_db):
    execute(cron_db, "CREATE INDEX crm_notes_by_lead ON crm_notes (lead_id, created_at DESC)")
    out = ok(run_pyinfra(cron_db, "deploys/phase1.py", "-y"))
    assert ("index public.idx_crm_notes_lead_created not built: public.crm_notes_by_lead already has exactly this"
            " definition") in out
    assert scalar(cron_db, "SELECT to_regclass('idx_crm_notes_lead_created')") is None


def test_a_hand_made_overload_survives(cron_db, project):
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    execute(cron_db, "CREATE FUNCTION get_unified_inbox(p_user_id uuid, p_limit int, p_channel text)"
                     " RETURNS bigint LANGUAGE sql STABLE SET search_path = public AS $$ SELECT 1::bigint $$")
    body = project / "sql" / "phase3" / "get_unified_inbox.sql"
    body.write_text(body.read_text().replace("-- ", "-- changed: ", 1) + "\n")
    out = ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=project / "phases.yml"))
    assert "other overloads not ours, left alone: get_unified_inbox(p_user_id uuid, p_limit integer, p_channel text)" \
        in out
    assert scalar(cron_db, "SELECT count(*) FROM pg_proc WHERE proname = 'get_unified_inbox'") == 2
    assert scalar(cron_db, "SELECT get_unified_inbox(NULL::uuid, 1, 'x')") == 1


def test_owner_and_an_undeclared_grant_survive_an_mv_swap_run_by_a_superuser(servers, cron_db, project):
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    execute(servers.superuser_url(), "DROP ROLE IF EXISTS reporting", "CREATE ROLE reporting")
    execute(cron_db, "GRANT SELECT ON mv_hot_leads TO reporting")
    view_sql = project / "sql" / "phase2" / "mv_hot_leads.sql"
    view_sql.write_text(view_sql.read_text().replace("p_score >= 70", "p_score >= 75"))
    superuser = servers.superuser_url(servers.database)
    out = ok(run_pyinfra(superuser, "deploys/phase2.py", "-y", phases=project / "phases.yml"))
    assert "swap the new view in with the old one's owner and privileges" in out
    assert scalar(cron_db, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'mv_hot_leads'") == \
        "salesflow"
    assert scalar(cron_db, "SELECT has_table_privilege('reporting', 'mv_hot_leads', 'SELECT')") is True
    assert scalar(cron_db, "SELECT has_table_privilege('anon', 'mv_hot_leads', 'SELECT')") is False
    execute(cron_db, "SELECT refresh_hot_leads_mv()")  # the app role may still refresh it (it owns it)
    execute(superuser, "REVOKE ALL ON mv_hot_leads FROM reporting")
    execute(servers.superuser_url(), "DROP ROLE reporting")


LEADS_INDEXES = 3  # phase 1 declares three indexes on leads


def test_a_table_swapped_blue_green_under_its_index_is_drift_and_repaired(fresh_db):
    """ALTER TABLE leads RENAME TO leads_old and a new leads filled from it: the managed index stayed on leads_old."""
    ok(run_pyinfra(fresh_db, "deploys/phase1.py", "-y"))
    execute(fresh_db, "ALTER TABLE leads RENAME TO leads_old",
            "CREATE TABLE leads (LIKE leads_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
            "INSERT INTO leads SELECT * FROM leads_old", "ANALYZE leads")
    failed = run_pyinfra(fresh_db, "deploys/verify.py", "-y")
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "drift [phase1] index idx_leads_user_hot: sits on table leads_old, declared on leads" in output, \
        output[-3000:]
    out = ok(run_pyinfra(fresh_db, "deploys/phase1.py", "-y"))
    assert "drop the one left on leads_old concurrently" in out
    query = "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = '{}'" \
            " AND obj_description(i.indexrelid, 'pg_class') LIKE 'pgconverge:%'"
    assert scalar(fresh_db, query.format("leads_old")) == 0
    assert scalar(fresh_db, query.format("leads")) == LEADS_INDEXES
    assert "phase1: 0 steps to run (converged)" in ok(run_pyinfra(fresh_db, "deploys/phase1.py", "--dry"))


def test_the_applications_duplicates_are_a_note_and_state_absent_drops_one_in_one_converge(cron_db, project):
    execute(cron_db, "CREATE INDEX app_notes_lead_a ON crm_notes (lead_id)",
            "CREATE INDEX app_notes_lead_b ON crm_notes (lead_id)")
    out = ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    assert "duplicate indexes public.app_notes_lead_a = public.app_notes_lead_b (not managed: note)" in out
    phases = project / "phases.yml"
    phases.write_text(phases.read_text().replace(
        "    indexes:\n", "    indexes:\n      - name: app_notes_lead_b\n        table: crm_notes\n"
        "        columns: [lead_id]\n        state: absent\n", 1))
    out = ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    assert "declared absent: not created by pgconverge, named in phases.yml" in out
    assert scalar(cron_db, "SELECT to_regclass('app_notes_lead_b')") is None
    assert scalar(cron_db, "SELECT to_regclass('app_notes_lead_a')") == "app_notes_lead_a"


def test_views_on_a_managed_mv_survive_its_swap_and_what_cannot_stops_before_anything(servers, cron_db, project):
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    execute(cron_db,
            "CREATE VIEW hot_board WITH (security_invoker = true, security_barrier = true) AS"
            " SELECT id, name, p_score FROM mv_hot_leads WHERE p_score >= 80",
            "CREATE VIEW hot_board_top AS SELECT * FROM hot_board ORDER BY p_score DESC LIMIT 10",
            "GRANT SELECT ON hot_board TO authenticated", "COMMENT ON VIEW hot_board IS 'the sales floor screen'")
    view_sql = project / "sql" / "phase2" / "mv_hot_leads.sql"
    phases = project / "phases.yml"
    view_sql.write_text(view_sql.read_text().replace("p_score >= 70", "p_score >= 75"))
    out = ok(run_pyinfra(cron_db, "deploys/phase2.py", "-y", phases=phases))
    assert "re-points public.hot_board" in out
    assert scalar(cron_db, "SELECT count(*) FROM hot_board_top") >= 0
    assert scalar(cron_db, "SELECT reloptions::text FROM pg_class WHERE relname = 'hot_board'") == \
        "{security_invoker=true,security_barrier=true}"
    assert scalar(cron_db, "SELECT has_table_privilege('authenticated', 'hot_board', 'SELECT')") is True
    assert scalar(cron_db, "SELECT obj_description('hot_board'::regclass, 'pg_class')") == "the sales floor screen"
    assert scalar(cron_db, "SELECT count(*) FROM pg_class WHERE relname LIKE 'mv_hot_leads_pgc%'") == 0
    assert scalar(cron_db, "SELECT pg_get_viewdef('mv_hot_leads')").count("75") == 1

    # a swap that fails inside its transaction (the view needs a column the new query drops) leaves nothing behind
    view_sql.write_text(view_sql.read_text().replace("name, status", "status"))
    failed = run_pyinfra(cron_db, "deploys/phase2.py", "-y", phases=phases)
    assert failed.returncode != 0 and "Traceback" not in failed.stdout + failed.stderr
    assert "what was built for it was removed" in failed.stdout + failed.stderr
    assert scalar(cron_db, "SELECT count(*) FROM pg_class WHERE relname LIKE 'mv_hot_leads_pgc%'") == 0
    assert scalar(cron_db, "SELECT count(*) FROM hot_board") >= 0

    # another materialized view on it cannot be carried over: the plan stops before building anything
    view_sql.write_text(view_sql.read_text().replace("SELECT id, user_id, status", "SELECT id, user_id, name, status")
                        .replace("p_score >= 75", "p_score >= 72"))
    execute(cron_db, "CREATE MATERIALIZED VIEW hot_rollup AS SELECT user_id, count(*) FROM mv_hot_leads GROUP BY 1")
    failed = run_pyinfra(cron_db, "deploys/phase2.py", "-y", phases=phases)
    combined = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Traceback" not in combined
    assert "materialized view public.hot_rollup" in combined and "nothing was changed" in combined
    assert scalar(cron_db, "SELECT count(*) FROM pg_class WHERE relname LIKE 'mv_hot_leads_pgc%'") == 0
    assert scalar(cron_db, "SELECT pg_get_viewdef('mv_hot_leads')").count("75") == 1

    # rollback would drop the MV under the application's views: it says so and changes nothing
    failed = run_pyinfra(cron_db, "deploys/rollback.py", "--data", "phase=phase2", "-y", phases=phases)
    combined = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "public.hot_board" in combined and "nothing was changed" in combined
    assert scalar(cron_db, "SELECT count(*) FROM pg_matviews WHERE matviewname = 'mv_hot_leads'") == 1
