"""A database unlike the reference one (tests/foreign/): other schemas, a mixed-case table, trigram and jsonb
indexes, RLS, a view over an indexed table, its own phase ids and workload — the full cycle as its non-superuser
owner."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from pgconverge.lab import reset_statements
from tests.conftest import PYINFRA, REPO

pytestmark = pytest.mark.integration

FOREIGN = REPO / "tests" / "foreign"
OWNER = "deskapp"
SCHEMAS = ("app", "reporting", "auth", "extensions")


def _reset(conn: psycopg.Connection) -> None:
    conn.execute("SELECT cron.unschedule(jobid) FROM cron.job")
    conn.execute("TRUNCATE cron.job_run_details")
    for schema in SCHEMAS:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def foreign_db(servers, cron_db):
    """The cron database (pg_cron schedules only there), holding the support-desk schema owned by deskapp."""
    password = "desk-pw-1"
    with psycopg.connect(servers.superuser_url(servers.database), autocommit=True) as conn:
        _reset(conn)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [OWNER]).fetchone():
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(OWNER)))
        else:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(OWNER),
                                                                           sql.Literal(password)))
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(servers.database),
                                                                          sql.Identifier(OWNER)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA cron TO {}").format(sql.Identifier(OWNER)))
        conn.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(OWNER)))
        # As on Supabase: an extensions schema the owner may create trusted extensions in.
        conn.execute("CREATE SCHEMA extensions")
        conn.execute("GRANT USAGE ON SCHEMA extensions TO PUBLIC")
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA extensions TO {}").format(sql.Identifier(OWNER)))
    url = f"postgresql://{OWNER}:{password}@127.0.0.1:{servers.state().pg_port}/{servers.database}"
    with psycopg.connect(url, autocommit=True) as conn:
        for part in sorted((FOREIGN / "sql" / "schema").glob("*.sql")):
            conn.execute(part.read_text())  # type: ignore[arg-type]
    yield url
    with psycopg.connect(servers.superuser_url(servers.database), autocommit=True) as conn:
        _reset(conn)


def pyinfra(url: str, deploy: str, *args: str, tmp: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "PGCONVERGE_PHASES": str(FOREIGN / "phases.yml"),
           "PGCONVERGE_BACKUP_DIR": str(tmp / "backups"), "PGCONVERGE_REPORTS_DIR": str(tmp / "reports"),
           **(env or {})}
    return subprocess.run([PYINFRA, "inventory/lab.py", deploy, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


def ok(result: subprocess.CompletedProcess) -> str:
    combined = result.stdout + result.stderr
    assert result.returncode == 0, combined[-5000:]
    assert "Traceback" not in combined
    return combined


def managed(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE obj_description(c.oid, 'pg_class') LIKE 'pgconverge:%' UNION ALL"
            " SELECT n.nspname, p.proname, 'f' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE obj_description(p.oid, 'pg_proc') LIKE 'pgconverge:%' ORDER BY 1, 2").fetchall()


def test_full_cycle_on_a_foreign_schema_as_its_owner(foreign_db, tmp_path):
    pgconverge = str(Path(PYINFRA).parent / "pgconverge")
    env = {**os.environ, "DATABASE_URL": foreign_db}
    valid = subprocess.run([pgconverge, "validate", "--phases", str(FOREIGN / "phases.yml")], cwd=REPO,
                           capture_output=True, text=True, env=env)
    assert valid.returncode == 0 and "2 phases, 1 extension, 7 indexes" in valid.stdout, valid.stdout + valid.stderr

    dry = ok(pyinfra(foreign_db, "deploys/all.py", "--dry", tmp=tmp_path))
    assert f"phases: {FOREIGN / 'phases.yml'} (from $PGCONVERGE_PHASES)" in dry
    assert ('CREATE INDEX CONCURRENTLY "tickets_title_trgm" ON "app"."Tickets" USING gin'
            ' (title extensions.gin_trgm_ops)') in dry
    assert 'ON "reporting"."deal_snapshots"' in dry
    # the partitioned activity table: its own index ON ONLY, one built concurrently per leaf, each attached
    assert 'CREATE INDEX "ticket_events_org_time" ON ONLY "app"."ticket_events"' in dry
    assert 'ON ONLY "app"."ticket_events_2026_11"' in dry and dry.count('ATTACH PARTITION "app"."ticket_events_') == 5
    assert managed(foreign_db) == []

    first = ok(pyinfra(foreign_db, "deploys/all.py", "-y", tmp=tmp_path))
    assert "summary: " in first and "gates passed" in first
    assert "FAILED" not in first
    assert "gate activity_uses_the_partitioned_index (plan, query org_activity) passed" in first
    # the application's own duplicate indexes are named, and judged by nobody but their owner
    assert "app.comments_ticket, app.comments_ticket_id_idx" in first and "not managed" in first
    objects = managed(foreign_db)
    assert ("reporting", "deal_snapshots_org_captured", "i") in objects
    assert ("app", "tickets_title_trgm", "i") in objects and ("app", "org_ticket_stats", "m") in objects
    with psycopg.connect(foreign_db) as conn:
        assert conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
                            ).fetchone()[0] == "extensions"
        assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid"
                            " WHERE h.inhparent = 'app.ticket_events_org_time'::regclass").fetchone()[0] == 3
        assert conn.execute("SELECT has_function_privilege('anon', 'app.org_ticket_counts(uuid)', 'EXECUTE')"
                            ).fetchone()[0] is False
        assert conn.execute("SELECT has_function_privilege('authenticated', 'app.org_ticket_counts(uuid)',"
                            " 'EXECUTE')").fetchone()[0] is True
        assert conn.execute("SELECT has_table_privilege('authenticated', 'app.org_ticket_stats', 'SELECT')"
                            ).fetchone()[0] is False
        assert conn.execute("SELECT count(*) FROM app.open_tickets").fetchone()[0] > 0  # the view still works

    second = ok(pyinfra(foreign_db, "deploys/all.py", "-y", tmp=tmp_path))
    assert "summary: 0 statements applied" in second
    assert managed(foreign_db) == objects

    ok(pyinfra(foreign_db, "deploys/verify.py", "-y", tmp=tmp_path))
    planned = subprocess.run([pgconverge, "plan", "inventory/lab.py", "deploys/all.py"], cwd=REPO, env={
        **env, "PGCONVERGE_PHASES": str(FOREIGN / "phases.yml")}, capture_output=True, text=True)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "#### search: 0 statements (converged)" in planned.stdout
    assert "#### rollups: 0 statements (converged)" in planned.stdout

    ok(pyinfra(foreign_db, "deploys/rollback.py", "-y", "--data", "phase=search", tmp=tmp_path))
    assert managed(foreign_db) == []
    with psycopg.connect(foreign_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_policies WHERE schemaname = 'app'").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM app.open_tickets").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone()[0] == 0

    ok(pyinfra(foreign_db, "deploys/phase.py", "-y", "--data", "phase=rollups", tmp=tmp_path))
    assert managed(foreign_db) == objects


def test_unknown_phase_id_is_one_line(foreign_db, tmp_path):
    for deploy, extra in (("deploys/phase1.py", ()), ("deploys/rollback.py", ("--data", "phase=phase9")),
                          ("deploys/phase.py", ())):
        result = pyinfra(foreign_db, deploy, "-y", *extra, tmp=tmp_path)
        combined = result.stdout + result.stderr
        assert result.returncode == 2, combined[-2000:]
        assert "Traceback" not in combined
        assert "the phases are: search, rollups" in combined


def test_a_gin_index_without_operator_class_is_refused_before_anything_runs(foreign_db, tmp_path):
    broken = tmp_path / "phases.yml"
    (tmp_path / "sql").symlink_to(FOREIGN / "sql")
    broken.write_text((FOREIGN / "phases.yml").read_text().replace('columns: ["title extensions.gin_trgm_ops"]',
                                                                   "columns: [title]"))
    env = {**os.environ, "DATABASE_URL": foreign_db, "PGCONVERGE_PHASES": str(broken),
           "PGCONVERGE_BACKUP_DIR": str(tmp_path / "b")}
    result = subprocess.run([PYINFRA, "inventory/lab.py", "deploys/all.py", "-y"], cwd=REPO, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    combined = result.stdout + result.stderr
    assert result.returncode != 0
    assert "index tickets_title_trgm on Tickets: data type text has no default operator class" in combined
    assert "Traceback" not in combined
    assert managed(foreign_db) == []
    with psycopg.connect(foreign_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()[0] == 0


@pytest.mark.needs_pg_cron
def test_pg_cron_in_another_database_of_the_cluster_is_one_line(servers, fresh_db, tmp_path):
    """pg_cron lives in one database per cluster; converging it into another says where, and what to do."""
    superuser = servers.superuser_url(fresh_db.rsplit("/", 1)[1])
    env = {**os.environ, "DATABASE_URL": superuser, "PGCONVERGE_BACKUP_DIR": str(tmp_path / "b"),
           "PGCONVERGE_REPORTS_DIR": str(tmp_path / "r")}
    result = subprocess.run([PYINFRA, "inventory/lab.py", "deploys/phase2.py", "-y"], cwd=REPO, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    combined = result.stdout + result.stderr
    assert result.returncode != 0
    assert (f"extension pg_cron: pg_cron lives in database {servers.database} (cron.database_name), not in"
            f" {fresh_db.rsplit('/', 1)[1]}") in combined, combined[-3000:]
    assert "Traceback" not in combined


def test_advise_cycle_on_the_foreign_database(servers, foreign_db, tmp_path, capsys):
    """Replay the foreign workload, advise, validate, converge, measure: the runbook's loop on another schema."""
    from pgconverge import cli

    with psycopg.connect(servers.superuser_url(servers.database), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA extensions")
        conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg WITH SCHEMA extensions")
        reset_statements(conn)
    phases = str(FOREIGN / "phases.yml")
    assert cli.main(["kpi", "--database-url", foreign_db, "--phases", phases, "--runs", "10"]) == 0
    assert cli.main(["advise", "--database-url", foreign_db, "--phases", phases,
                     "--output-dir", str(tmp_path / "proposal")]) == 0
    proposal = tmp_path / "proposal" / "phases.yml"
    text = proposal.read_text()
    assert "table: app.Tickets" in text or "table: app.members" in text, text
    # the declared workload's text, with the constant pg_stat_statements replaced by $2
    assert any("status = 'open'" in f.read_text() for f in (proposal.parent / "sql" / "workload").glob("*.sql"))
    # a verdict for every top statement; the substring search is named, with what would serve it
    statements = [line for line in text.splitlines() if re.match(r"#   -?\d+: \d+ calls", line)]
    assert statements and text.count("#     verdict: ") == len(statements), text
    assert "pattern search on title (LIKE/ILIKE '%…%')" in text and "gin_trgm_ops" in text, text
    # the declared workload is the source of truth: its names and parameter queries, a gate for every statement
    document = yaml.safe_load(text)
    names = {w["name"] for w in document["workload"]}
    assert {"ticket_title_search", "org_activity", "open_queue"} <= names, names
    gated = {g["query"] for g in document["phases"][0]["gates"] if g["kind"] == "latency"}
    assert gated == names and not any(n.startswith("advised_") for n in names), (gated, names)
    assert (proposal.parent / "sql" / "workload" / "params" / "ticket_title_search.sql").read_text().strip() == \
        (FOREIGN / "sql" / "workload" / "params" / "org_terms.sql").read_text().strip()
    assert cli.main(["validate", str(proposal)]) == 0
    env = {**os.environ, "DATABASE_URL": foreign_db, "PGCONVERGE_PHASES": str(proposal),
           "PGCONVERGE_BACKUP_DIR": str(tmp_path / "b"), "PGCONVERGE_REPORTS_DIR": str(tmp_path / "r")}
    result = subprocess.run([PYINFRA, "inventory/lab.py", "deploys/phase.py", "-y", "--data", "phase=advised"],
                            cwd=REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    out = ok(result)
    assert "gates passed" in out and "FAILED" not in out
    assert any(kind == "i" for _, _, kind in managed(foreign_db))
    capsys.readouterr()
    assert cli.main(["kpi", "--database-url", foreign_db, "--phases", phases, "--runs", "10"]) == 0
    assert "ticket_title_search" in capsys.readouterr().out


def test_a_view_on_the_managed_rollup_and_a_second_project_on_the_same_database(foreign_db, tmp_path):
    ok(pyinfra(foreign_db, "deploys/all.py", "-y", tmp=tmp_path))
    with psycopg.connect(foreign_db, autocommit=True) as conn:
        conn.execute("CREATE VIEW reporting.org_status_board WITH (security_invoker = true) AS"
                     " SELECT org_id, status, tickets FROM app.org_ticket_stats WHERE tickets > 0")
        conn.execute("GRANT USAGE ON SCHEMA reporting TO authenticated")
        conn.execute("GRANT SELECT ON reporting.org_status_board TO authenticated")
    # the rollup's query changes: rebuilt beside, swapped in, the board re-pointed with its options and grant
    project = tmp_path / "desk"
    shutil.copytree(FOREIGN, project)
    rollup = project / "sql" / "rollups" / "org_ticket_stats.sql"
    rollup.write_text(rollup.read_text().replace("max(created_at)", "min(created_at)"))
    env = {"PGCONVERGE_PHASES": str(project / "phases.yml")}
    out = ok(pyinfra(foreign_db, "deploys/phase.py", "-y", "--data", "phase=rollups", tmp=tmp_path, env=env))
    assert "re-points reporting.org_status_board" in out
    with psycopg.connect(foreign_db) as conn:
        assert conn.execute("SELECT count(*) FROM reporting.org_status_board").fetchone()[0] > 0
        assert "min(" in conn.execute("SELECT pg_get_viewdef('app.org_ticket_stats')").fetchone()[0]
        assert conn.execute("SELECT has_table_privilege('authenticated', 'reporting.org_status_board', 'SELECT')"
                            ).fetchone()[0] is True
        assert conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'reporting.org_status_board'::regclass"
                            ).fetchone()[0] == ["security_invoker=true"]

    # the reporting team's repository declares an index of the desk's name: one line naming both, nothing built
    team = {"PGCONVERGE_PHASES": str(FOREIGN / "reporting-team" / "phases.yml")}
    clash = pyinfra(foreign_db, "deploys/phase.py", "-y", "--data", "phase=boards", tmp=tmp_path, env=team)
    combined = clash.stdout + clash.stderr
    assert clash.returncode != 0 and "Traceback" not in combined
    assert "index app.comments_ticket_created belongs to project 'default'" in combined
    assert "(project 'reporting')" in combined
    with psycopg.connect(foreign_db) as conn:
        assert conn.execute("SELECT to_regclass('app.comments_author_created')").fetchone()[0] is None
    second = ok(pyinfra(foreign_db, "deploys/all.py", "-y", tmp=tmp_path, env=env))
    assert "summary: 0 statements applied" in second


def test_a_partitioned_table_has_its_leaves_rows_and_writes_for_advise(foreign_db):
    from pgconverge import advise
    from tests.conftest import writing

    with psycopg.connect(foreign_db, autocommit=True) as conn:
        assert advise.table_rows(conn)[("app", "ticket_events")] >= 140_000  # not reltuples -1 of the parent
        with writing(foreign_db, "INSERT INTO app.ticket_events SELECT ticket_id, org_id, 'email', 'replied',"
                                 " '2026-11-20' FROM app.ticket_events LIMIT 1"):
            rates, _ = advise.write_rates(conn, 2.0)
    assert rates["app.ticket_events"] > 0 and rates["app.ticket_events_2026_11_email"] > 0
    assert rates["app.ticket_events"] >= rates["app.ticket_events_2026_11_email"]
