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
