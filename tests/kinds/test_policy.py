"""Row-level security policies and RLS per table (kinds/policy.py, kinds/row_level_security.py): create, adopt,
replace in place, drift, rollback to the application's own policy exactly, RLS ordering — on a real server, as the
table's owner (not a superuser)."""

from __future__ import annotations

import pytest

from pgconverge.model import Action

pytestmark = pytest.mark.integration

# a shared-documents app, Supabase style: auth.uid() reads the JWT claims PostgREST sets per request
SCHEMA = """
CREATE SCHEMA auth;
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS
  $$ SELECT nullif(current_setting('request.jwt.claims', true)::jsonb ->> 'sub', '')::uuid $$;
CREATE TABLE documents (id bigint PRIMARY KEY, owner_id uuid NOT NULL, team_id int NOT NULL, title text);
GRANT SELECT ON documents TO authenticated;
GRANT USAGE ON SCHEMA auth TO authenticated;
"""

FAST = """
version: 1
phases:
  - id: rls
    title: "Documents: the owner's rows, auth.uid() once per statement"
    policies:
      - table: documents
        name: owners read their documents
        command: SELECT
        roles: [authenticated]
        using: "owner_id = (select auth.uid())"
    row_level_security:
      - table: documents
"""
SLOW = "CREATE POLICY \"owners read their documents\" ON documents FOR SELECT TO authenticated" \
       " USING (owner_id = auth.uid())"


def _policies(kit) -> list:
    return kit.scalar("SELECT coalesce(json_agg(json_build_object('name', policyname, 'permissive', permissive,"
                      " 'roles', roles, 'cmd', cmd, 'qual', qual, 'with_check', with_check) ORDER BY policyname), '[]')"
                      " FROM pg_policies WHERE tablename = 'documents'")


def test_a_new_policy_is_created_before_rls_is_switched_on_and_rollback_switches_it_off_first(kit):
    kit.execute(SCHEMA)
    loaded = kit.spec(FAST)
    steps = kit.plan(loaded, "rls").steps
    assert [(s.action, s.object) for s in steps] == [
        (Action.CREATE, "policy owners read their documents on public.documents"),
        (Action.ALTER, "row level security on public.documents")]
    assert steps[0].transactional and steps[0].statements[0] == (
        'CREATE POLICY "owners read their documents" ON "public"."documents" AS PERMISSIVE FOR SELECT TO'
        ' "authenticated" USING (owner_id = (select auth.uid()))')
    assert steps[1].statements == ('ALTER TABLE "public"."documents" ENABLE ROW LEVEL SECURITY',)
    kit.apply(loaded, steps)
    assert kit.scalar("SELECT relrowsecurity FROM pg_class WHERE relname = 'documents'") is True
    assert kit.plan(loaded, "rls").steps == ()
    rollback = kit.rollback(loaded, "rls").steps
    assert [(s.action, s.object) for s in rollback] == [
        (Action.ALTER, "row level security on public.documents"),
        (Action.DROP, "policy owners read their documents on public.documents")]
    kit.apply(loaded, rollback)
    assert kit.scalar("SELECT relrowsecurity FROM pg_class WHERE relname = 'documents'") is False
    assert _policies(kit) == []


def test_the_apps_slow_policy_is_replaced_in_place_and_rollback_restores_it_exactly(kit):
    kit.execute(SCHEMA, SLOW, "ALTER TABLE documents ENABLE ROW LEVEL SECURITY",
                "COMMENT ON POLICY \"owners read their documents\" ON documents IS 'the app''s own'")
    before = _policies(kit)
    loaded = kit.spec(FAST)
    steps = kit.plan(loaded, "rls").steps
    assert [(s.action, s.lock) for s in steps] == [(Action.ALTER, "ACCESS EXCLUSIVE")]  # RLS already on: no step
    assert steps[0].transactional and steps[0].statements[0].startswith(
        'ALTER POLICY "owners read their documents" ON "public"."documents" TO "authenticated" USING')
    assert "live policy differs" in steps[0].why
    kit.apply(loaded, steps)
    assert "SELECT auth.uid() AS uid" in _policies(kit)[0]["qual"]
    assert kit.plan(loaded, "rls").steps == ()
    kit.apply(loaded, kit.rollback(loaded, "rls").steps)
    assert _policies(kit) == before  # the slow one again, as pg_policies prints it
    assert kit.scalar("SELECT obj_description(oid, 'pg_policy') FROM pg_policy") == "the app's own"
    assert kit.scalar("SELECT relrowsecurity FROM pg_class WHERE relname = 'documents'") is True


def test_a_changed_command_is_dropped_and_created_in_one_transaction_and_drift_is_repaired(kit):
    kit.execute(SCHEMA, "CREATE POLICY \"owners read their documents\" ON documents FOR ALL TO authenticated"
                " USING (owner_id = auth.uid())", "ALTER TABLE documents ENABLE ROW LEVEL SECURITY")
    loaded = kit.spec(FAST)
    steps = kit.plan(loaded, "rls").steps
    assert len(steps) == 1 and steps[0].transactional
    assert [s.split(" ")[0] for s in steps[0].statements] == ["DROP", "CREATE", "COMMENT"]
    kit.apply(loaded, steps)
    assert kit.plan(loaded, "rls").steps == ()
    kit.execute("ALTER POLICY \"owners read their documents\" ON documents USING (true)")  # someone opened it
    drift = kit.plan(loaded, "rls").steps
    assert [s.action for s in drift] == [Action.ALTER] and "USING (true)" in drift[0].why
    kit.apply(loaded, drift)
    assert kit.plan(loaded, "rls").steps == ()
    kit.execute("ALTER TABLE documents DISABLE ROW LEVEL SECURITY")
    assert [s.statements for s in kit.plan(loaded, "rls").steps] == [
        ('ALTER TABLE "public"."documents" ENABLE ROW LEVEL SECURITY',)]


def test_an_equal_hand_made_policy_is_adopted_and_rollback_gives_it_back_unchanged(kit):
    kit.execute(SCHEMA, "CREATE POLICY \"owners read their documents\" ON documents FOR SELECT TO authenticated"
                " USING (owner_id = (SELECT auth.uid()))", "ALTER TABLE documents ENABLE ROW LEVEL SECURITY")
    before = _policies(kit)
    loaded = kit.spec(FAST)
    steps = kit.plan(loaded, "rls").steps
    assert [(s.action, s.why.split(":")[0]) for s in steps] == [(Action.MARK, "adopt")]
    kit.apply(loaded, steps)
    assert kit.plan(loaded, "rls").steps == ()
    kit.apply(loaded, kit.rollback(loaded, "rls").steps)
    assert _policies(kit) == before
    assert kit.scalar("SELECT obj_description(oid, 'pg_policy') FROM pg_policy") is None


def test_slow_policies_and_several_permissive_ones_are_named_with_their_rewrite(kit):
    kit.execute(SCHEMA, SLOW, "CREATE POLICY \"team reads\" ON documents FOR SELECT TO authenticated"
                " USING (team_id = (current_setting('request.jwt.claims', true)::jsonb ->> 'team')::int)")
    loaded = kit.spec(FAST.replace("(select auth.uid())", "auth.uid()"))
    notes = kit.plan(loaded, "rls").notes
    assert any("calls auth.uid() for every row in using — declare using: \"owner_id = (select auth.uid())\""
               in n for n in notes), notes
    assert any("calls current_setting() for every row" in n and "team reads" in n for n in notes), notes
    assert any("2 permissive policies for authenticated on SELECT" in n for n in notes), notes


COMBINED = """
version: 1
phases:
  - id: rls
    title: "Documents: one permissive policy instead of two"
    policies:
      - table: documents
        name: owners read their documents
        command: SELECT
        roles: [authenticated]
        using: "owner_id = (select auth.uid()) OR team_id = ((select auth.jwt()) ->> 'team')::int"
        replaces: [team reads]
"""
JWT = "CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS" \
      " $$ SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb $$"


def test_two_permissive_policies_become_one_in_one_transaction_and_rollback_brings_both_back(kit):
    kit.execute(SCHEMA, JWT, SLOW, "CREATE POLICY \"team reads\" ON documents FOR SELECT TO authenticated"
                " USING (team_id = (auth.jwt() ->> 'team')::int)", "ALTER TABLE documents ENABLE ROW LEVEL SECURITY")
    before = _policies(kit)
    loaded = kit.spec(COMBINED)
    assert any("2 permissive policies" in n for n in kit.plan(loaded, "rls").notes) is False  # the combined state
    steps = kit.plan(loaded, "rls").steps
    assert len(steps) == 1 and steps[0].transactional and "in place of \"team reads\"" in steps[0].why
    assert [s.split(" ")[0] for s in steps[0].statements] == ["ALTER", "DROP", "COMMENT"]
    kit.apply(loaded, steps)
    assert [p["name"] for p in _policies(kit)] == ["owners read their documents"]
    assert kit.plan(loaded, "rls").steps == ()
    kit.execute("CREATE POLICY \"team reads\" ON documents FOR SELECT TO authenticated USING (true)")  # back by hand
    again = kit.plan(loaded, "rls").steps
    assert [s.split(" ")[0] for s in again[0].statements] == ["DROP", "COMMENT"]
    kit.apply(loaded, again)
    kit.apply(loaded, kit.rollback(loaded, "rls").steps)
    assert _policies(kit) == before  # both of the application's policies, exactly as they were


def test_the_rls_initplan_gate_reads_the_plan_of_a_request(kit):
    from pgconverge import gates
    from pgconverge.execute import connect

    kit.execute(SCHEMA, SLOW, "ALTER TABLE documents ENABLE ROW LEVEL SECURITY",
                "INSERT INTO documents SELECT g, md5((g % 7)::text)::uuid, g % 3, 'doc' FROM generate_series(1, 500) g",
                )
    gate = """
    gates:
      - name: auth_once
        kind: rls_initplan
        query: my_documents
workload:
  - name: my_documents
    sql: workload/my_documents.sql
    params: "SELECT DISTINCT owner_id::text AS me FROM documents"
    as_role: authenticated
    claims: {sub: "%(me)s"}
"""
    files = {"workload/my_documents.sql": "SELECT count(*) FROM documents"}
    advisor = "\n      - name: advisor\n        kind: security\n"
    slow = kit.spec(FAST.replace("(select auth.uid())", "auth.uid()") + gate.replace("\nworkload:", advisor + "workload:"),
                    files)
    with connect(kit.url) as conn:
        result = gates.run_gate(conn, slow, slow.phases[0].gates[0], gates.ParamSampler(conn, slow))
        assert not result.passed and "per row: current_setting() in Seq Scan on documents" in result.measured
        kit.apply(slow, kit.plan(slow, "rls").steps)  # the slow form, managed: Supabase's advisor would flag it
        result = gates.run_gate(conn, slow, slow.phases[0].gates[1], gates.ParamSampler(conn, slow))
        assert not result.passed and "calls auth.uid() for every row" in result.measured, result
        fast = kit.spec(FAST + gate, files)
        kit.apply(fast, kit.plan(fast, "rls").steps)
        result = gates.run_gate(conn, fast, fast.phases[0].gates[0], gates.ParamSampler(conn, fast))
        assert result.passed and "once (InitPlan): current_setting() in InitPlan 1" in result.measured, result
        row = conn.execute("SELECT count(*) FROM documents").fetchone()  # as the owner: RLS does not apply
        assert row is not None and row[0] == 500
