"""advise on an application it has never seen (tests/boxoffice/: orders, payments partitioned by month, a name
search, a finance report): a verdict for every statement, candidates on the partitioned table like on any other,
the declared workload as the proposal's workload, and a proposal that validates and converges with its gates."""

from __future__ import annotations

import re

import psycopg
import pytest
import yaml

from pgconverge import cli
from pgconverge.lab import reset_statements
from tests.conftest import REPO, run_pyinfra
from tests.integration.test_converge import ok

pytestmark = [pytest.mark.integration, pytest.mark.needs_hypopg]

BOXOFFICE = REPO / "tests" / "boxoffice"
ORDERS = 250_000  # ~19k payments per monthly partition: none of them "small"


@pytest.fixture
def boxoffice_db(servers, fresh_db) -> str:
    with psycopg.connect(fresh_db, autocommit=True) as conn:  # the application's owner, not a superuser
        conn.execute((BOXOFFICE / "sql" / "schema" / "001_boxoffice.sql").read_text()  # type: ignore[arg-type]
                     .replace(":orders", str(ORDERS)))
        conn.execute("VACUUM ANALYZE")  # what autovacuum would have done by the time anyone advises
    with psycopg.connect(servers.superuser_url(fresh_db.rsplit("/", 1)[1]), autocommit=True) as conn:
        reset_statements(conn)
    assert cli.main(["kpi", "--database-url", fresh_db, "--phases", str(BOXOFFICE / "phases.yml"),
                     "--runs", "10"]) == 0
    return fresh_db


def test_advise_on_the_box_office(boxoffice_db, tmp_path, capsys):
    capsys.readouterr()
    proposal = tmp_path / "proposal"
    assert cli.main(["advise", "--database-url", boxoffice_db, "--phases", str(BOXOFFICE / "phases.yml"),
                     "--write-window", "0.5", "--output-dir", str(proposal)]) == 0
    text = (proposal / "phases.yml").read_text()
    document = yaml.safe_load(text)
    indexes = document["phases"][0]["indexes"]
    by_table = {(i["table"], i["columns"][0]) for i in indexes}
    # the partitioned table gets candidates like any other: a customer's payments in a date range
    assert ("box.payments", "customer_id") in by_table, by_table
    assert ("box.orders", "customer_id") in by_table and ("box.customers", "lower(email)") in by_table, by_table
    # a verdict for every top statement, naming what no btree index can do
    statements = [line for line in text.splitlines() if re.match(r"#   -?\d+: \d+ calls", line)]
    assert len(statements) == text.count("#     verdict: ") >= 8, text
    verdicts = dict(re.findall(r"#   -?\d+: \d+ calls, [\d.]+ ms, [\d,.]+ → [\d,.]+  (.{0,40}).*\n#     verdict: (.*)",
                               text))
    search = next(v for q, v in verdicts.items() if "full_name" in q)
    assert "trigram GIN index" in search and "full_name gin_trgm_ops" in search, search
    report = next(v for q, v in verdicts.items() if "date_trunc('month'" in q)
    assert report.startswith("a whole-table aggregate: no index makes it cheaper — a materialized view"), report
    # the declared names and parameter queries, a not-slower gate on each, reverted when one fails
    names = {w["name"] for w in document["workload"]}
    assert {"customer_orders", "customer_payments", "customer_search", "revenue_by_month"} <= names, names
    gated = {g["query"] for g in document["phases"][0]["gates"] if g["kind"] == "latency"}
    assert gated == names and document["phases"][0]["on_gate_failure"] == "revert"
    assert cli.main(["validate", str(proposal / "phases.yml")]) == 0
    out = ok(run_pyinfra(boxoffice_db, "deploys/phase.py", "-y", "--data", "phase=advised",
                         phases=proposal / "phases.yml", timeout=600))
    assert "gates passed" in out and "FAILED" not in out, out[-3000:]
    with psycopg.connect(boxoffice_db) as conn:
        # the payments index on the partitioned parent, valid, with one attached index per monthly partition
        row = conn.execute("SELECT i.indisvalid, (SELECT count(*) FROM pg_inherits WHERE inhparent = i.indexrelid)"
                           " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                           " WHERE i.indrelid = 'box.payments'::regclass AND c.relname LIKE 'idx_payments_customer%'"
                           ).fetchone()
    assert row == (True, 13), row


def test_advise_output_dir_on_a_converged_database_validates_or_says_nothing_to_advise(boxoffice_db, tmp_path,
                                                                                        capsys):
    ok(run_pyinfra(boxoffice_db, "deploys/all.py", "-y", phases=BOXOFFICE / "phases.yml", timeout=600))
    capsys.readouterr()
    code = cli.main(["advise", "--database-url", boxoffice_db, "--phases", str(BOXOFFICE / "phases.yml"),
                     "--write-window", "0.5", "--output-dir", str(tmp_path / "again")])
    out = capsys.readouterr().out
    written = tmp_path / "again" / "phases.yml"
    if written.exists():
        assert code == 0 and cli.main(["validate", str(written)]) == 0
    else:
        assert code == 0 and out.startswith("nothing to advise: no index makes the"), out
        assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())
