"""pgconverge advise: from the replayed workload (pg_stat_statements) and hypothetical indexes (HypoPG) to a
phases.yml fragment that validates and converges; never a write to the target."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
import yaml

from pgconverge import cli
from pgconverge.lab import reset_statements
from tests.conftest import REPO, run_pyinfra
from tests.integration.test_converge import ok

pytestmark = [pytest.mark.integration, pytest.mark.needs_hypopg]

STATE = """
SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
    SELECT format('%s %s %s %s', c.relname, c.relkind, c.relfilenode, obj_description(c.oid, 'pg_class')) AS x
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
    UNION ALL SELECT format('%s %s', proname, md5(prosrc)) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
    UNION ALL SELECT format('%s %s', 'leads', md5(string_agg(l::text, ',' ORDER BY l.id))) FROM leads l
    UNION ALL SELECT format('%s %s', 'events', count(*)) FROM message_events
) AS state
"""


def state(url: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute(STATE).fetchone()[0]


def replay(servers, url: str, capsys) -> None:
    """The application's queries, as the KPI classes run them, after a reset of this database's statistics."""
    with psycopg.connect(servers.superuser_url(url.rsplit("/", 1)[1]), autocommit=True) as conn:
        reset_statements(conn)
    assert cli.main(["kpi", "--database-url", url, "--runs", "10"]) == 0
    capsys.readouterr()


def test_advise_proposes_indexes_that_validate_and_converge_and_writes_nothing(servers, fresh_db, tmp_path, capsys):
    replay(servers, fresh_db, capsys)
    before = state(fresh_db)
    proposal_dir = tmp_path / "proposal"
    assert cli.main(["advise", "--database-url", fresh_db, "--output-dir", str(proposal_dir)]) == 0
    assert state(fresh_db) == before  # plans and hypothetical indexes only
    proposal = proposal_dir / "phases.yml"
    text = proposal.read_text()
    indexes = yaml.safe_load(text)["phases"][0]["indexes"]
    assert any(i["table"] == "public.message_events" and i["columns"][0] == "lead_id"
               and i["columns"][1].startswith("created_at") for i in indexes), indexes
    assert "to_regclass" not in text  # kpi's own catalog check is no application statement
    # ./phases.yml's own indexes compete (none is built here yet): the proposal says which of them it needs
    assert "declared in phases.yml as idx_" in text, text
    assert "workload cost" in text and "writes/s" in text
    # serves names each statement it makes cheaper, with the estimated cost per call and how often it runs
    assert all(re.match(r'(declared in phases.yml as \w+; )?(\w+|queryid -?\d+) [\d,.]+ → [\d,.]+ per call,'
                        r' [\d.]+ calls/s', i["serves"]) for i in indexes), indexes
    assert "workload:" in text and "kind: latency" in text and "max_ratio_to_before: 1.2" in text
    assert "slack_ms: 0.5" in text and "on_gate_failure: revert" in text
    assert cli.main(["validate", str(proposal)]) == 0
    out = ok(run_pyinfra(fresh_db, "deploys/phase.py", "-y", "--data", "phase=advised", phases=proposal))
    passed = re.search(r"summary: \d+ statements applied, (\d+)/(\d+) gates passed", out)
    assert passed and passed.group(1) == passed.group(2) and int(passed.group(2)) >= 2, out[-2000:]
    with psycopg.connect(fresh_db) as conn:
        built = conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'idx_%'").fetchone()[0]
    assert 1 <= built <= 12


def test_advise_without_hypopg_says_so_in_one_line(servers, fresh_db, capsys):
    with psycopg.connect(servers.superuser_url(fresh_db.rsplit("/", 1)[1]), autocommit=True) as conn:
        conn.execute("DROP EXTENSION hypopg")
    assert cli.main(["advise", "--database-url", fresh_db]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("phases: ") and len(err) == 2  # which phases.yml, then one line
    assert "HypoPG is not installed in this database" in err[1]


def test_statements_as_pg_stat_statements_prints_them_become_plannable():
    from pgconverge.advise import candidates_of, plannable

    query = "SELECT direction FROM message_events WHERE lead_id = $1 AND created_at >= now() - interval $2"
    assert plannable(query).endswith("now() - $2::interval")
    columns = {("public", "message_events"): {"id", "lead_id", "created_at", "direction", "user_id", "status"}}
    found = candidates_of("SELECT id FROM message_events m WHERE m.user_id = $1 AND m.status = $2"
                          " ORDER BY m.created_at DESC LIMIT 20", columns)
    assert [(c.columns, c.include) for c in found] == [
        (("user_id", "status", "created_at DESC"), ()), (("user_id", "status"), ()),
        (("user_id", "status", "created_at DESC", "id"), ())]
    wide = candidates_of("SELECT id, lead_id, direction FROM message_events WHERE user_id = $1 AND status = $2"
                         " ORDER BY created_at DESC", columns)
    assert (("user_id", "status", "created_at DESC"), ("direction", "id", "lead_id")) in [
        (c.columns, c.include) for c in wide]
    nested = candidates_of("SELECT e.id FROM (SELECT DISTINCT ON (lead_id) id FROM message_events WHERE user_id = $1"
                           " ORDER BY lead_id, created_at DESC) AS latest JOIN message_events e ON e.id = latest.id",
                           columns)
    assert ("user_id", "lead_id", "created_at DESC") in [c.columns for c in nested]
    assert Path(REPO / "sql" / "gates" / "no_invalid_indexes.sql").exists()


def test_constant_filters_become_partial_candidates_and_group_by_columns_keys():
    from pgconverge.advise import candidates_of

    columns = {("public", "message_events"): {"user_id", "template_id", "status", "direction"},
               ("public", "leads"): {"id", "user_id", "p_score", "status"}}
    grouped = candidates_of("SELECT template_id, count(*) FILTER (WHERE status = 'replied') FROM message_events"
                            " WHERE user_id = $1"
                            " AND template_id IS NOT NULL GROUP BY template_id", columns)
    # the one other column read goes into the key (deduplicated), not INCLUDE
    assert [(c.columns, c.include, c.where) for c in grouped] == [
        (("user_id", "template_id"), (), ""), (("user_id",), (), ""), (("user_id", "template_id", "status"), (), ""),
        (("user_id", "template_id"), (), '"template_id" IS NOT NULL'),
        (("user_id",), (), '"template_id" IS NOT NULL'),
        (("user_id", "template_id", "status"), (), '"template_id" IS NOT NULL')]
    assert grouped[3].create_sql().endswith('("user_id", "template_id") WHERE "template_id" IS NOT NULL')
    mixed = candidates_of("SELECT l.id FROM leads l WHERE l.user_id = $1 AND l.p_score >= 70 AND l.status"
                          " IN ('new', 'open') AND l.p_score < $2 ORDER BY l.p_score DESC", columns)
    only_grouped = candidates_of("SELECT status, count(*) FROM leads GROUP BY status", columns)
    assert [c.columns for c in only_grouped] == [("status",)]
    # parameters are no predicate (a generic plan could not use the index); constants and IN lists are
    assert {c.where for c in mixed} == {"", "\"p_score\" >= 70 AND \"status\" IN ('new', 'open')"}


def test_the_declared_workload_gives_advise_the_constants_pg_stat_statements_replaced():
    from pgconverge import spec
    from pgconverge.advise import declared_statements, fingerprint

    declared = declared_statements(spec.load(REPO / "phases.yml"))
    normalized = ("SELECT id, name, status, p_score, last_activity_at FROM leads WHERE user_id = $1 AND p_score >= $2"
                  " AND last_activity_at >= now() - interval $3 ORDER BY p_score DESC LIMIT $4")
    name, text = declared[fingerprint(normalized) or ""]
    assert name == "hot_leads"
    assert "p_score >= 70" in text and "user_id = $1" in text


def test_advise_and_kpi_reach_a_database_host_of_an_inventory(fresh_db, tmp_path, capsys, monkeypatch):
    inventory = tmp_path / "fleet.py"
    inventory.write_text("db = ([('@db/eu', {'database_url_env': 'T_EU_URL'}), ('@db/us', {'database_url_env':"
                         " 'T_US_URL'})], {'environment': 'prod'})\ncache = ['redis-1.internal']\n")
    monkeypatch.setenv("T_EU_URL", fresh_db)
    monkeypatch.delenv("T_US_URL", raising=False)
    assert cli.main(["kpi", "--inventory", str(inventory), "--runs", "1"]) == 1
    assert "has 2 database hosts (@db/eu, @db/us) — pick one with --host" in capsys.readouterr().err
    assert cli.main(["kpi", "--inventory", str(inventory), "--host", "@db/us", "--runs", "1"]) == 1
    err = capsys.readouterr().err
    assert "T_US_URL" in err and "\n" not in err.strip()
    assert cli.main(["kpi", "--inventory", str(inventory), "--host", "@db/eu", "--runs", "1"]) == 0
    assert "hot_leads" in capsys.readouterr().out


def test_without_a_declared_workload_statements_with_unsampleable_parameters_say_why_they_get_no_gate(
        servers, fresh_db, capsys):
    from pgconverge import advise

    replay(servers, fresh_db, capsys)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        advice = advise.advise(conn, None)  # pg_stat_statements only: `LIMIT $4`, `interval $3`
    text = advise.to_yaml(advice)
    # kpi sampled parameters for every declared query before: none of pgconverge's own statements is advised on
    assert not any("AS params" in s.query or "pgconverge" in s.query for s, _, _ in advice.statements)
    hot = next(s for s, _, _ in advice.statements if "p_score >= $" in s.query)
    assert hot.queryid in advice.ungated and hot.queryid not in advice.workload
    assert "#     no gate: a parameter is compared with no column (LIMIT, interval" in text
    assert not advice.declared and '"p_score" >=' not in text  # its constant became $2: no partial index of it


def test_a_broken_inventory_is_one_line_for_plan_kpi_and_advise(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text('db = [("@local", {"database_url_env": "X"}\n')
    raising = tmp_path / "raising.py"
    raising.write_text('import os\ndb = [("@local", {"database_url_env": os.environ["T_NOT_SET_ANYWHERE"]})]\n')
    cases = [(["plan", str(broken), "deploys/all.py"], f"{broken}:1: '(' was never closed"),
             (["kpi", "--inventory", str(raising)], "loading it raised KeyError: 'T_NOT_SET_ANYWHERE'"),
             (["advise", "--inventory", str(tmp_path / "missing.py")], "no such inventory file")]
    for argv, message in cases:
        assert cli.main(argv) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("phases: ")]
        assert len(err) == 1 and message in err[0], err


def test_fleet_advice_one_proposal_for_tenants_with_different_traffic(servers, tmp_path, capsys, monkeypatch):
    """Five tenant databases of one schema, each with its own traffic: one phase for all of them, each index
    saying on how many databases it was chosen, the evidence per database."""
    from psycopg import sql

    from tests.conftest import TEMPLATE, app_url

    names = [f"tenant_adv_{i}_{tmp_path.name[-8:]}".lower().replace("-", "_") for i in range(5)]
    entries = []
    try:
        for i, name in enumerate(names):
            with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER salesflow").format(
                    sql.Identifier(name), sql.Identifier(TEMPLATE)))
            url = app_url(servers, name)
            monkeypatch.setenv(f"TENANT_{i}_URL", url)
            entries.append(f'("@db/t{i}", {{"database_url_env": "TENANT_{i}_URL"}})')
            with psycopg.connect(servers.superuser_url(name), autocommit=True) as conn:
                reset_statements(conn)
            assert cli.main(["kpi", "--database-url", url, "--runs", str(3 + 5 * i)]) == 0
            if i >= 3:  # two tenants read one lead's thread far more than the others do
                with psycopg.connect(url) as conn:
                    leads = [r[0] for r in conn.execute("SELECT id FROM leads LIMIT 50").fetchall()]
                    for lead in leads * 4:
                        conn.execute("SELECT id, created_at FROM message_events WHERE lead_id = %s"
                                     " ORDER BY created_at DESC LIMIT 20", [lead]).fetchall()
        capsys.readouterr()
        inventory = tmp_path / "tenants.py"
        inventory.write_text("tenants = [" + ", ".join(entries) + "]\nother = []\n")
        out = tmp_path / "proposal"
        assert cli.main(["advise", "--inventory", str(inventory), "--group", "tenants", "--output-dir", str(out)]) == 0
        text = (out / "phases.yml").read_text()
        indexes = yaml.safe_load(text)["phases"][0]["indexes"]
        assert indexes and all(re.search(r"chosen on [1-5] of 5 databases \(@db/t\d", i["serves"]) for i in indexes)
        assert "# The fleet's evidence, per database:" in text
        assert all(re.search(rf"#   @db/t{i}: \d+ statements, \d+ % of the fleet's estimated workload", text)
                   for i in range(5)), text
        assert cli.main(["validate", str(out / "phases.yml")]) == 0
        assert cli.main(["advise", "--inventory", str(inventory), "--group", "nope"]) == 1
        assert "no group 'nope' — the groups are: other, tenants" in capsys.readouterr().err
    finally:
        with psycopg.connect(servers.superuser_url(), autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_write_rates_are_measured_over_a_window_not_averaged_since_the_reset(fresh_db):
    """Only crm_notes takes writes during the window: the window sees that, and leads takes none."""
    from pgconverge import advise
    from tests.conftest import writing

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        averaged, basis = advise.write_rates(conn, 0)
        assert basis.startswith("averaged since the statistics reset ") and basis.endswith(" h ago")
        assert all(rate >= 0 for rate in averaged.values())
        lead = conn.execute("SELECT lead_id FROM crm_notes LIMIT 1").fetchone()[0]
        with writing(fresh_db, "UPDATE crm_notes SET user_id = user_id WHERE lead_id = %s", [lead]):
            measured, basis = advise.write_rates(conn, 2.5)
    assert basis == "measured over 2.5 s"
    assert measured["public.leads"] == 0 and measured["public.crm_notes"] > 0
