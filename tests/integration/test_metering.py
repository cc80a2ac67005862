"""A skewed tenant (tests/metering: one tenant sends two thirds of the usage events): advise does not call the
dashboard's sum "already served" on the typical tenant's plan when the heaviest tenant's plan reads 200,000 rows
through the same index — the verdict names both and what would help."""

from __future__ import annotations

import re

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
