"""advise's proposal is data dumped as YAML: it validates, round-trips, and is not written when empty."""

from __future__ import annotations

import pytest
import yaml

from pgconverge import advise, spec
from pgconverge.advise import Advice, Candidate


def test_nothing_to_advise_writes_nothing(tmp_path):
    with pytest.raises(advise.NothingToAdvise, match="nothing to advise"):
        advise.write_proposal(Advice(), tmp_path / "proposal")
    assert not (tmp_path / "proposal").exists()


def test_a_proposal_with_quotes_and_colons_in_its_text_validates(tmp_path):
    candidate = Candidate("public", "tickets", ("org_id", "created_at DESC"), where="status = 'open: now'")
    advice = Advice(chosen=[(candidate, 100.0, 10.0, ())])
    path = advise.write_proposal(advice, tmp_path)
    document = yaml.safe_load(path.read_text())
    index = document["phases"][0]["indexes"][0]
    assert index["where"] == "status = 'open: now'" and index["columns"] == ["org_id", "created_at DESC"]
    loaded = spec.load(path)
    assert loaded.phase("advised").indexes[0].where == "status = 'open: now'"


def test_an_expression_the_where_compares_is_a_candidate():
    columns = {("app", "members"): {"id", "email", "org_id"}}
    found = advise.candidates_of("SELECT id FROM app.members WHERE lower(email) = lower($1)", columns)
    expression = [c for c in found if c.columns == ("lower(email)",)]
    assert expression and expression[0].create_sql() == 'CREATE INDEX ON "app"."members" (lower(email))'
    assert expression[0].name == "idx_members_lower_email"


def test_join_keys_on_the_referencing_side_are_candidates():
    columns = {("public", "orders"): {"id", "customer_id", "placed_at"}, ("public", "customers"): {"id", "region"}}
    found = advise.candidates_of("SELECT o.id FROM customers c JOIN orders o ON o.customer_id = c.id"
                                 " WHERE c.region = $1", columns)
    assert any(c.table == "orders" and c.columns[0] == "customer_id" for c in found), found


def test_a_redundant_index_a_top_statement_reads_is_named_with_it_and_never_offered_for_removal():
    from pgconverge.advise.proposal import review_redundant

    redundant = [("app", "events_tenant", 8192, "app.events", "tenant_id", "a leading prefix of events_tenant_day"),
                 ("app", "events_kind", 4096, "app.events", "kind", "duplicate of events_kind2")]
    droppable, read = review_redundant(redundant, {"events_tenant": ["tenant_usage", "queryid 7"]})
    assert [r[1] for r in droppable] == ["events_kind"]
    assert read == [("events_tenant", "a leading prefix of events_tenant_day", ["tenant_usage", "queryid 7"])]


def test_a_candidate_leading_with_a_unique_key_is_a_near_duplicate():
    from pgconverge.advise.model import repeated_key

    keys = [("events_pkey", ("id",)), ("events_tenant_seq", ("tenant_id", "seq"))]
    assert repeated_key(Candidate("app", "events", ("id", "kind")), keys) == "events_pkey"
    assert repeated_key(Candidate("app", "events", ("seq DESC", "tenant_id", "day")), keys) == "events_tenant_seq"
    assert repeated_key(Candidate("app", "events", ("tenant_id", "day")), keys) is None
    assert repeated_key(Candidate("app", "events", ("kind", "id")), keys) is None


def test_an_index_that_serves_many_statements_still_validates(tmp_path):
    # reproduced on the telemetry app: one index made nine statements cheaper and its serves: outgrew the schema
    statements = [advise.Statement(1000 + i, f"SELECT {i} FROM events WHERE project_id = $1", 50, 10.0, 500.0, 1.5)
                  for i in range(12)]
    candidate = Candidate("telemetry", "events", ("project_id", "created_at"))
    advice = Advice(chosen=[(candidate, 90_000.0, 9_000.0,
                             tuple((s.queryid, 30_170.1 + s.queryid, 9_064.6) for s in statements))],
                    statements=[(s, 30_170.1, 9_064.6) for s in statements],
                    declared={s.queryid: f"a_rather_long_dashboard_query_name_{i}" for i, s in enumerate(statements)})
    loaded = spec.load(advise.write_proposal(advice, tmp_path))
    serves = loaded.phase("advised").indexes[0].serves or ""
    assert len(serves) <= 500 and "a_rather_long_dashboard_query_name_0" in serves and "more" in serves
