"""`pgconverge plan`: the PR view of a deploy, from the live catalog, changing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pgconverge import plan as planner
from pgconverge import report, spec
from tests.conftest import REPO, run_pyinfra
from tests.integration.test_converge import catalog_oids, ok

pytestmark = pytest.mark.integration
PGCONVERGE = str(Path(sys.executable).parent / "pgconverge")


def plan_cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PGCONVERGE, "plan", "inventory/lab.py", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": database_url})


def test_plan_after_phase1_lists_exactly_phase2_statements(cron_db):
    ok(run_pyinfra(cron_db, "deploys/phase1.py", "-y"))
    before = catalog_oids(cron_db)
    result = plan_cli(cron_db, "deploys/phase2.py")
    assert result.returncode == 0, result.stderr
    markdown = result.stdout
    assert "#### phase1: 0 statements (converged)" in markdown
    phase2_section = markdown.split("#### phase2: ")[1].split("#### gates")[0]
    loaded = spec.load(REPO / "phases.yml")
    catalog, desired = planner_catalog(cron_db, loaded)
    expected = planner.plan_phase(loaded.phase("phase2"), catalog, loaded.settings.api_roles, desired).steps
    assert phase2_section.startswith(f"{len(expected)} statements")
    for step in expected:
        assert step.sql in phase2_section
    assert "CREATE INDEX" not in phase2_section and "calculate_lead_event_stats" not in markdown
    assert "`matviews_not_readable_by_api_roles` (security, after phase2)" in markdown
    assert catalog_oids(cron_db) == before


def planner_catalog(url: str, loaded):
    from pgconverge import facts
    from pgconverge.execute import connect

    with connect(url) as conn:
        catalog = facts.read(conn)
        return catalog, facts.desired_definitions(conn, loaded, ["phase2"], catalog)


def test_plan_json_has_the_same_steps_with_risk_notes(cron_db):
    result = plan_cli(cron_db, "deploys/phase1.py", "--format", "json")
    document = json.loads(result.stdout)
    steps = document["hosts"][0]["phases"][0]["steps"]
    builds = [s for s in steps if s["sql"].startswith("CREATE INDEX CONCURRENTLY")]
    assert len(builds) == 12
    assert all("builds concurrently" in s["risk"] and "rows" in s["risk"] for s in builds)
    with psycopg.connect(cron_db) as conn:
        events = conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'message_events'::regclass"
                              ).fetchone()[0]
    event_builds = [s for s in builds if '"message_events"' in s["sql"]]
    # the table's real estimate, as the reason beside it says (it said ~0 rows)
    assert event_builds and all(f"table has ~{events:,} rows" in s["risk"] for s in event_builds)
    # in the Markdown, a build and its marker are one row: 12 indexes, 12 rows
    markdown = plan_cli(cron_db, "deploys/phase1.py").stdout
    table = [line for line in markdown.split("#### phase1: ")[1].splitlines() if line.startswith("| ")][1:]
    assert len(table) == 12 and all("mark " not in row for row in table)


def test_plan_names_an_unreachable_database_without_its_password(servers):
    url = "postgresql://salesflow:hunter2-MARKER@127.0.0.1:1/salesflow"
    result = plan_cli(url, "deploys/all.py")
    assert result.returncode == 1
    assert ("**Cannot plan:** cannot connect to host @local (127.0.0.1:1, database salesflow, user sa****):"
            " Connection refused") in result.stdout
    assert "hunter2-MARKER" not in result.stdout + result.stderr


def test_every_generated_statement_passes_squawk(tmp_path):
    generated = tmp_path / "generated.sql"
    generated.write_text(report.every_statement(spec.load(REPO / "phases.yml")))
    text = generated.read_text()
    # the rollback's statements are there for squawk too, each waiver with its reason in report._waivers
    assert text.count("DROP INDEX CONCURRENTLY IF EXISTS") >= 12
    assert "-- squawk-ignore ban-drop-view" in text and "-- squawk-ignore ban-drop-function" in text
    # the shapes a live database adds: per-partition builds and attaches, a view of the app re-pointed in a swap
    assert 'ON ONLY "public"."message_events"' in text and 'ATTACH PARTITION "public"."message_events_p1_' in text
    assert 'CREATE OR REPLACE VIEW "public"."mv_hot_leads_board" WITH ("security_invoker" = \'true\')' in text
    squawk = Path(sys.executable).parent / "squawk"
    result = subprocess.run([str(squawk), str(generated)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Found 0 issues" in result.stdout


def test_snapshots_before_and_after_each_phase_and_their_comparison(cron_db, tmp_path):
    reports = tmp_path / "reports"
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y", "--data", f"reports_dir={reports}"))
    files = sorted(p.name.split("-", 1)[1] for p in (reports / "lab" / "local").glob("*.json"))
    assert files == sorted(f"{when}-phase{n}.json" for when in ("before", "after") for n in (1, 2, 3))
    before = next((reports / "lab" / "local").glob("*-before-phase1.json"))
    after = next((reports / "lab" / "local").glob("*-after-phase3.json"))
    document = json.loads(after.read_text())
    assert {t["table"] for t in document["tables"]} >= {"message_events", "leads"}
    assert [j["jobname"] for j in document["cron_jobs"]] == sorted(
        ["refresh-rlhf-dashboard", "refresh-hot-leads", "refresh-template-performance"])
    password = cron_db.split(":")[2].split("@")[0]
    assert all(password not in p.read_text() for p in reports.rglob("*.json"))
    out = tmp_path / "cmp"
    result = subprocess.run([PGCONVERGE, "report", str(before), str(after), "--output-dir", str(out)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "| message_events |" in (out / "comparison.md").read_text()
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_snapshot_replays_the_workload_and_the_report_has_the_runbook_table(cron_db, tmp_path):
    """make demo's baseline: `snapshot --kpi-runs` times every declared query; the report compares p95s."""
    env = {**os.environ, "DATABASE_URL": cron_db}

    def snapshot(label: str) -> Path:
        result = subprocess.run([PGCONVERGE, "snapshot", "--label", label, "--kpi-runs", "2", "--reports",
                                 str(tmp_path)], capture_output=True, text=True, cwd=REPO, env=env)
        assert result.returncode == 0, result.stderr
        return Path(result.stdout.strip())

    before = snapshot("before")
    assert set(json.loads(before.read_text())["kpi"]) >= {"dashboard_analytics", "hot_leads"}
    assert "hot_leads_mv" not in json.loads(before.read_text())["kpi"]  # needs mv_hot_leads, not there yet
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    after = snapshot("after")
    result = subprocess.run([PGCONVERGE, "report", str(before), str(after), "--output-dir", str(tmp_path / "cmp")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| hot_leads_mv | — |" in text and "| dashboard_analytics | " in text
    assert "(calls in between)" in text  # the slow-query share of the calls made after the baseline


def test_plan_takes_limit_and_the_deploys_data_phase_and_plans_the_reachable_hosts(fresh_db, tmp_path):
    """Two database targets, one unreachable: --limit plans one of them; the phase as the deploy takes it."""
    inventory = tmp_path / "two.py"
    inventory.write_text('db = [("@db/main", {"database_url_env": "MAIN_URL"}),'
                         ' ("@db/gone", {"database_url_env": "GONE_URL"})]\n')
    env = {**os.environ, "MAIN_URL": fresh_db, "GONE_URL": "postgresql://x:y@127.0.0.1:9/none"}
    run = [PGCONVERGE, "plan", str(inventory), "deploys/phase.py", "--data", "phase=phase1"]
    both = subprocess.run(run, cwd=REPO, capture_output=True, text=True, env=env)
    assert both.returncode == 1 and "@db/gone" in both.stdout and "CREATE INDEX CONCURRENTLY" in both.stdout
    one = subprocess.run([*run, "--limit", "@db/ma*"], cwd=REPO, capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stdout + one.stderr
    assert "@db/gone" not in one.stdout and "CREATE INDEX CONCURRENTLY" in one.stdout
    none = subprocess.run([*run, "--limit", "@db/other"], cwd=REPO, capture_output=True, text=True, env=env)
    assert none.returncode != 0 and "--limit @db/other: no database host of" in none.stderr + none.stdout
    assert "Traceback" not in both.stderr + one.stderr + none.stderr
