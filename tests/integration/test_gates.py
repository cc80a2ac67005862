"""Gates on real data: verify changes nothing, failures name value and threshold, on_gate_failure rolls back."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.conftest import run_pyinfra
from tests.integration.test_converge import catalog_oids, ok

pytestmark = pytest.mark.integration

FRESHNESS = """
      - name: hot_leads_fresh
        kind: freshness
        materialized_view: mv_hot_leads
        within: 60s
"""


def test_verify_runs_every_gate_and_changes_nothing(cron_db):
    before = run_pyinfra(cron_db, "deploys/verify.py", "-y")
    assert before.returncode != 0  # nothing applied yet: plan and security gates cannot pass
    assert "FAILED" in before.stdout + before.stderr
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    oids = catalog_oids(cron_db)
    out = ok(run_pyinfra(cron_db, "deploys/verify.py", "-y"))
    assert out.count("] gate ") == 17 and "summary: 0 statements applied, 17/17 gates passed" in out
    assert catalog_oids(cron_db) == oids


def test_security_gate_fails_when_an_api_role_can_read_a_view(cron_db):
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    with psycopg.connect(cron_db, autocommit=True) as conn:
        conn.execute("GRANT SELECT ON mv_hot_leads TO anon")
    result = run_pyinfra(cron_db, "deploys/verify.py", "-y")
    assert result.returncode != 0
    assert "anon can read materialized view public.mv_hot_leads" in result.stdout + result.stderr


def test_on_gate_failure_rollback_undoes_only_that_phase(cron_db, project):
    phases = project / "phases.yml"
    text = phases.read_text().replace(
        '    title: "SQL functions replace Python loops"\n',
        '    title: "SQL functions replace Python loops"\n    on_gate_failure: rollback\n')
    phases.write_text(text.replace("max_ms: 50", "max_ms: 0"))
    result = run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases)
    combined = result.stdout + result.stderr
    assert result.returncode != 0
    assert "gate lead_event_stats_fast (explain, query pscore_batch) FAILED" in combined and "threshold < 0 ms" in combined
    assert "rolling the phase back" in combined
    with psycopg.connect(cron_db) as conn:
        assert conn.execute("SELECT to_regproc('calculate_lead_event_stats')").fetchone()[0] is None
        assert conn.execute("SELECT to_regclass('mv_hot_leads')").fetchone()[0] is not None
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone()[0] == 3


def test_freshness_gate_reads_cron_run_history(cron_db, project):
    phases = project / "phases.yml"
    text = phases.read_text()
    text = text.replace(
        "      - name: refresh-template-performance\n",
        "      - name: refresh-hot-leads-often\n        schedule: \"1 seconds\"\n"
        "        command: SELECT refresh_hot_leads_mv();\n      - name: refresh-template-performance\n").replace(
        'schedule: "1 seconds"', 'schedule: "* * * * *"')
    phases.write_text(text)
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    with psycopg.connect(cron_db, autocommit=True) as conn:
        # pg_cron 1.4 (Debian 12) runs at most once a minute: wait for the next minute's run
        for _ in range(150):
            if conn.execute("SELECT count(*) FROM cron.job_run_details WHERE status = 'succeeded'").fetchone()[0]:
                break
            time.sleep(0.5)
    phases.write_text(text.replace("    gates:\n      - name: matviews_not_readable_by_api_roles",
                                   "    gates:" + FRESHNESS + "      - name: matviews_not_readable_by_api_roles"))
    out = ok(run_pyinfra(cron_db, "deploys/verify.py", "-y", phases=phases))
    assert "gate hot_leads_fresh (freshness) passed: measured last refresh" in out
    stale = text.replace("    gates:\n      - name: matviews_not_readable_by_api_roles",
                         "    gates:" + FRESHNESS.replace("mv_hot_leads", "mv_template_performance")
                         + "      - name: matviews_not_readable_by_api_roles")
    phases.write_text(stale)
    result = run_pyinfra(cron_db, "deploys/verify.py", "-y", phases=phases)
    assert result.returncode != 0
    assert "gate hot_leads_fresh (freshness) FAILED: measured never refreshed by cron" in result.stdout + result.stderr


def test_a_gate_comparing_with_before_on_an_object_its_own_phase_creates_is_judged_by_its_bound(cron_db, project):
    phases = project / "phases.yml"
    phases.write_text(phases.read_text().replace(
        "query: unified_inbox_fn\n        p95_ms: 20\n",
        "query: unified_inbox_fn\n        p95_ms: 200\n        max_ratio_to_before: 2\n"))
    dry = ok(run_pyinfra(cron_db, "deploys/all.py", "--dry", phases=phases))
    assert "gate inbox_fn_p95: query unified_inbox_fn needs get_unified_inbox, which this phase creates" in dry
    assert "judged by its absolute bound (p95 ≤ 200 ms)" in dry
    out = ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    assert "gate inbox_fn_p95: query unified_inbox_fn needs get_unified_inbox, not there yet" in out
    assert "gate inbox_fn_p95 (latency, query unified_inbox_fn) passed" in out
    assert "no value from before the phase in this run: not compared" in out


def test_a_no_op_converge_does_not_re_time_queries_unless_told(cron_db, project):
    ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    again = ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    assert "summary: 0 statements applied, 9/9 gates passed, 8 timed gates not re-run (nothing changed)" in again
    assert "phase1: nothing changed, timed gates not re-run: " in again
    phases = project / "phases.yml"
    phases.write_text(phases.read_text().replace("settings:\n", "settings:\n  noop_gates: all\n", 1))
    every = ok(run_pyinfra(cron_db, "deploys/all.py", "-y", phases=phases))
    assert "summary: 0 statements applied, 17/17 gates passed" in every


def test_on_gate_failure_revert_drops_what_the_run_created_and_names_the_gate(cron_db, project):
    """A gate that fails after the apply: the new index is dropped concurrently, the database ends as before, the
    run exits != 0 naming the gate and its workload query."""
    before = catalog_oids(cron_db)
    phases = project / "phases.yml"
    text = phases.read_text().replace(
        '    title: "Quick wins: baseline statistics and 12 concurrent indexes"\n',
        '    title: "Quick wins: baseline statistics and 12 concurrent indexes"\n    on_gate_failure: revert\n')
    phases.write_text(text.replace("p95_ms: 50\n        runs: 30\n      - name: events_list_p95",
                                   "p95_ms: 0\n        runs: 30\n      - name: events_list_p95", 1))
    result = run_pyinfra(cron_db, "deploys/phase1.py", "-y", phases=phases)
    combined = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in combined
    assert "gate dashboard_p95 (query dashboard_analytics) failed after the phase was applied — reverted: dropped" \
        in combined
    with psycopg.connect(cron_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_%'").fetchone()[0] == 0
    assert catalog_oids(cron_db) == before


def test_verify_from_cron_without_y_and_without_a_terminal_runs_instead_of_a_traceback(fresh_db):
    """pyinfra asks "Press enter to execute" and its input() met EOF: verify changes nothing, there is nothing to
    confirm."""
    result = run_pyinfra(fresh_db, "deploys/verify.py")  # no -y; stdin is /dev/null, as under cron
    out = result.stdout + result.stderr
    assert "EOFError" not in out and "Traceback" not in out, out[-2000:]
    assert "] gate no_invalid_indexes (sql)" in out and "summary: 0 statements applied" in out, out[-2000:]
