"""The planner is pure: every object kind and drift case against hand-written catalogs, no database."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgconverge import plan
from pgconverge.facts import Catalog, CronJobFact, ExtensionFact, FunctionFact, IndexFact, MatViewFact
from pgconverge.kinds.cron_job import CronJobSpec
from pgconverge.kinds.extension import ExtensionSpec
from pgconverge.kinds.function import FunctionRendering, FunctionSpec
from pgconverge.kinds.index import IndexColumn, IndexSpec
from pgconverge.kinds.matview import MatViewSpec
from pgconverge.kinds.privileges import GrantSpec, grant_notes
from pgconverge.spec import Phase, Settings, Spec, marker

INDEX = IndexSpec("idx_ev", "message_events", (IndexColumn("user_id"), IndexColumn("created_at", "DESC")), "p1",
                  include=("status",), where="direction = 'inbound'")
VIEW = MatViewSpec("mv_hot", "phase2/mv_hot.sql", "SELECT id, user_id FROM leads", "p2", unique_key=("id",))
FUNCTION = FunctionSpec("stats", "phase3/stats.sql",
                        "CREATE OR REPLACE FUNCTION stats() RETURNS int LANGUAGE sql SET search_path = public AS $$ SELECT 1 $$",
                        "p3")
JOB = CronJobSpec("refresh-hot", "*/15 * * * *", "SELECT 1;", "p2")
REVOKE = GrantSpec(("ALL",), "mv_hot", ("anon", "authenticated"), "p2", revoke=True)
ROLES = frozenset({"salesflow", "anon", "authenticated"})


def catalog(**kwargs) -> Catalog:
    defaults = dict(database="salesflow", roles=ROLES, relations=frozenset({"public.message_events", "public.leads"}),
                    row_estimates={"public.message_events": 5_000_000})
    return Catalog(**{**defaults, **kwargs})


def index_fact(name="idx_ev", valid=True, comment=None, table="message_events") -> IndexFact:
    return IndexFact(name, table, valid, "CREATE INDEX …", comment, 1)


CURRENT = marker("p1", INDEX.definition_hash)


def sqls(steps) -> list[str]:
    return [s for step in steps for s in step.statements]


def test_missing_index_is_built_concurrently_then_marked():
    steps = plan.plan_index(INDEX, catalog())
    assert sqls(steps) == [
        'CREATE INDEX CONCURRENTLY "idx_ev" ON "public"."message_events" USING btree ("user_id", "created_at" DESC)'
        ' INCLUDE ("status") WHERE direction = \'inbound\'',
        f'COMMENT ON INDEX "public"."idx_ev" IS \'{CURRENT}\'',
    ]
    assert steps[0].long_running and "5,000,000 rows" in steps[0].why


def test_converged_index_needs_nothing():
    assert plan.plan_index(INDEX, catalog(indexes={"public.idx_ev": index_fact(comment=CURRENT)})) == []


def test_invalid_index_is_dropped_and_rebuilt():
    steps = plan.plan_index(INDEX, catalog(indexes={"public.idx_ev": index_fact(valid=False, comment=None)}))
    assert sqls(steps)[0] == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_ev"'
    assert sqls(steps)[1].startswith('CREATE INDEX CONCURRENTLY "idx_ev"')
    assert "INVALID" in steps[0].why


@pytest.mark.parametrize("old_comment", ["pgconverge:p1:0000000000000000", None, "hand-made"])
def test_changed_or_unmarked_index_is_rebuilt_beside_then_swapped(old_comment):
    steps = plan.plan_index(INDEX, catalog(indexes={"public.idx_ev": index_fact(comment=old_comment)}))
    statements = sqls(steps)
    assert statements[0].startswith('CREATE INDEX CONCURRENTLY "idx_ev_pgc_new"')
    assert statements[1] == f'COMMENT ON INDEX "public"."idx_ev_pgc_new" IS \'{CURRENT}\''
    assert steps[2].transactional and steps[2].statements == (
        'ALTER INDEX "public"."idx_ev" RENAME TO "idx_ev_pgc_old"',
        'ALTER INDEX "public"."idx_ev_pgc_new" RENAME TO "idx_ev"',
    )
    assert statements[4] == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_ev_pgc_old"'


def test_interrupted_swap_leaves_retired_index_that_is_dropped():
    retired = index_fact("idx_ev_pgc_old", comment="pgconverge:p1:0000000000000000")
    steps = plan.plan_index(INDEX, catalog(indexes={"public.idx_ev": index_fact(comment=CURRENT),
                                                    "public.idx_ev_pgc_old": retired}))
    assert sqls(steps) == ['DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_ev_pgc_old"']


def test_interrupted_rebuild_with_current_temp_is_finished_by_rename():
    tmp = index_fact("idx_ev_pgc_new", comment=CURRENT)
    steps = plan.plan_index(INDEX, catalog(indexes={"public.idx_ev_pgc_new": tmp}))
    assert sqls(steps) == ['ALTER INDEX "public"."idx_ev_pgc_new" RENAME TO "idx_ev"']


def test_interrupted_rebuild_with_invalid_temp_drops_it_first():
    tmp = index_fact("idx_ev_pgc_new", valid=False)
    steps = plan.plan_index(INDEX, catalog(indexes={"public.idx_ev": index_fact(comment=CURRENT), "public.idx_ev_pgc_new": tmp}))
    assert sqls(steps) == ['DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_ev_pgc_new"']


def test_absent_index_is_dropped_in_one_converge_ours_or_the_applications():
    absent = replace(INDEX, state="absent")
    assert sqls(plan.plan_index(absent, catalog(indexes={"public.idx_ev": index_fact(comment=CURRENT)}))) == [
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_ev"']
    # naming the application's own index with state: absent is an explicit order (it took adopt, then absent)
    hand_made = plan.plan_index(absent, catalog(indexes={"public.idx_ev": index_fact(comment="hand-made")}))
    assert sqls(hand_made) == ['DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_ev"']
    assert "not created by pgconverge, named in phases.yml" in hand_made[0].why
    assert plan.plan_index(absent, catalog()) == []


def test_index_name_with_quote_is_quoted_not_injected():
    evil = replace(INDEX, name='x"y')
    assert '"x""y"' in plan.plan_index(evil, catalog())[0].statements[0]


def test_missing_view_built_with_unique_index_and_revokes_in_one_transaction():
    steps = plan.plan_matview(VIEW, catalog(), [REVOKE])
    assert len(steps) == 1 and steps[0].transactional and steps[0].long_running
    statements = steps[0].statements
    assert statements[0] == 'CREATE MATERIALIZED VIEW "public"."mv_hot" AS SELECT id, user_id FROM leads WITH DATA'
    assert statements[1] == 'CREATE UNIQUE INDEX "mv_hot_key" ON "public"."mv_hot" ("id")'
    assert statements[3:] == ('REVOKE ALL ON TABLE "public"."mv_hot" FROM "anon"',
                              'REVOKE ALL ON TABLE "public"."mv_hot" FROM "authenticated"')


def test_changed_view_is_built_beside_and_swapped_in_one_short_transaction():
    fact = MatViewFact("mv_hot", "SELECT 1", "pgconverge:p2:0000000000000000", 5)
    steps = plan.plan_matview(VIEW, catalog(matviews={"public.mv_hot": fact}), [])
    assert steps[0].statements[0].startswith('CREATE MATERIALIZED VIEW "public"."mv_hot_pgc_new"')
    assert steps[1].transactional and steps[1].statements == (
        'ALTER MATERIALIZED VIEW "public"."mv_hot" RENAME TO "mv_hot_pgc_old"',
        'ALTER INDEX IF EXISTS "public"."mv_hot_key" RENAME TO "mv_hot_pgc_old_key"',
        'ALTER MATERIALIZED VIEW "public"."mv_hot_pgc_new" RENAME TO "mv_hot"',
        'ALTER INDEX "public"."mv_hot_pgc_new_key" RENAME TO "mv_hot_key"',
        'DROP MATERIALIZED VIEW "public"."mv_hot_pgc_old"',
    )
    # a swap that fails for good removes the view built for it
    assert steps[1].on_failure == ('DROP MATERIALIZED VIEW IF EXISTS "public"."mv_hot_pgc_new"',)


def test_current_view_needs_nothing_and_interrupted_swap_is_finished():
    want = marker("p2", VIEW.definition_hash)
    assert plan.plan_matview(VIEW, catalog(matviews={"public.mv_hot": MatViewFact("mv_hot", "", want)}), []) == []
    steps = plan.plan_matview(VIEW, catalog(matviews={"public.mv_hot_pgc_new": MatViewFact("mv_hot_pgc_new", "", want)}), [])
    assert steps[0].statements[0] == 'ALTER MATERIALIZED VIEW "public"."mv_hot_pgc_new" RENAME TO "mv_hot"'


def test_function_created_replaced_or_left():
    want = marker("p3", FUNCTION.definition_hash)
    assert "missing" in plan.plan_function(FUNCTION, catalog())[0].why
    changed = plan.plan_function(FUNCTION, catalog(functions={"public.stats": FunctionFact("stats", "", "pgconverge:p3:1")}))
    assert changed[0].statements[0].startswith("CREATE OR REPLACE FUNCTION stats()")
    assert "age(p.xmin) > 0" in changed[0].statements[1]  # an old overload goes in the same transaction
    assert changed[0].statements[2] == f'COMMENT ON FUNCTION "public"."stats" IS \'{want}\''
    assert plan.plan_function(FUNCTION, catalog(functions={"public.stats": FunctionFact("stats", "", want)})) == []


def test_cron_job_scheduled_rescheduled_or_left():
    assert sqls(plan.plan_cron_job(JOB, catalog())) == [
        "SELECT cron.schedule('refresh-hot', '*/15 * * * *', 'SELECT 1;')"]
    same = CronJobFact("refresh-hot", "*/15 * * * *", "SELECT 1;", "salesflow")
    assert plan.plan_cron_job(JOB, catalog(cron_jobs={"refresh-hot": same})) == []
    moved = replace(same, schedule="*/5 * * * *")
    steps = plan.plan_cron_job(JOB, catalog(cron_jobs={"refresh-hot": moved}))
    assert "changed schedule" in steps[0].why
    other_db = replace(JOB, database="reporting")
    assert "schedule_in_database" in plan.plan_cron_job(other_db, catalog())[0].statements[0]
    gone = replace(JOB, state="absent")
    # by id: cron.unschedule(name) finds only the caller's own jobs
    assert sqls(plan.plan_cron_job(gone, catalog(cron_jobs={"refresh-hot": replace(same, jobid=12)}))) == [
        "SELECT cron.unschedule(12::bigint)"]


def test_extension_created_updated_or_left():
    ext = ExtensionSpec("pg_stat_statements", "p1", version="1.10")
    assert plan.plan_extension(ext, catalog())[0].statements[0] == \
        'CREATE EXTENSION IF NOT EXISTS "pg_stat_statements" VERSION \'1.10\''
    old = ExtensionFact("pg_stat_statements", "1.9", "public")
    assert "UPDATE TO '1.10'" in plan.plan_extension(ext, catalog(extensions={"pg_stat_statements": old}))[0].statements[0]
    assert plan.plan_extension(ext, catalog(extensions={"pg_stat_statements": replace(old, version="1.10")})) == []


def test_grants_close_only_the_gap_and_skip_missing_roles():
    acls = {"public.leads": {"anon": frozenset({"SELECT"}), "authenticated": frozenset()}}
    revoke = GrantSpec(("ALL",), "leads", ("anon", "authenticated", "ghost"), "p2", revoke=True)
    assert sqls(plan.plan_grant(revoke, catalog(acls=acls), False)) == [
        'REVOKE SELECT ON TABLE "public"."leads" FROM "anon"']
    grant = GrantSpec(("SELECT",), "leads", ("authenticated", "PUBLIC"), "p2")
    assert sqls(plan.plan_grant(grant, catalog(acls=acls), False)) == [
        'GRANT SELECT ON TABLE "public"."leads" TO "authenticated"', 'GRANT SELECT ON TABLE "public"."leads" TO PUBLIC']
    assert grant_notes(revoke, catalog(), set()) == ["role 'ghost' does not exist here: leads privileges for it skipped"]


def spec_of(*phases: Phase) -> Spec:
    return Spec("phases.yml", "sql", Settings(), phases)


P1 = Phase("p1", "one", objects={"indexes": (INDEX,), "extensions": (ExtensionSpec("pg_stat_statements", "p1"),)})
P2 = Phase("p2", "two", requires=("p1",), objects={"materialized_views": (VIEW,), "cron_jobs": (JOB,),
                                                   "grants": (REVOKE,)})
P3 = Phase("p3", "three", requires=("p2",), objects={"functions": (FUNCTION,)})


def test_phase_order_objects_before_grants_and_jobs():
    result = plan.plan(spec_of(P1, P2, P3), catalog(), ["p1", "p2", "p3"])
    objects = [s.object for s in result.steps]
    assert objects.index("index idx_ev") < objects.index("materialized view mv_hot") < objects.index("function stats")
    assert objects[-1] == "cron job refresh-hot" or objects.index("cron job refresh-hot") > objects.index(
        "materialized view mv_hot")
    # the new view's revokes ride in its build transaction, not as separate steps
    assert not any(s.object == "privileges on mv_hot" for s in result.steps)


def test_rollback_latest_phase_first_and_only_marked_objects():
    marked = catalog(
        indexes={"public.idx_ev": index_fact(comment=CURRENT), "public.idx_hand": index_fact("idx_hand", comment=None)},
        matviews={"public.mv_hot": MatViewFact("mv_hot", "", "pgconverge:p2:x")},
        functions={"public.stats": FunctionFact("stats", "", "pgconverge:p3:x", marked_overloads=(("", "pgconverge:p3:x"),))},
        cron_jobs={"refresh-hot": CronJobFact("refresh-hot", "*/15 * * * *", "SELECT 1;", "salesflow")},
        extensions={"pg_stat_statements": ExtensionFact("pg_stat_statements", "1.10", "public", "someone else's")},
    )
    steps = plan.plan_rollback(spec_of(P1, P2, P3), marked, "p1")
    assert [s.object for s in steps.steps] == [
        "function stats()", "cron job refresh-hot", "materialized view mv_hot", "index idx_ev"]
    assert [s.object for s in plan.plan_rollback(spec_of(P1, P2, P3), marked, "p3").steps] == ["function stats()"]


def test_undeclared_managed_objects_are_reported_not_removed():
    stray = catalog(indexes={"public.idx_old": index_fact("idx_old", comment="pgconverge:p1:abc")})
    result = plan.plan(spec_of(P1), stray, ["p1"])
    assert not any("idx_old" in s.sql for s in result.steps)
    assert any("index public.idx_old carries pgconverge:p1:abc but is not declared" in n for n in result.notes)


def test_new_function_is_executable_by_its_owner_only_from_the_moment_it_exists():
    steps = plan.plan_phase(P3, catalog(), ("anon", "authenticated"))
    assert len(steps.steps) == 1 and steps.steps[0].transactional
    assert {s for s in steps.steps[0].statements if s.startswith("REVOKE")} == {
        'REVOKE EXECUTE ON FUNCTION "public"."stats" FROM PUBLIC',
        'REVOKE EXECUTE ON FUNCTION "public"."stats" FROM "anon"',
        'REVOKE EXECUTE ON FUNCTION "public"."stats" FROM "authenticated"'}


def test_existing_function_executable_by_public_is_revoked_unless_granted():
    want = marker("p3", FUNCTION.definition_hash)
    existing = catalog(functions={"public.stats": FunctionFact("stats", "", want)},
                       acls={"public.stats": {"PUBLIC": frozenset({"EXECUTE"}), "salesflow": frozenset({"EXECUTE"})}})
    assert sqls(plan.plan_phase(P3, existing, ("anon",)).steps) == [
        'REVOKE EXECUTE ON FUNCTION "public"."stats" FROM PUBLIC']
    granted = replace(P3, objects={**P3.objects, "grants": (GrantSpec(("EXECUTE",), "stats", ("PUBLIC",), "p3"),)})
    assert plan.plan_phase(granted, existing, ("anon",)).steps == ()


def test_index_elements_a_dba_writes_and_any_schema():
    index = IndexSpec("idx_title_trgm", "reporting.Deals", (
        IndexColumn("expr:lower(title)", element="lower(title) extensions.gin_trgm_ops"),), "p1",
        method="gin", schema="reporting", storage=(("fastupdate", "off"),))
    steps = plan.plan_index(index, catalog())
    assert sqls(steps) == [
        'CREATE INDEX CONCURRENTLY "idx_title_trgm" ON "reporting"."Deals" USING gin'
        ' (lower(title) extensions.gin_trgm_ops) WITH ("fastupdate" = \'off\')',
        f'COMMENT ON INDEX "reporting"."idx_title_trgm" IS \'{marker("p1", index.definition_hash)}\'']
    done = catalog(indexes={"reporting.idx_title_trgm": index_fact("idx_title_trgm", table="Deals",
                                                                 comment=marker("p1", index.definition_hash))})
    assert plan.plan_index(index, done) == []
    assert plan.plan_index(index, catalog(indexes={"public.idx_title_trgm": index_fact(
        "idx_title_trgm", comment=marker("p1", index.definition_hash))}))[0].long_running


# Canonical comparison: catalog values as PostgreSQL 15 prints them (pg_get_indexdef, pg_get_viewdef, pg_proc).

LIVE_INDEX = "CREATE INDEX idx_ev ON public.message_events USING btree (user_id, created_at DESC) INCLUDE (status)" \
             " WHERE (direction = 'inbound'::text)"
DECLARED_INDEX = "USING btree (user_id, created_at DESC) INCLUDE (status) WHERE (direction = 'inbound'::text)"


def test_canonical_index_ignores_names_only():
    from pgconverge.facts import canonical_index

    assert canonical_index(LIVE_INDEX) == DECLARED_INDEX
    assert canonical_index("CREATE UNIQUE INDEX \"Odd\" ON app.\"Tickets\" USING gin (title extensions.gin_trgm_ops)"
                           ) == "UNIQUE USING gin (title extensions.gin_trgm_ops)"
    assert canonical_index("CREATE INDEX i ON ONLY public.p USING btree (a)") == "USING btree (a)"


def desired_of(**kwargs) -> plan.Desired:
    return plan.Desired(**kwargs)


def test_unmarked_index_with_the_declared_definition_is_adopted():
    live = catalog(indexes={"public.idx_ev": IndexFact("idx_ev", "message_events", True, LIVE_INDEX, None, 7)})
    steps = plan.plan_index(INDEX, live, desired_of(definitions={"index": {"public.idx_ev": DECLARED_INDEX}}))
    assert [s.why for s in steps] == ["adopt: the live definition equals the declared one, no build"]
    assert sqls(steps) == [f'COMMENT ON INDEX "public"."idx_ev" IS \'{CURRENT}\'']


def test_marked_index_whose_live_definition_differs_is_rebuilt():
    changed = LIVE_INDEX.replace("created_at DESC", "created_at")
    live = catalog(indexes={"public.idx_ev": IndexFact("idx_ev", "message_events", True, changed, CURRENT, 7)})
    steps = plan.plan_index(INDEX, live, desired_of(definitions={"index": {"public.idx_ev": DECLARED_INDEX}}))
    assert "definition differs: live USING btree (user_id, created_at)" in steps[0].why
    assert steps[0].statements[0].startswith('CREATE INDEX CONCURRENTLY "idx_ev_pgc_new"')


def test_duplicate_of_another_name_is_not_built_and_named():
    other = IndexFact("ev_by_user", "message_events", True, LIVE_INDEX.replace("idx_ev", "ev_by_user"), None, 8)
    live = catalog(indexes={"public.ev_by_user": other})
    result = plan.plan_phase(Phase("p1", "one", objects={"indexes": (INDEX,)}), live, (),
                             desired_of(definitions={"index": {"public.idx_ev": DECLARED_INDEX}}))
    assert result.steps == ()
    assert result.notes[0].startswith("index public.idx_ev not built: public.ev_by_user already has exactly")
    allowed = replace(INDEX, allow_duplicate=True)
    assert plan.plan_index(allowed, live, desired_of(definitions={"index": {"public.idx_ev": DECLARED_INDEX}}))[0].long_running


def test_a_leading_prefix_index_is_named_redundant():
    prefix = IndexFact("ev_user", "message_events", True,
                       "CREATE INDEX ev_user ON public.message_events USING btree (user_id)", None, 9)
    index = replace(INDEX, include=(), where=None)
    steps = plan.plan_index(index, catalog(indexes={"public.ev_user": prefix}),
                            desired_of(definitions={"index": {"public.idx_ev": "USING btree (user_id, created_at DESC)"}}))
    assert "makes public.ev_user redundant" in steps[0].why


VIEWDEF = " SELECT leads.id,\n    leads.user_id\n   FROM leads;"


def test_matview_compared_by_its_live_query():
    want = marker("p2", VIEW.definition_hash)
    same = catalog(matviews={"public.mv_hot": MatViewFact("mv_hot", VIEWDEF, None, 3, "salesflow")})
    adopt = plan.plan_matview(VIEW, same, [], desired_of(definitions={"materialized view": {"public.mv_hot": VIEWDEF}}))
    assert [s.why for s in adopt] == ["adopt: the live query equals the declared one, no rebuild"]
    edited_def = VIEWDEF.replace("leads;", "leads\n  WHERE false;")
    edited = catalog(current_user="salesflow",
                     matviews={"public.mv_hot": MatViewFact("mv_hot", edited_def, want, 3, "postgres")},
                     acls={"public.mv_hot": {"postgres": frozenset({"SELECT"}), "reporting": frozenset({"SELECT"})}},
                     roles=ROLES | {"reporting", "postgres"})
    steps = plan.plan_matview(VIEW, edited, [REVOKE], desired_of(definitions={"materialized view": {"public.mv_hot": VIEWDEF}}))
    assert "the live query differs from the declared one" in steps[0].why
    swap = steps[1].statements
    owned = plan.plan_phase(Phase("p2", "two", objects={"materialized_views": (VIEW,), "grants": (REVOKE,)}),
                            replace(edited, current_user="postgres", schema_owners={"public": "salesflow"}), (),
                            desired_of(definitions={"materialized view": {"public.mv_hot": VIEWDEF}}))
    # a superuser's run: the view belongs to the schema's owner again, and is rebuilt as that owner
    assert [(s.why, s.run_as) for s in owned.steps][0] == ("owned by postgres, belongs to salesflow", None)
    assert {s.run_as for s in owned.steps[1:]} == {"salesflow"}
    assert 'GRANT SELECT ON TABLE "public"."mv_hot_pgc_new" TO "reporting"' in swap
    assert swap.index('REVOKE ALL ON TABLE "public"."mv_hot_pgc_new" FROM "anon"') < swap.index(
        'ALTER MATERIALIZED VIEW "public"."mv_hot" RENAME TO "mv_hot_pgc_old"')


SHAPE = plan.FunctionShape("", "integer", "SELECT 1", "v", False, ("search_path=public",), True)


def test_function_compared_by_body_security_and_settings_and_overloads_left_alone():
    want = marker("p3", FUNCTION.definition_hash)
    fact = catalog(functions={"public.stats": FunctionFact("stats", "", want)})
    assert plan.plan_function(FUNCTION, fact, (), desired_of(definitions={"function": {
        "public.stats": FunctionRendering(SHAPE, (SHAPE,))}})) == []
    definer = replace(SHAPE, security_definer=True)
    hand = plan.FunctionShape("x bigint", "integer", "SELECT 2", "v", False, (), False)
    steps = plan.plan_function(FUNCTION, fact, (), desired_of(definitions={"function": {
        "public.stats": FunctionRendering(SHAPE, (definer, hand))}}))
    assert "live SECURITY DEFINER differ from the declared" in steps[0].why
    assert "other overloads not ours, left alone: stats(x bigint)" in steps[0].why
    assert "obj_description(p.oid, 'pg_proc') LIKE 'pgconverge:%'" in steps[0].statements[1]
    assert steps[0].statements[2] == f'COMMENT ON FUNCTION "public"."stats"() IS \'{want}\''


def test_inactive_cron_job_is_switched_on():
    off = CronJobFact("refresh-hot", "*/15 * * * *", "SELECT 1;", "salesflow", active=False, jobid=4)
    steps = plan.plan_cron_job(JOB, catalog(database="salesflow", cron_jobs={"refresh-hot": off}))
    assert sqls(steps) == ["SELECT cron.unschedule(4)",
                           "SELECT cron.schedule('refresh-hot', '*/15 * * * *', 'SELECT 1;')"]
    assert steps[0].transactional and "inactive (active = false)" in steps[0].why


def test_extension_compared_by_schema_and_moved_when_relocatable():
    ext = ExtensionSpec("pg_stat_statements", "p1", schema="extensions")
    in_public = ExtensionFact("pg_stat_statements", "1.10", "public", None, True)
    assert sqls(plan.plan_extension(ext, catalog(extensions={"pg_stat_statements": in_public}))) == [
        'CREATE SCHEMA IF NOT EXISTS "extensions"', 'ALTER EXTENSION "pg_stat_statements" SET SCHEMA "extensions"']
    assert plan.plan_extension(ext, catalog(extensions={"pg_stat_statements": replace(in_public, schema="extensions")})
                               ) == []
    cron = ExtensionSpec("pg_cron", "p2", schema="pg_catalog")
    stuck = ExtensionFact("pg_cron", "1.4-1", "public", None, False)
    result = plan.plan_phase(Phase("p2", "two", objects={"extensions": (cron,)}), catalog(extensions={"pg_cron": stuck}))
    assert result.steps == () and "cannot be moved (not relocatable)" in result.notes[0]
    assert sqls(plan.plan_extension(cron, catalog())) == [
        'CREATE EXTENSION IF NOT EXISTS "pg_cron" WITH SCHEMA "pg_catalog"',
        f'COMMENT ON EXTENSION "pg_cron" IS \'{marker("p2", "extension")}\'']


def test_an_index_left_on_a_renamed_table_is_rebuilt_on_the_declared_one():
    """Blue/green: ALTER TABLE message_events RENAME TO message_events_old, a new message_events in its place."""
    swapped = catalog(indexes={"public.idx_ev": index_fact(comment=CURRENT, table="message_events_old")})
    steps = plan.plan_index(INDEX, swapped)
    assert [s.statements[0].split(" ON ")[0] for s in steps] == [
        'CREATE INDEX CONCURRENTLY "idx_ev_pgc_new"', 'COMMENT', 'ALTER INDEX "public"."idx_ev" RENAME TO "idx_ev_pgc_old"',
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_ev_pgc_old"']
    assert "sits on table message_events_old, declared on message_events" in steps[0].why
    assert steps[-1].why == "drop the one left on message_events_old concurrently" and steps[-1].concurrent
