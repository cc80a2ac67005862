"""Spec + Catalog → ordered Steps. Pure: no I/O, so every drift case is unit-tested with hand-written catalogs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from psycopg import sql

from .facts import Catalog, Desired, FunctionShape, canonical_index, is_managed
from .spec import (
    CronJobSpec,
    ExtensionSpec,
    FunctionSpec,
    GrantSpec,
    IndexSpec,
    MatViewSpec,
    Phase,
    Spec,
    marker,
)

TABLE_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"})
FUNCTION_PRIVILEGES = frozenset({"EXECUTE"})
TEMP_SUFFIX = "_pgc_new"
RETIRED_SUFFIX = "_pgc_old"


@dataclass(frozen=True)
class Step:
    """One unit of execution: a single statement, or several that must commit together."""

    statements: tuple[str, ...]
    why: str
    object: str
    lock: str
    phase: str
    transactional: bool = False
    # build: long-running (statement_timeout 0, progress logged); ddl: short lock, retried on lock timeout
    kind: str = "ddl"
    table: str | None = None
    # the role the step runs as (SET ROLE), so new objects belong to their schema's owner whoever connects
    run_as: str | None = None

    @property
    def sql(self) -> str:
        if self.transactional:
            return "BEGIN;\n" + ";\n".join(self.statements) + ";\nCOMMIT;"
        return ";\n".join(self.statements) + ";"


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def render(composable: sql.Composable) -> str:
    return composable.as_string(None)


def temp_name(name: str) -> str:
    return name[: 63 - len(TEMP_SUFFIX)] + TEMP_SUFFIX


def retired_name(name: str) -> str:
    return name[: 63 - len(RETIRED_SUFFIX)] + RETIRED_SUFFIX


def key_index_name(view: str) -> str:
    return view[:59] + "_key"


def qualified(name: str, schema: str) -> sql.Identifier:
    return sql.Identifier(*name.split(".", 1)) if "." in name else sql.Identifier(schema, name)


# Indexes

def create_index_sql(index: IndexSpec, name: str) -> str:
    columns: list[sql.Composable] = []
    for column in index.columns:
        if column.element:
            # checked by pglast to be exactly one index element when phases.yml was loaded
            columns.append(sql.SQL(column.element))
            continue
        part: sql.Composable = sql.Identifier(column.column)
        if column.order:
            part = sql.SQL("{} {}").format(part, sql.SQL(column.order))
        if column.nulls:
            part = sql.SQL("{} NULLS {}").format(part, sql.SQL(column.nulls))
        columns.append(part)
    statement = sql.SQL("CREATE {unique}INDEX CONCURRENTLY {name} ON {table} USING {method} ({columns})").format(
        unique=sql.SQL("UNIQUE " if index.unique else ""),
        name=sql.Identifier(name),
        table=sql.Identifier(index.schema, index.table_name),
        method=sql.SQL(index.method),  # validated: [a-z_][a-z0-9_]*
        columns=sql.SQL(", ").join(columns),
    )
    if index.include:
        statement += sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(map(sql.Identifier, index.include)))
    if index.nulls_not_distinct:
        statement += sql.SQL(" NULLS NOT DISTINCT")
    if index.storage:
        statement += sql.SQL(" WITH ({})").format(sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in index.storage))
    if index.where:
        # The predicate was parsed by pglast as exactly one expression when phases.yml was loaded.
        statement += sql.SQL(" WHERE {}").format(sql.SQL(index.where))
    return render(statement)


def comment_sql(kind: str, name: sql.Composable, text: str | None) -> str:
    return render(sql.SQL("COMMENT ON {} {} IS {}").format(sql.SQL(kind), name, sql.Literal(text)))


def drop_index_sql(name: str, schema: str) -> str:
    return render(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name)))


def _build_index_steps(index: IndexSpec, name: str, schema: str, why: str) -> list[Step]:
    want = marker(index.phase, index.definition_hash)
    return [
        Step((create_index_sql(index, name),), why, f"index {index.name}", "SHARE UPDATE EXCLUSIVE",
             index.phase, kind="build", table=index.table),
        Step((comment_sql("INDEX", sql.Identifier(schema, name), want),), f"mark {name} as managed ({want})",
             f"index {index.name}", "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table),
    ]


def index_duplicates(index: IndexSpec, catalog: Catalog, wanted: str) -> tuple[list[str], list[str]]:
    """Existing indexes on the same table (ours or not) with the declared definition, and those it makes redundant
    (same method and predicate, their columns a leading prefix of the declared ones)."""
    same, redundant = [], []
    method_and_columns = re.match(r"^(?:UNIQUE )?USING (\w+) \((.*?)\)(.*)$", wanted)
    for key, fact in sorted(catalog.indexes.items()):
        if key == index.key or fact.table != index.table_name or not key.startswith(f"{index.schema}."):
            continue
        live = canonical_index(fact.definition)
        if live is None or not fact.valid:
            continue
        if live == wanted:
            same.append(key)
            continue
        other = re.match(r"^USING (\w+) \((.*?)\)(.*)$", live)
        if method_and_columns and other and other.group(1) == method_and_columns.group(1) == "btree" \
                and other.group(3) == "" and method_and_columns.group(3) in ("", other.group(3)) \
                and method_and_columns.group(2).startswith(other.group(2) + ", "):
            redundant.append(key)
    return same, redundant


def plan_index(index: IndexSpec, catalog: Catalog, desired: Desired | None = None) -> list[Step]:
    schema = index.schema
    wanted = (desired or Desired()).indexes.get(index.key)
    fact = catalog.indexes.get(index.key)
    tmp = temp_name(index.name)
    tmp_fact = catalog.indexes.get(f"{schema}.{tmp}")
    retired = retired_name(index.name)
    want = marker(index.phase, index.definition_hash)
    rows = catalog.row_estimates.get(index.table_key, 0)
    label = f"index {index.name}"
    steps: list[Step] = []
    if f"{schema}.{retired}" in catalog.indexes:
        steps.append(Step((drop_index_sql(retired, schema),), f"remove {retired} left by an interrupted swap", label,
                          "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table))

    if index.state == "absent":
        if fact and is_managed(fact.comment):
            steps.append(Step((drop_index_sql(index.name, schema),), "declared absent", label,
                              "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table))
        return steps

    if tmp_fact is not None:
        if fact is None and tmp_fact.valid and tmp_fact.comment == want:
            rename = render(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(schema, tmp), sql.Identifier(index.name)))
            return steps + [Step((rename,), f"finish an interrupted rebuild: {tmp} is built and current", label,
                                 "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table)]
        steps.append(Step((drop_index_sql(tmp, schema),), f"remove {tmp} left by an interrupted rebuild", label,
                          "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table))

    if fact is None:
        same, redundant = index_duplicates(index, catalog, wanted) if wanted else ([], [])
        if same and not index.allow_duplicate:
            return steps  # plan_phase says why in a note
        also = f"; makes {', '.join(redundant)} redundant (a leading prefix of it)" if redundant else ""
        steps += _build_index_steps(index, index.name, schema, f"missing; serves {index.serves or 'declared use'}"
                                    f" (~{rows:,} rows, built concurrently){also}")
    elif not fact.valid:
        steps.append(Step((drop_index_sql(index.name, schema),), "INVALID (a concurrent build failed): drop it",
                          label, "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table))
        steps += _build_index_steps(index, index.name, schema, f"rebuild the INVALID index (~{rows:,} rows)")
    elif wanted and canonical_index(fact.definition) == wanted:
        if fact.comment != want:
            # The live index is exactly the declared one (made by hand from the runbook, or re-declared): mark it.
            why = ("adopt: the live definition equals the declared one, no build" if not is_managed(fact.comment)
                   else f"re-mark: the live definition equals the declared one ({fact.comment} → {want})")
            steps.append(Step((comment_sql("INDEX", sql.Identifier(schema, index.name), want),), why, label,
                              "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table))
    elif fact.comment != want or (wanted and canonical_index(fact.definition) != wanted):
        live = canonical_index(fact.definition)
        reason = (f"definition differs: live {live} ≠ declared {wanted}" if wanted
                  else f"definition changed ({fact.comment} → {want})" if is_managed(fact.comment)
                  else "exists without our marker, so its definition is unknown")
        steps += _build_index_steps(index, tmp, schema, f"{reason}: build the new one beside the old (~{rows:,} rows)")
        # Both renames commit together, so the name always resolves to a usable index.
        swap = (
            render(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(schema, index.name),
                                                                 sql.Identifier(retired))),
            render(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(schema, tmp),
                                                                 sql.Identifier(index.name))),
        )
        steps.append(Step(swap, "swap the new index in under the name, one short transaction", label,
                          "SHARE UPDATE EXCLUSIVE (indexes only)", index.phase, transactional=True, table=index.table))
        steps.append(Step((drop_index_sql(retired, schema),), "old definition replaced: drop it concurrently", label,
                          "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table))
    return steps


# Materialized views

def _matview_build(view: MatViewSpec, name: str, schema: str, grants: Iterable[GrantSpec], catalog: Catalog) -> tuple[str, ...]:
    want = marker(view.phase, view.definition_hash)
    return (
        render(sql.SQL("CREATE MATERIALIZED VIEW {} AS {} WITH DATA").format(
            sql.Identifier(schema, name), sql.SQL(view.query))),
        render(sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
            sql.Identifier(key_index_name(name)), sql.Identifier(schema, name),
            sql.SQL(", ").join(map(sql.Identifier, view.unique_key)))),
        comment_sql("MATERIALIZED VIEW", sql.Identifier(schema, name), want),
        # Privileges go in the same transaction: default privileges (e.g. Supabase's) must never expose a new view.
        *[s for g in grants for s in _grant_statements(g, name, schema, None, False, catalog.roles)],
    )


def carried_over(view: MatViewSpec, fact_owner: str, old_acl: dict[str, frozenset[str]], tmp: str,
                 grants: list[GrantSpec], catalog: Catalog) -> list[str]:
    """What the old view had that phases.yml does not say otherwise: every privilege, given to the new view in the
    swap transaction (then the declared grants and revokes again, which win). The owner is kept because the new
    view is built as the owner (Step.run_as)."""
    target = sql.Identifier(view.schema, tmp)
    statements = []
    for role, privileges in sorted(old_acl.items()):
        if role == fact_owner or not privileges & TABLE_PRIVILEGES or (role not in catalog.roles and role != "PUBLIC"):
            continue
        statements.append(render(sql.SQL("GRANT {} ON TABLE {} TO {}").format(
            sql.SQL(", ".join(sorted(privileges & TABLE_PRIVILEGES))), target,
            sql.SQL("PUBLIC") if role == "PUBLIC" else sql.Identifier(role))))
    return statements + [s for g in grants for s in _grant_statements(g, tmp, view.schema, None, False, catalog.roles)]


def plan_matview(view: MatViewSpec, catalog: Catalog, grants: Iterable[GrantSpec],
                 desired: Desired | None = None) -> list[Step]:
    schema = view.schema
    wanted = (desired or Desired()).matviews.get(view.key)
    fact = catalog.matviews.get(view.key)
    tmp = temp_name(view.name)
    tmp_fact = catalog.matviews.get(f"{schema}.{tmp}")
    want = marker(view.phase, view.definition_hash)
    label = f"materialized view {view.name}"
    grants = list(grants)
    steps: list[Step] = []

    if view.state == "absent":
        if fact and is_managed(fact.comment):
            steps.append(Step((render(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(
                sql.Identifier(schema, view.name))),), "declared absent", label, "ACCESS EXCLUSIVE", view.phase,
                table=view.key))
        return steps

    swap = (
        render(sql.SQL("ALTER MATERIALIZED VIEW {} RENAME TO {}").format(
            sql.Identifier(schema, tmp), sql.Identifier(view.name))),
        render(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            sql.Identifier(schema, key_index_name(tmp)), sql.Identifier(key_index_name(view.name)))),
    )
    if tmp_fact is not None:
        if fact is None and tmp_fact.comment == want:
            return [Step(swap, f"finish an interrupted swap: {tmp} is built and current", label, "ACCESS EXCLUSIVE",
                         view.phase, transactional=True, table=f"{schema}.{tmp}")]
        steps.append(Step((render(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(sql.Identifier(schema, tmp))),),
                          f"remove {tmp} left by an interrupted rebuild", label, "ACCESS EXCLUSIVE", view.phase,
                          table=f"{schema}.{tmp}"))

    if fact is None:
        steps.append(Step(_matview_build(view, view.name, schema, grants, catalog),
                          f"missing: build from sql/{view.sql_file} with its unique index", label,
                          "ACCESS EXCLUSIVE (new object only)", view.phase, transactional=True, kind="build"))
    elif wanted and fact.definition == wanted:
        if fact.comment != want:
            why = ("adopt: the live query equals the declared one, no rebuild" if not is_managed(fact.comment)
                   else f"re-mark: the live query equals the declared one ({fact.comment} → {want})")
            steps.append(Step((comment_sql("MATERIALIZED VIEW", sql.Identifier(schema, view.name), want),), why, label,
                              "SHARE UPDATE EXCLUSIVE", view.phase, table=view.key))
    elif fact.comment != want or wanted:
        reason = ("the live query differs from the declared one" if wanted
                  else f"query changed ({fact.comment} → {want})" if is_managed(fact.comment)
                  else "exists without our marker, so its query is unknown")
        steps.append(Step(_matview_build(view, tmp, schema, grants, catalog), f"{reason}: build the new one beside the old",
                          label, "ACCESS EXCLUSIVE (new object only)", view.phase, transactional=True, kind="build"))
        drop_old = render(sql.SQL("DROP MATERIALIZED VIEW {}").format(sql.Identifier(schema, view.name)))
        keep = carried_over(view, fact.owner, catalog.acls.get(view.key, {}), tmp, grants, catalog)
        steps.append(Step((*keep, drop_old, *swap), "swap the new view in with the old one's owner and privileges,"
                          " one short transaction", label, "ACCESS EXCLUSIVE", view.phase, transactional=True,
                          table=view.key))
    return steps


# Functions

def _shape_differences(live: FunctionShape, wanted: FunctionShape) -> list[str]:
    return [what for what, a, b in (("body", live.source, wanted.source), ("result", live.result, wanted.result),
                                    ("volatility", live.volatility, wanted.volatility),
                                    ("SECURITY DEFINER", live.security_definer, wanted.security_definer),
                                    ("settings", live.config, wanted.config)) if a != b]


def _same_shape(live: FunctionShape, wanted: FunctionShape) -> bool:
    return live.arguments == wanted.arguments and not _shape_differences(live, wanted)


def plan_function(function: FunctionSpec, catalog: Catalog, privileges: Iterable[GrantSpec] = (),
                  desired: Desired | None = None) -> list[Step]:
    schema = function.schema
    fact = catalog.functions.get(function.key)
    want = marker(function.phase, function.definition_hash)
    label = f"function {function.name}"
    wanted = (desired or Desired()).functions.get(function.key)
    live = (desired or Desired()).live_functions.get(function.key, ())
    # With the declared signature known, every statement names it: hand-made overloads may share the name.
    target: sql.Composable = sql.Identifier(schema, function.name)
    if wanted:
        target = sql.SQL("{}({})").format(target, sql.SQL(wanted.arguments))
    if function.state == "absent":
        if fact and is_managed(fact.comment):
            return [Step((render(sql.SQL("DROP FUNCTION IF EXISTS {}").format(target)),), "declared absent", label,
                         "ACCESS EXCLUSIVE (function only)", function.phase)]
        return []
    if wanted:
        match = next((shape for shape in live if _same_shape(shape, wanted)), None)
        if match is not None:
            if match.managed and fact is not None and fact.comment == want:
                return []
            why = ("adopt: the live function equals the declared one" if not match.managed
                   else f"re-mark: the live function equals the declared one ({want})")
            return [Step((comment_sql("FUNCTION", target, want),), why, label, "none", function.phase)]
        same_arguments = next((shape for shape in live if shape.arguments == wanted.arguments), None)
        reason = ("missing" if not live else
                  f"live {', '.join(_shape_differences(same_arguments, wanted))} differ from the declared"
                  if same_arguments else f"argument list changed (declared ({wanted.arguments}))")
    elif fact is not None and fact.comment == want:
        return []
    else:
        reason = "missing" if fact is None else (
            f"body changed ({fact.comment} → {want})" if is_managed(fact.comment) else "exists without our marker")
    statements = [function.body.rstrip().rstrip(";")]
    if fact is not None:
        # A changed argument list creates a second overload: drop every other one that is ours (marked); overloads
        # made by hand are not ours and stay.
        statements.append(render(sql.SQL(
            "DO $pgconverge$ DECLARE old regprocedure; BEGIN FOR old IN SELECT p.oid::regprocedure FROM pg_proc p"
            " WHERE p.proname = {} AND p.pronamespace = {}::regnamespace AND age(p.xmin) > 0"
            " AND obj_description(p.oid, 'pg_proc') LIKE 'pgconverge:%'"
            " LOOP EXECUTE format('DROP FUNCTION %s', old); END LOOP; END $pgconverge$").format(
            sql.Literal(function.name), sql.Literal(schema))))
    kept = [s.arguments for s in live if not s.managed and (not wanted or s.arguments != wanted.arguments)]
    if kept:
        reason += f"; other overloads not ours, left alone: {function.name}({'), ('.join(kept)})"
    statements.append(comment_sql("FUNCTION", target, want))
    # In the creating transaction (a changed argument list creates a new function too): nobody but the owner can
    # execute it even for a moment; default privileges (Supabase's for anon) are unknown here, so state them all.
    statements += [s for g in privileges
                   for s in _grant_statements(g, function.name, function.schema, None, True, catalog.roles,
                                              wanted.arguments if wanted else None)]
    return [Step(tuple(statements), f"{reason}: CREATE OR REPLACE from sql/{function.sql_file}", label,
                 "none (replaced atomically)", function.phase, transactional=True)]


# pg_cron jobs

def plan_cron_job(job: CronJobSpec, catalog: Catalog) -> list[Step]:
    fact = catalog.cron_jobs.get(job.name)
    database = job.database or catalog.database
    label = f"cron job {job.name}"
    if job.state == "absent":
        if fact is None:
            return []
        return [Step((render(sql.SQL("SELECT cron.unschedule({})").format(sql.Literal(job.name))),),
                     "declared absent", label, "none", job.phase)]
    if fact and (fact.schedule, fact.command.strip(), fact.database, fact.active) == (
            job.schedule, job.command, database, True):
        return []
    if fact is None:
        reason = "missing"
    else:
        changed = [what for what, old, new in (("schedule", fact.schedule, job.schedule),
                                                ("command", fact.command.strip(), job.command),
                                                ("database", fact.database, database)) if old != new]
        reason = "changed " + ", ".join(changed) if changed else ""
        if not fact.active:
            # cron.schedule keeps a job's active flag and cron.alter_job needs a superuser on pg_cron 1.4: schedule
            # it anew (active) in the same transaction as removing the switched-off one.
            reason = (reason + ", " if reason else "") + "inactive (active = false)"
    if database == catalog.database:
        call = sql.SQL("SELECT cron.schedule({}, {}, {})").format(
            sql.Literal(job.name), sql.Literal(job.schedule), sql.Literal(job.command))
    else:
        call = sql.SQL("SELECT cron.schedule_in_database({}, {}, {}, {})").format(
            sql.Literal(job.name), sql.Literal(job.schedule), sql.Literal(job.command), sql.Literal(database))
    statements = [render(call)]
    if fact is not None and not fact.active:
        statements.insert(0, render(sql.SQL("SELECT cron.unschedule({})").format(sql.Literal(fact.jobid))))
    return [Step(tuple(statements), f"{reason}: schedule '{job.schedule}'", label, "none", job.phase,
                 transactional=len(statements) > 1)]


# Extensions

def plan_extension(extension: ExtensionSpec, catalog: Catalog) -> list[Step]:
    fact = catalog.extensions.get(extension.name)
    label = f"extension {extension.name}"
    ident = sql.Identifier(extension.name)
    if extension.state == "absent":
        if fact and is_managed(fact.comment):
            return [Step((render(sql.SQL("DROP EXTENSION IF EXISTS {}").format(ident)),), "declared absent", label,
                         "ACCESS EXCLUSIVE", extension.phase)]
        return []
    if fact is None:
        statement = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(ident)
        before: list[str] = []
        if extension.schema:
            # Supabase keeps extensions in their own schema, never in the API's public schema.
            if extension.schema not in ("pg_catalog", "public"):
                before.append(render(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(extension.schema))))
            statement += sql.SQL(" WITH SCHEMA {}").format(sql.Identifier(extension.schema))
        if extension.version:
            statement += sql.SQL(" VERSION {}").format(sql.Literal(extension.version))
        want = marker(extension.phase, "extension")
        return [Step((*before, render(statement), comment_sql("EXTENSION", ident, want)), "missing", label, "none",
                     extension.phase, transactional=True)]
    steps = []
    if extension.schema and fact.schema != extension.schema and fact.relocatable:
        create = () if extension.schema in ("pg_catalog", "public") else (render(sql.SQL(
            "CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(extension.schema))),)
        steps.append(Step((*create, render(sql.SQL("ALTER EXTENSION {} SET SCHEMA {}").format(
                               ident, sql.Identifier(extension.schema)))),
                          f"in schema {fact.schema}, declared in {extension.schema}", label, "ACCESS EXCLUSIVE",
                          extension.phase, transactional=True))
    if extension.version and fact.version != extension.version:
        steps.append(Step((render(sql.SQL("ALTER EXTENSION {} UPDATE TO {}").format(
            ident, sql.Literal(extension.version))),), f"version {fact.version} → {extension.version}", label, "none",
            extension.phase))
    return steps


# Grants and revokes

def _grant_statements(grant: GrantSpec, target: str, schema: str, current: dict[str, frozenset[str]] | None,
                      is_function: bool, roles: frozenset[str] | None = None, arguments: str | None = None) -> list[str]:
    """GRANT/REVOKE statements that close the gap; `current` None means unknown (a new view): state every one."""
    universe = FUNCTION_PRIVILEGES if is_function else TABLE_PRIVILEGES
    wanted = universe if "ALL" in grant.privileges else frozenset(grant.privileges) & universe
    statements = []
    for role in grant.roles:
        if roles is not None and role not in roles and role != "PUBLIC":
            continue
        have = (current or {}).get(role, frozenset())
        todo = (wanted & have if grant.revoke else wanted - have) if current is not None else wanted
        if not todo:
            continue
        template = "REVOKE {} ON {} {} FROM {}" if grant.revoke else "GRANT {} ON {} {} TO {}"
        privileges = "ALL" if todo == universe and not is_function else ", ".join(sorted(todo))
        name: sql.Composable = sql.Identifier(schema, target)
        if arguments is not None:
            name = sql.SQL("{}({})").format(name, sql.SQL(arguments))
        statements.append(render(sql.SQL(template).format(
            sql.SQL(privileges), sql.SQL("FUNCTION" if is_function else "TABLE"), name,
            sql.SQL("PUBLIC") if role == "PUBLIC" else sql.Identifier(role))))
    return statements


def function_privileges(function: FunctionSpec, grants: Iterable[GrantSpec], api_roles: Iterable[str]) -> list[GrantSpec]:
    """A managed function is executable by its owner only, unless phases.yml grants it: REVOKE EXECUTE from PUBLIC
    (PostgreSQL's default) and from the API roles (Supabase's default privileges), then the declared grants."""
    declared = [g for g in grants if g.key == function.key]
    granted = {r for g in declared if not g.revoke for r in g.roles}
    implicit = tuple(r for r in ("PUBLIC", *api_roles) if r not in granted)
    revoke = [GrantSpec(("EXECUTE",), function.key, implicit, function.phase, revoke=True, schema=function.schema)]
    return (revoke if implicit else []) + declared


def plan_grant(grant: GrantSpec, catalog: Catalog, is_function: bool, arguments: str | None = None) -> list[Step]:
    target = grant.on.rpartition(".")[2]
    verb = "revoke" if grant.revoke else "grant"
    if grant.key not in catalog.relations and grant.key not in catalog.functions:
        return []
    statements = _grant_statements(grant, target, grant.schema, catalog.acls.get(grant.key, {}), is_function,
                                   catalog.roles, arguments)
    return [Step((s,), f"{verb} {', '.join(grant.privileges)} ({'from' if grant.revoke else 'to'} "
                 f"{', '.join(grant.roles)}) differs from the catalog", f"privileges on {grant.key}", "none", grant.phase)
            for s in statements]


def grant_notes(grant: GrantSpec, catalog: Catalog, created: set[str]) -> list[str]:
    notes = [f"role '{r}' does not exist here: {grant.on} privileges for it skipped"
             for r in grant.roles if r not in catalog.roles and r != "PUBLIC"]
    if grant.key not in catalog.relations and grant.key not in catalog.functions and grant.key not in created:
        notes.append(f"{grant.on} does not exist: its privileges are skipped")
    return notes


# Phases

def ownership_steps(phase: Phase, catalog: Catalog, owner: str | None) -> list[Step]:
    """Managed views and functions that belong to another role than their schema's owner (or settings.owner):
    drift, repaired by ALTER … OWNER TO (as whoever runs: that needs the current owner's rights)."""
    steps = []
    for view in (v for v in phase.materialized_views if v.state == "present"):
        fact = catalog.matviews.get(view.key)
        want = catalog.owner_for(view.schema, owner)
        if fact and fact.owner and fact.owner != want:
            steps.append(Step((render(sql.SQL("ALTER MATERIALIZED VIEW {} OWNER TO {}").format(
                sql.Identifier(view.schema, view.name), sql.Identifier(want))),),
                f"owned by {fact.owner}, belongs to {want}", f"materialized view {view.name}", "ACCESS EXCLUSIVE",
                view.phase, table=view.key))
    for function in (f for f in phase.functions if f.state == "present"):
        function_fact = catalog.functions.get(function.key)
        want = catalog.owner_for(function.schema, owner)
        if function_fact and function_fact.owner and function_fact.owner != want and function_fact.overloads == 1:
            steps.append(Step((render(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(
                sql.Identifier(function.schema, function.name), sql.Identifier(want))),),
                f"owned by {function_fact.owner}, belongs to {want}", f"function {function.name}", "none",
                function.phase))
    return steps


def _as_owner(steps: list[Step], catalog: Catalog, schema: str, owner: str | None) -> list[Step]:
    want = catalog.owner_for(schema, owner)
    return [replace(s, run_as=want) if want != catalog.current_user else s for s in steps]


def plan_phase(phase: Phase, catalog: Catalog, api_roles: tuple[str, ...] = (), desired: Desired | None = None,
               owner: str | None = None) -> Plan:
    """Everything one phase needs, in dependency order; removals first, in reverse order."""
    desired = desired or Desired()
    created = {v.key for v in phase.materialized_views} | {f.key for f in phase.functions}
    steps: list[Step] = []
    removals = [j for j in phase.cron_jobs if j.state == "absent"]
    for job in removals:
        steps += plan_cron_job(job, catalog)
    for function in (f for f in phase.functions if f.state == "absent"):
        steps += plan_function(function, catalog)
    for view in (v for v in phase.materialized_views if v.state == "absent"):
        steps += plan_matview(view, catalog, [])
    for index in (i for i in phase.indexes if i.state == "absent"):
        steps += plan_index(index, catalog)
    notes: list[str] = []
    for extension in phase.extensions:
        steps += plan_extension(extension, catalog)
        fact = catalog.extensions.get(extension.name)
        if fact and extension.schema and fact.schema != extension.schema and not fact.relocatable:
            notes.append(f"extension {extension.name} is in schema {fact.schema}, declared in {extension.schema}, and"
                         " cannot be moved (not relocatable): drop and re-create it there when nothing depends on it")
    for index in (i for i in phase.indexes if i.state == "present"):
        steps += plan_index(index, catalog, desired)
        wanted = desired.indexes.get(index.key)
        if wanted and index.key not in catalog.indexes and not index.allow_duplicate:
            same, _ = index_duplicates(index, catalog, wanted)
            if same:
                notes.append(f"index {index.key} not built: {', '.join(same)} already has exactly this definition"
                             f" ({wanted}) — drop that one, or set allow_duplicate: true")
    steps += ownership_steps(phase, catalog, owner)
    handled: set[str] = set()
    for view in (v for v in phase.materialized_views if v.state == "present"):
        view_steps = _as_owner(plan_matview(view, catalog, [g for g in phase.grants if g.key == view.key], desired),
                               catalog, view.schema, owner)
        if any(s.kind == "build" for s in view_steps):
            handled.add(view.key)  # its privileges were set in the transaction that built it
        steps += view_steps
    privilege_steps: list[Step] = []
    for function in (f for f in phase.functions if f.state == "present"):
        privileges = function_privileges(function, phase.grants, api_roles)
        function_steps = _as_owner(plan_function(function, catalog, privileges, desired), catalog, function.schema,
                                   owner)
        if all(s.statements[0].startswith("COMMENT") for s in function_steps):  # not replaced: compare privileges
            arguments = desired.functions[function.key].arguments if function.key in desired.functions else None
            privilege_steps += _as_owner([s for g in privileges for s in plan_grant(g, catalog, True, arguments)],
                                         catalog, function.schema, owner)
        handled.add(function.key)
        steps += function_steps
    steps += privilege_steps
    for grant in phase.grants:
        notes += grant_notes(grant, catalog, created)
        if grant.key not in handled:
            steps += _as_owner(plan_grant(grant, catalog, grant.key in catalog.functions), catalog, grant.schema, owner)
    for job in (j for j in phase.cron_jobs if j.state == "present"):
        # scheduled as the login (pg_cron shows each role only its own jobs): it runs as the login, which owns
        # or acts for the owner of what the job refreshes
        steps += plan_cron_job(job, catalog)
    return Plan(tuple(steps), tuple(notes))


def plan(spec: Spec, catalog: Catalog, phase_ids: Iterable[str], desired: Desired | None = None) -> Plan:
    steps: list[Step] = []
    notes: list[str] = []
    for phase_id in phase_ids:
        phase_plan = plan_phase(spec.phase(phase_id), catalog, spec.settings.api_roles, desired, spec.settings.owner)
        steps += phase_plan.steps
        notes += phase_plan.notes
    return Plan(tuple(steps), tuple(notes) + tuple(undeclared_notes(spec, catalog)))


def undeclared_notes(spec: Spec, catalog: Catalog) -> list[str]:
    """Objects that carry our marker but are no longer in phases.yml: reported, never removed silently."""
    declared = {i.key for p in spec.phases for i in p.indexes} | {
        v.key for p in spec.phases for v in p.materialized_views} | {
        f.key for p in spec.phases for f in p.functions}
    found = [(f"index {n}", f.comment) for n, f in catalog.indexes.items()] + [
        (f"materialized view {n}", f.comment) for n, f in catalog.matviews.items()] + [
        (f"function {n}", f.comment) for n, f in catalog.functions.items()]
    return [f"{what} carries {comment} but is not declared — remove it with state: absent or a rollback"
            for what, comment in sorted(found)
            if is_managed(comment) and what.split()[-1] not in declared
            and not what.split()[-1].endswith((TEMP_SUFFIX, RETIRED_SUFFIX, "_key"))]


def plan_rollback(spec: Spec, catalog: Catalog, from_phase: str) -> Plan:
    """Undo a phase and every later one, latest first; only objects that carry our marker are touched."""
    steps: list[Step] = []
    for phase in reversed(spec.phases_from(from_phase)):
        for job in phase.cron_jobs:
            if job.name in catalog.cron_jobs:
                steps.append(Step((render(sql.SQL("SELECT cron.unschedule({})").format(sql.Literal(job.name))),),
                                  "rollback", f"cron job {job.name}", "none", phase.id))
        for function in reversed(phase.functions):
            function_fact = catalog.functions.get(function.key)
            if function_fact and is_managed(function_fact.comment):
                steps.append(Step((render(sql.SQL("DROP FUNCTION IF EXISTS {}").format(
                    sql.Identifier(function.schema, function.name))),), "rollback", f"function {function.name}",
                    "ACCESS EXCLUSIVE (function only)", phase.id))
        for view in reversed(phase.materialized_views):
            for name in (view.name, temp_name(view.name)):
                view_fact = catalog.matviews.get(f"{view.schema}.{name}")
                if view_fact and is_managed(view_fact.comment):
                    steps.append(Step((render(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(
                        sql.Identifier(view.schema, name))),), "rollback", f"materialized view {view.name}",
                        "ACCESS EXCLUSIVE", phase.id, table=f"{view.schema}.{name}"))
        for index in reversed(phase.indexes):
            for name in (index.name, temp_name(index.name), retired_name(index.name)):
                index_fact = catalog.indexes.get(f"{index.schema}.{name}")
                if index_fact and (is_managed(index_fact.comment) or (name != index.name and not index_fact.valid)):
                    steps.append(Step((drop_index_sql(name, index.schema),), "rollback", f"index {index.name}",
                                      "SHARE UPDATE EXCLUSIVE", phase.id, table=index.table))
        for extension in phase.extensions:
            extension_fact = catalog.extensions.get(extension.name)
            if extension_fact and is_managed(extension_fact.comment):
                steps.append(Step((render(sql.SQL("DROP EXTENSION IF EXISTS {}").format(
                    sql.Identifier(extension.name))),), "rollback", f"extension {extension.name}", "ACCESS EXCLUSIVE",
                    phase.id))
    return Plan(tuple(steps))
