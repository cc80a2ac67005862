"""Functions: the catalog query, the comparison by what pg_proc holds (body, result, volatility, SECURITY,
settings), replace in one transaction leaving overloads that are not ours, rollback."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql

from ..model import (
    USER_SCHEMAS,
    Action,
    Catalog,
    Desired,
    FunctionFact,
    FunctionShape,
    Lock,
    Step,
    comment_sql,
    is_managed,
    marked_project,
    of_kind,
    render,
    seen_fact,
)
from ..names import QualifiedName
from ..spec import Builder, SchemaObject, digest, marker
from .kind import Kind, PlanContext, Planned, RenderContext, as_owner
from .privileges import GrantSpec, function_privileges, grant_statements, plan_grant


@dataclass(frozen=True)
class FunctionSpec(SchemaObject):
    name: str
    sql_file: str
    body: str
    phase: str
    security_definer: bool = False
    state: str = "present"
    schema: str = "public"
    project: str = ""

    @property
    def definition_hash(self) -> str:
        return digest({"body": self.body})


def build_function(b: Builder, f: dict, at: tuple, phase: str) -> FunctionSpec:
    schema, name = b.declared_name(f, at, "function", "function")
    body = b.sql_file(f["sql"], (*at, "sql")).strip()
    statements = b.parse_sql(body, (*at, "sql"), f"sql/{f['sql']}")
    stmt: Any = statements[0].stmt if len(statements) == 1 else None
    if type(stmt).__name__ != "CreateFunctionStmt":
        raise b.fail((*at, "sql"), f"sql/{f['sql']} must hold exactly one CREATE OR REPLACE FUNCTION")
    declared = stmt.funcname[-1].sval
    if declared != name:
        raise b.fail((*at, "name"), f"sql/{f['sql']} creates '{declared}', not '{name}' — make the names agree")
    if not stmt.replace:
        raise b.fail((*at, "sql"), f"sql/{f['sql']}: write CREATE OR REPLACE FUNCTION so a change applies in place")
    options = {o.defname: o.arg for o in (stmt.options or ())}
    if "set" not in options or getattr(options["set"], "name", None) != "search_path":
        raise b.fail((*at, "sql"), f"sql/{f['sql']}: pin the search_path (SET search_path = …) in the function")
    definer = bool(getattr(options.get("security"), "boolval", False))
    if definer != f.get("security_definer", False):
        raise b.fail(
            (*at, "sql"),
            f"sql/{f['sql']} is SECURITY {'DEFINER' if definer else 'INVOKER'} but phases.yml says otherwise"
            " — declare security_definer: true only where it is meant",
        )
    return FunctionSpec(name=name, sql_file=f["sql"], body=body, phase=phase, project=b.project,
                        security_definer=definer, state=f.get("state", "present"), schema=schema)


def read_functions(conn: psycopg.Connection) -> dict[str, FunctionFact]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || p.proname, pg_get_function_identity_arguments(p.oid),
               obj_description(p.oid, 'pg_proc'), p.prosecdef, coalesce(p.proconfig, '{}'), p.oid::bigint,
               count(*) OVER (PARTITION BY p.pronamespace, p.proname), pg_get_userbyid(p.proowner)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind = 'f' AND """ + USER_SCHEMAS + """
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
        """,
    ).fetchall()
    facts: dict[str, FunctionFact] = {}
    # overloads share the key: the one carrying our marker is the fact; every marked signature is remembered
    for r in sorted(rows, key=lambda r: is_managed(r[2])):
        marked = facts[r[0]].marked_overloads if r[0] in facts else ()
        facts[r[0]] = FunctionFact(QualifiedName.parse(r[0]).name, r[1], r[2], r[3], tuple(r[4]), r[5], r[6], r[7],
                                   marked + (((r[1], r[2]),) if is_managed(r[2]) else ()))
    return facts


FUNCTION_SHAPES = """
    SELECT pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid), btrim(p.prosrc, E' \\n\\t;'),
           p.provolatile::text, p.prosecdef, coalesce(p.proconfig, '{}'),
           coalesce(obj_description(p.oid, 'pg_proc') LIKE 'pgconverge:%%', false), p.oid::bigint || ':' || p.xmin::text
    FROM pg_proc p WHERE p.pronamespace = %s::regnamespace AND p.proname = %s
"""


@dataclass(frozen=True)
class FunctionRendering:
    """The declared function as pg_proc holds it once its CREATE ran (None: the CREATE wrote no new row), beside
    every live overload of its name."""

    wanted: FunctionShape | None
    live: tuple[FunctionShape, ...] = ()


def render_function(conn: psycopg.Connection, function: FunctionSpec, number: int,
                    context: RenderContext) -> FunctionRendering | None:
    """Its CREATE run in the rolled-back probe transaction (bodies unchecked), read back from pg_proc."""
    if function.state != "present":
        return None
    live = conn.execute(FUNCTION_SHAPES, [function.schema, function.name]).fetchall()
    conn.execute(function.body.rstrip().rstrip(";"))  # type: ignore[arg-type]
    # the row this statement wrote: a new oid (new signature) or a new version (same oid)
    before = {r[7] for r in live}
    mine = next((r for r in conn.execute(FUNCTION_SHAPES, [function.schema, function.name]).fetchall()
                 if r[7] not in before), None)
    return FunctionRendering(FunctionShape(mine[0], mine[1], mine[2], mine[3], mine[4], tuple(mine[5])) if mine else None,
                             tuple(FunctionShape(r[0], r[1], r[2], r[3], r[4], tuple(r[5]), r[6]) for r in live))


def rendering(desired: Desired | None, function: FunctionSpec) -> FunctionRendering:
    return (desired or Desired()).definitions.get("function", {}).get(function.key) or FunctionRendering(None)


def _shape_differences(live: FunctionShape, wanted: FunctionShape) -> list[str]:
    return [what for what, a, b in (("body", live.source, wanted.source), ("result", live.result, wanted.result),
                                    ("volatility", live.volatility, wanted.volatility),
                                    ("SECURITY DEFINER", live.security_definer, wanted.security_definer),
                                    ("settings", live.config, wanted.config)) if a != b]


def _same_shape(live: FunctionShape, wanted: FunctionShape) -> bool:
    return live.arguments == wanted.arguments and not _shape_differences(live, wanted)


@of_kind("function")
def plan_function(function: FunctionSpec, catalog: Catalog, privileges: Iterable[GrantSpec] = (),
                  desired: Desired | None = None) -> list[Step]:
    schema = function.schema
    fact = catalog.functions.get(function.key)
    want = marker(function.phase, function.definition_hash, function.project)
    label = f"function {function.name}"
    wanted, live = rendering(desired, function).wanted, rendering(desired, function).live
    # With the declared signature known, every statement names it: hand-made overloads may share the name.
    target: sql.Composable = sql.Identifier(schema, function.name)
    if wanted:
        target = sql.SQL("{}({})").format(target, sql.SQL(wanted.arguments))
    if function.state == "absent":
        return _drop_marked(function, fact, "declared absent", function.phase)
    if wanted:
        match = next((shape for shape in live if _same_shape(shape, wanted)), None)
        if match is not None:
            if match.managed and fact is not None and fact.comment == want:
                return []
            why = ("adopt: the live function equals the declared one" if not match.managed
                   else f"re-mark: the live function equals the declared one ({want})")
            return [Step((comment_sql("FUNCTION", target, want),), why, label, Lock.NONE, function.phase,
                         action=Action.MARK)]
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
                   for s in grant_statements(g, function.name, function.schema, None, True, catalog.roles,
                                              wanted.arguments if wanted else None)]
    return [Step(tuple(statements), f"{reason}: CREATE OR REPLACE from sql/{function.sql_file}", label,
                 Lock.NONE, function.phase, transactional=True, action=Action.CREATE, lock_scope="replaced atomically")]


def _drop_marked(function: FunctionSpec, fact: FunctionFact | None, why: str, phase_id: str) -> list[Step]:
    """Every overload carrying our marker, each by its signature: a hand-made overload of the name stays."""
    return [Step((render(sql.SQL("DROP FUNCTION IF EXISTS {}({})").format(
        sql.Identifier(function.schema, function.name), sql.SQL(arguments))),),  # the server's own print of them
        why, f"function {function.name}({arguments})", Lock.ACCESS_EXCLUSIVE, phase_id, action=Action.DROP,
        lock_scope="function only") for arguments, _ in (fact.marked_overloads if fact else ())]


@of_kind("function")
def rollback_function(function: FunctionSpec, catalog: Catalog, phase_id: str) -> list[Step]:
    return _drop_marked(function, catalog.functions.get(function.key), "rollback", phase_id)


def seen_function(fact: FunctionFact, project: str) -> FunctionFact:
    """Only the overloads this project marked are its own (another project may have its overload of the name)."""
    return seen_fact(replace(fact, marked_overloads=tuple(
        (arguments, mark) for arguments, mark in fact.marked_overloads if marked_project(mark) == project)), project)


def owner_drift(function: FunctionSpec, catalog: Catalog, owner: str | None) -> list[Step]:
    """A managed function that belongs to another role than its schema's owner (or settings.owner): repaired by
    ALTER … OWNER TO as whoever runs (that needs the current owner's rights); one overload only (else: which?)."""
    fact = catalog.functions.get(function.key)
    want = catalog.owner_for(function.schema, owner)
    if function.state != "present" or not fact or not fact.owner or fact.owner == want or fact.overloads != 1:
        return []
    return [Step((render(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(
        sql.Identifier(function.schema, function.name), sql.Identifier(want))),),
        f"owned by {fact.owner}, belongs to {want}", f"function {function.name}", Lock.NONE, function.phase,
        target="function")]


def _plan(function: FunctionSpec, catalog: Catalog, context: PlanContext) -> Planned:
    if function.state != "present":
        return Planned(tuple(plan_function(function, catalog)))
    privileges = function_privileges(function, context.grants, context.api_roles)
    steps = as_owner(plan_function(function, catalog, privileges, context.desired), catalog, function.schema,
                     context.owner)
    if all(s.action == Action.MARK for s in steps):  # not replaced: its privileges compared with the catalog
        wanted = rendering(context.desired, function).wanted
        steps += as_owner([s for g in privileges for s in plan_grant(g, catalog, True,
                                                                     wanted.arguments if wanted else None)],
                          catalog, function.schema, context.owner)
    # its privileges are planned here, replaced or not: never again as a grant of the phase
    return Planned((*owner_drift(function, catalog, context.owner), *steps), covered=True)


FUNCTION = Kind(name="function", section="functions", plan=_plan, rollback=rollback_function, owned=False,
                build=build_function, render=render_function,
                provides=True, read=read_functions, facts_field="functions", seen=seen_function,
                stand_in=lambda function, mark: FunctionFact(function.name, "", mark, marked_overloads=(("", mark),)))
