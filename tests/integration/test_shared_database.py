"""One database, several hands: two repositories (projects) declaring objects on the same tables, a superuser's
extension placed elsewhere than declared, a hand-made overload next to a managed function."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_pyinfra
from tests.integration.test_converge import ok
from tests.integration.test_drift import execute, scalar

pytestmark = pytest.mark.integration


def project_file(folder: Path, project: str, phase: str, indexes: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "phases.yml"
    path.write_text(f"""
version: 1
settings:
  project: {project}
phases:
  - id: {phase}
    title: "{project}'s indexes"
    indexes:
{indexes}
""")
    return path


def deploy(url: str, phases: Path, phase: str, *args: str):
    return run_pyinfra(url, "deploys/phase.py", "--data", f"phase={phase}", *args, phases=phases)


def test_two_projects_on_one_database_never_touch_each_others_objects(fresh_db, tmp_path):
    search = project_file(tmp_path / "search", "search", "lookups", """
      - name: idx_leads_owner
        table: leads
        columns: [user_id]
""")
    reports = project_file(tmp_path / "reports", "reports", "rollups", """
      - name: idx_leads_owner
        table: leads
        columns: [status]
      - name: idx_leads_status_created
        table: leads
        columns: [status, created_at]
""")
    ok(deploy(fresh_db, search, "lookups", "-y"))
    oid = scalar(fresh_db, "SELECT 'idx_leads_owner'::regclass::oid")
    assert scalar(fresh_db, "SELECT obj_description('idx_leads_owner'::regclass)").startswith("pgconverge:search/")

    clash = deploy(fresh_db, reports, "rollups", "-y")
    combined = clash.stdout + clash.stderr
    assert clash.returncode != 0 and "Traceback" not in combined
    assert "index public.idx_leads_owner belongs to project 'search'" in combined
    assert "(project 'reports')" in combined and "nothing was changed" in combined
    assert scalar(fresh_db, "SELECT 'idx_leads_owner'::regclass::oid") == oid  # not rebuilt
    assert scalar(fresh_db, "SELECT to_regclass('idx_leads_status_created')") is None  # the phase did not start
    failed = run_pyinfra(fresh_db, "deploys/verify.py", "-y", phases=reports)
    assert failed.returncode != 0 and "belongs to project 'search'" in failed.stdout + failed.stderr

    # reports renames its index: both projects converge, each sees only its own objects
    reports.write_text(reports.read_text().replace("name: idx_leads_owner", "name: idx_leads_by_status"))
    ok(deploy(fresh_db, reports, "rollups", "-y"))
    again = ok(deploy(fresh_db, search, "lookups", "-y"))
    assert "idx_leads_by_status" not in again and "idx_leads_status_created" not in again  # no undeclared notes
    ok(run_pyinfra(fresh_db, "deploys/rollback.py", "--data", "phase=lookups", "-y", phases=search))
    assert scalar(fresh_db, "SELECT to_regclass('idx_leads_owner')") is None
    assert scalar(fresh_db, "SELECT to_regclass('idx_leads_by_status') IS NOT NULL"
                            " AND to_regclass('idx_leads_status_created') IS NOT NULL") is True


def test_markers_written_before_projects_belong_to_the_default_project(fresh_db, tmp_path):
    legacy = project_file(tmp_path / "legacy", "x", "lookups", """
      - name: idx_leads_owner
        table: leads
        columns: [user_id]
""")
    legacy.write_text(legacy.read_text().replace("settings:\n  project: x\n", ""))
    ok(deploy(fresh_db, legacy, "lookups", "-y"))
    assert scalar(fresh_db, "SELECT obj_description('idx_leads_owner'::regclass)").startswith("pgconverge:lookups:")
    named = project_file(tmp_path / "named", "crm", "lookups", """
      - name: idx_leads_owner
        table: leads
        columns: [user_id]
""")
    clash = deploy(fresh_db, named, "lookups", "-y")
    assert clash.returncode != 0 and "belongs to project 'default'" in clash.stdout + clash.stderr


def test_an_extension_a_superuser_placed_elsewhere_is_a_note_not_a_stop(servers, fresh_db, tmp_path):
    database = fresh_db.rsplit("/", 1)[1]
    execute(servers.superuser_url(database), "ALTER EXTENSION pg_stat_statements SET SCHEMA public")
    phases = tmp_path / "phases.yml"
    phases.write_text("""
version: 1
phases:
  - id: base
    title: "statistics"
    extensions:
      - name: pg_stat_statements
        schema: extensions
    indexes:
      - name: idx_leads_owner
        table: leads
        columns: [user_id]
""")
    out = ok(deploy(fresh_db, phases, "base", "-y"))
    assert "a superuser runs: ALTER EXTENSION pg_stat_statements SET SCHEMA extensions" in out
    assert scalar(fresh_db, "SELECT to_regclass('idx_leads_owner') IS NOT NULL") is True
    failed = run_pyinfra(fresh_db, "deploys/verify.py", "-y", phases=phases)
    combined = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "may not move it" in combined and "Traceback" not in combined


def test_rollback_next_to_a_hand_made_overload_drops_only_the_managed_signature(cron_db):
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    execute(cron_db, "CREATE FUNCTION get_unified_inbox(p_user_id uuid, p_limit int, p_channel text)"
                     " RETURNS bigint LANGUAGE sql STABLE SET search_path = public AS $$ SELECT 1::bigint $$")
    out = ok(run_pyinfra(cron_db, "deploys/rollback.py", "--data", "phase=phase3", "-y"))
    assert "DROP FUNCTION IF EXISTS" in out or "rollback" in out
    assert scalar(cron_db, "SELECT string_agg(pg_get_function_identity_arguments(oid), '; ')"
                           " FROM pg_proc WHERE proname = 'get_unified_inbox'") == \
        "p_user_id uuid, p_limit integer, p_channel text"
    assert scalar(cron_db, "SELECT count(*) FROM pg_proc WHERE proname = 'calculate_lead_event_stats'") == 0
