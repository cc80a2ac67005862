"""A skewed tenant (tests/metering: one tenant sends two thirds of the usage events): advise does not call the
dashboard's sum "already served" on the typical tenant's plan when the heaviest tenant's plan reads 200,000 rows
through the same index — the verdict names both and what would help."""

from __future__ import annotations

import re
import shutil

import psycopg
import pytest

from pgconverge import cli
from pgconverge.advise.costing import HEAVY_ROWS
from pgconverge.lab import reset_statements
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.needs_hypopg]

METERING = REPO / "tests" / "metering"


def test_the_heaviest_tenant_is_in_the_verdict(servers, fresh_db, capsys):
    schema = (METERING / "sql" / "schema.sql").read_text()
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for statement in filter(str.strip, re.sub(r"(?m)^--.*$", "", schema).split(";")):
            conn.execute(statement)  # type: ignore[arg-type]
    with psycopg.connect(servers.superuser_url(fresh_db.rsplit("/", 1)[1]), autocommit=True) as conn:
        reset_statements(conn)
    phases = str(METERING / "phases.yml")
    assert cli.main(["kpi", "--database-url", fresh_db, "--phases", phases, "--runs", "10"]) == 0
    capsys.readouterr()
    cli.main(["advise", "--database-url", fresh_db, "--phases", phases, "--write-window", "0"])
    out = capsys.readouterr().out
    verdict = re.search(r"served, but heavy: usage_events_tenant \(typical ~([\d,]+) rows, heaviest ~([\d,]+) rows"
                        r" read by the plan\) — .*a covering index .*a rollup", out)
    assert verdict, out[-3000:]
    typical, heaviest = (int(g.replace(",", "")) for g in verdict.groups())
    # a parallel plan estimates rows per process: the heaviest tenant's 200,000 show as ~83,000 of each
    assert heaviest >= HEAVY_ROWS and typical < 10_000
    assert "already served by usage_events_tenant" not in out


# the meter picker lists a tenant's meters by name: (tenant_id, name) is wide, its prefix (tenant_id) is what the
# tenant's lookup reads
METERS = """
CREATE TABLE metering.meters (id bigint PRIMARY KEY, tenant_id integer NOT NULL, name text NOT NULL);
INSERT INTO metering.meters SELECT g, g % 500, repeat('m', 200) || g FROM generate_series(1, 50000) AS g;
CREATE INDEX meters_tenant ON metering.meters (tenant_id);
CREATE INDEX meters_tenant_name ON metering.meters (tenant_id, name);
VACUUM ANALYZE metering.meters
"""


def test_the_redundant_index_review_keeps_the_prefix_index_a_top_statement_reads(servers, fresh_db, tmp_path, capsys):
    shutil.copytree(METERING, tmp_path / "metering")
    (tmp_path / "metering" / "sql" / "workload" / "meters_of_tenant.sql").write_text(
        "SELECT id FROM metering.meters WHERE tenant_id = %(tenant)s\n")
    phases = tmp_path / "metering" / "phases.yml"
    phases.write_text(phases.read_text() + "  - name: meters_of_tenant\n    params: workload/params/tenants.sql\n")
    schema = (METERING / "sql" / "schema.sql").read_text() + ";" + METERS
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for statement in filter(str.strip, re.sub(r"(?m)^--.*$", "", schema).split(";")):
            conn.execute(statement)  # type: ignore[arg-type]
    with psycopg.connect(servers.superuser_url(fresh_db.rsplit("/", 1)[1]), autocommit=True) as conn:
        reset_statements(conn)
    assert cli.main(["kpi", "--database-url", fresh_db, "--phases", str(phases), "--runs", "10"]) == 0
    capsys.readouterr()
    cli.main(["advise", "--database-url", fresh_db, "--phases", str(phases), "--write-window", "0"])
    out = capsys.readouterr().out
    assert re.search(r"#   meters_tenant \(a leading prefix of meters_tenant_name\): read by meters_of_tenant", out), \
        out[-3000:]
    assert "- name: meters_tenant  #" not in out  # never offered with state: absent


def test_a_quiet_write_window_says_upkeep_was_not_weighed(servers, fresh_db):
    from pgconverge.advise.statements import write_rates

    with psycopg.connect(fresh_db, autocommit=True) as conn:  # a backend reports its counts when it ends
        conn.execute("CREATE TABLE quiet (id int)")
        conn.execute("INSERT INTO quiet SELECT generate_series(1, 1000)")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for _ in range(50):  # until the statistics show that load (milliseconds, not a wall-clock bound)
            if conn.execute("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'quiet'").fetchone()[0]:
                break
            conn.execute("SELECT pg_sleep(0.1), pg_stat_clear_snapshot()")
        rates, basis = write_rates(conn, 0.5)
    assert basis.startswith("no write in the 0.5 s window, so upkeep is not weighed; rates averaged since the"
                            " statistics reset"), basis
    assert rates["public.quiet"] > 0  # the load since the reset, shown, not weighed
