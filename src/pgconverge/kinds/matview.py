"""Materialized views: the catalog query, the comparison by pg_get_viewdef, build beside and swap with the
old view's privileges, rollback."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from ..model import (
    TABLE_PRIVILEGES,
    USER_SCHEMAS,
    Action,
    Catalog,
    DependentFact,
    Desired,
    Lock,
    MatViewFact,
    Step,
    comment_sql,
    is_managed,
    key_index_name,
    of_kind,
    render,
    retired_name,
    temp_name,
)
from ..names import QualifiedName
from ..reads import relations_read
from ..spec import Builder, SchemaObject, digest, marker
from .kind import Kind, PlanContext, Planned, RenderContext, as_owner
from .privileges import GrantSpec, grant_statements
from .view import printed_query


@dataclass(frozen=True)
class MatViewSpec(SchemaObject):
    name: str
    sql_file: str
    query: str
    phase: str
    unique_key: tuple[str, ...] = ()
    state: str = "present"
    schema: str = "public"
    project: str = ""

    @property
    def definition_hash(self) -> str:
        return digest({"query": self.query, "unique_key": list(self.unique_key)})


def build_matview(b: Builder, m: dict, at: tuple, phase: str) -> MatViewSpec:
    schema, name = b.declared_name(m, at, "materialized view", "relation")
    query = b.sql_file(m["sql"], (*at, "sql")).strip().rstrip(";").strip()
    b.one_select(query, at, f"sql/{m['sql']}")
    key = tuple(b.identifier(c, (*at, "unique_key", i), "unique key column") for i, c in enumerate(m.get("unique_key", [])))
    state = m.get("state", "present")
    if state == "present" and not key:
        raise b.fail((*at, "name"), f"materialized view '{name}' needs unique_key — REFRESH CONCURRENTLY requires it")
    return MatViewSpec(name=name, sql_file=m["sql"], query=query, phase=phase, project=b.project, unique_key=key, state=state,
                       schema=schema)


def read_matviews(conn: psycopg.Connection) -> dict[str, MatViewFact]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname, pg_get_viewdef(c.oid), obj_description(c.oid, 'pg_class'), c.oid::bigint,
               pg_get_userbyid(c.relowner)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'm' AND """ + USER_SCHEMAS,
    ).fetchall()
    return {QualifiedName.parse(r[0]): MatViewFact(QualifiedName.parse(r[0]).name, r[1], r[2], r[3], r[4])
            for r in rows}


def read_dependents(conn: psycopg.Connection) -> dict[str, tuple[DependentFact, ...]]:
    """Direct dependents of every materialized view: views and materialized views (through their rewrite rule) and
    functions with a SQL-standard body. Definitions are printed with an empty search path, so every name is
    qualified and means the same object when the view is re-created inside the swap."""
    before = conn.execute("SELECT current_setting('search_path')").fetchone()[0]  # type: ignore[index]
    conn.execute("SET search_path = pg_catalog")
    try:
        rows = conn.execute(
            """
            SELECT DISTINCT mn.nspname || '.' || m.relname, vn.nspname || '.' || v.relname,
                   CASE v.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END,
                   CASE v.relkind WHEN 'v' THEN pg_get_viewdef(v.oid) ELSE '' END, coalesce(v.reloptions, '{}')
            FROM pg_class m JOIN pg_namespace mn ON mn.oid = m.relnamespace
            JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = m.oid
                            AND d.classid = 'pg_rewrite'::regclass
            JOIN pg_rewrite r ON r.oid = d.objid
            JOIN pg_class v ON v.oid = r.ev_class AND v.oid <> m.oid
            JOIN pg_namespace vn ON vn.oid = v.relnamespace
            WHERE m.relkind = 'm'
            UNION
            SELECT DISTINCT mn.nspname || '.' || m.relname, pn.nspname || '.' || p.proname
                            || '(' || pg_get_function_identity_arguments(p.oid) || ')', 'function', '', '{}'::text[]
            FROM pg_class m JOIN pg_namespace mn ON mn.oid = m.relnamespace
            JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = m.oid
                            AND d.classid = 'pg_proc'::regclass
            JOIN pg_proc p ON p.oid = d.objid JOIN pg_namespace pn ON pn.oid = p.pronamespace
            WHERE m.relkind = 'm'
            ORDER BY 1, 2
            """).fetchall()
    finally:
        conn.execute("SELECT set_config('search_path', %s, false)", [before])
    dependents: dict[str, tuple[DependentFact, ...]] = {}
    for view, key, kind, definition, options in rows:
        dependents[view] = (*dependents.get(view, ()), DependentFact(key, kind, definition, tuple(options)))
    return dependents


def repoint_sql(dependent: DependentFact) -> str:
    """CREATE OR REPLACE keeps the view's oid, owner, privileges and comments (and views on it); its options are
    given again because OR REPLACE resets what it is not told."""
    options = [option.split("=", 1) for option in dependent.options]
    statement = sql.SQL("CREATE OR REPLACE VIEW {}").format(QualifiedName.parse(dependent.key).identifier)
    if options:
        statement += sql.SQL(" WITH ({})").format(sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in options))
    return render(statement + sql.SQL(" AS {}").format(sql.SQL(dependent.definition.rstrip().rstrip(";"))))


def swap_refusal(view: MatViewSpec, catalog: Catalog) -> str | None:
    """Dependents a swap cannot carry over: the plan stops before anything is built."""
    blocking = [f"{d.kind} {d.key}" for d in catalog.dependents.get(view.key, ()) if d.kind != "view"]
    if not blocking:
        return None
    return (f"materialized view {view.key} must be rebuilt, and {', '.join(blocking)} depend(s) on it and cannot be"
            " re-created in the swap — drop or change them first (or declare them as a materialized view / function"
            " of a later phase), then run again; nothing was changed")


def _matview_build(view: MatViewSpec, name: str, schema: str, grants: Iterable[GrantSpec], catalog: Catalog) -> tuple[str, ...]:
    want = marker(view.phase, view.definition_hash, view.project)
    return (
        render(sql.SQL("CREATE MATERIALIZED VIEW {} AS {} WITH DATA").format(
            sql.Identifier(schema, name), sql.SQL(view.query))),
        render(sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
            sql.Identifier(key_index_name(name)), sql.Identifier(schema, name),
            sql.SQL(", ").join(map(sql.Identifier, view.unique_key)))),
        comment_sql("MATERIALIZED VIEW", sql.Identifier(schema, name), want),
        # Privileges go in the same transaction: default privileges (e.g. Supabase's) must never expose a new view.
        *[s for g in grants for s in grant_statements(g, name, schema, None, False, catalog.roles)],
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
    return statements + [s for g in grants for s in grant_statements(g, tmp, view.schema, None, False, catalog.roles)]


@of_kind("materialized view")
def plan_matview(view: MatViewSpec, catalog: Catalog, grants: Iterable[GrantSpec],
                 desired: Desired | None = None) -> list[Step]:
    schema = view.schema
    wanted = (desired or Desired()).definitions.get("materialized view", {}).get(view.key)
    fact = catalog.matviews.get(view.key)
    tmp = temp_name(view.name)
    tmp_fact = catalog.matviews.get(QualifiedName(schema, tmp))
    want = marker(view.phase, view.definition_hash, view.project)
    label = f"materialized view {view.name}"
    grants = list(grants)
    steps: list[Step] = []

    if view.state == "absent":
        if fact and is_managed(fact.comment):
            steps.append(Step((render(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(
                sql.Identifier(schema, view.name))),), "declared absent", label, Lock.ACCESS_EXCLUSIVE, view.phase,
                table=view.key, action=Action.DROP))
        return steps

    swap = (
        render(sql.SQL("ALTER MATERIALIZED VIEW {} RENAME TO {}").format(
            sql.Identifier(schema, tmp), sql.Identifier(view.name))),
        render(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            sql.Identifier(schema, key_index_name(tmp)), sql.Identifier(key_index_name(view.name)))),
    )
    if tmp_fact is not None:
        if fact is None and tmp_fact.comment == want:
            return [Step(swap, f"finish an interrupted swap: {tmp} is built and current", label, Lock.ACCESS_EXCLUSIVE,
                         view.phase, transactional=True, table=QualifiedName(schema, tmp), action=Action.SWAP)]
        steps.append(Step((render(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(sql.Identifier(schema, tmp))),),
                          f"remove {tmp} left by an interrupted rebuild", label, Lock.ACCESS_EXCLUSIVE, view.phase,
                          table=QualifiedName(schema, tmp), action=Action.DROP))

    if fact is None:
        steps.append(Step(_matview_build(view, view.name, schema, grants, catalog),
                          f"missing: build from sql/{view.sql_file} with its unique index", label,
                          Lock.ACCESS_EXCLUSIVE, view.phase, transactional=True, long_running=True, action=Action.BUILD,
                          lock_scope="new object only", undo=render(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(
                              sql.Identifier(schema, view.name)))))
    elif wanted and fact.definition == wanted:
        if fact.comment != want:
            why = ("adopt: the live query equals the declared one, no rebuild" if not is_managed(fact.comment)
                   else f"re-mark: the live query equals the declared one ({fact.comment} → {want})")
            steps.append(Step((comment_sql("MATERIALIZED VIEW", sql.Identifier(schema, view.name), want),), why, label,
                              Lock.SHARE_UPDATE_EXCLUSIVE, view.phase, table=view.key, action=Action.MARK))
    elif fact.comment != want or wanted:
        reason = ("the live query differs from the declared one" if wanted
                  else f"query changed ({fact.comment} → {want})" if is_managed(fact.comment)
                  else "exists without our marker, so its query is unknown")
        steps.append(Step(_matview_build(view, tmp, schema, grants, catalog), f"{reason}: build the new one beside the old",
                          label, Lock.ACCESS_EXCLUSIVE, view.phase, transactional=True, long_running=True, action=Action.BUILD,
                          lock_scope="new object only"))
        old = retired_name(view.name)
        keep = carried_over(view, fact.owner, catalog.acls.get(view.key, {}), tmp, grants, catalog)
        dependents = [d for d in catalog.dependents.get(view.key, ()) if d.kind == "view"]
        # The old view steps aside under another name, the new one takes the name, the views on it are re-pointed
        # (same oid, owner, grants), the old one is dropped: one transaction, nothing in between is visible.
        retire = (render(sql.SQL("ALTER MATERIALIZED VIEW {} RENAME TO {}").format(
                      sql.Identifier(schema, view.name), sql.Identifier(old))),
                  render(sql.SQL("ALTER INDEX IF EXISTS {} RENAME TO {}").format(
                      sql.Identifier(schema, key_index_name(view.name)), sql.Identifier(key_index_name(old)))))
        drop_old = render(sql.SQL("DROP MATERIALIZED VIEW {}").format(sql.Identifier(schema, old)))
        carried = f"; re-points {', '.join(d.key for d in dependents)}" if dependents else ""
        steps.append(Step((*keep, *retire, *swap, *map(repoint_sql, dependents), drop_old),
                          "swap the new view in with the old one's owner and privileges, one short transaction"
                          + carried, label, Lock.ACCESS_EXCLUSIVE, view.phase, transactional=True, table=view.key,
                          action=Action.SWAP, on_failure=(render(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(
                              sql.Identifier(schema, tmp))),)))
    return steps


@of_kind("materialized view")
def rollback_matview(view: MatViewSpec, catalog: Catalog, phase_id: str) -> list[Step]:
    steps = []
    for name in (view.name, temp_name(view.name)):
        view_fact = catalog.matviews.get(QualifiedName(view.schema, name))
        if view_fact and is_managed(view_fact.comment):
            steps.append(Step((render(sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(
                sql.Identifier(view.schema, name))),), "rollback", f"materialized view {view.name}",
                Lock.ACCESS_EXCLUSIVE, phase_id, table=QualifiedName(view.schema, name), action=Action.DROP))
    return steps


def render_matview(conn: psycopg.Connection, view: MatViewSpec, number: int, context: RenderContext) -> str | None:
    """The declared query as pg_get_viewdef prints it (a live materialized view's definition prints the same way)."""
    return printed_query(conn, view.query, f"pgconverge_probe_view_{number}") if view.state == "present" else None


def live_shapes(view: MatViewSpec, empty: Catalog, applied: Catalog) -> list[Step]:
    """For export-sql: the swap with a view of the application on it (re-pointed in the swap transaction)."""
    app_view = DependentFact(view.key.sibling(f"{view.name}_board"), "view", f"SELECT * FROM {view.schema}.{view.name}",
                             ("security_invoker=true",))
    return [s for s in plan_matview(view, replace(applied, dependents={view.key: (app_view,)}), [])
            if s.action == Action.SWAP]


def owner_drift(view: MatViewSpec, catalog: Catalog, owner: str | None) -> list[Step]:
    """A managed view that belongs to another role than its schema's owner (or settings.owner): repaired by ALTER …
    OWNER TO as whoever runs (that needs the current owner's rights)."""
    fact = catalog.matviews.get(view.key)
    want = catalog.owner_for(view.schema, owner)
    if view.state != "present" or not fact or not fact.owner or fact.owner == want:
        return []
    return [Step((render(sql.SQL("ALTER MATERIALIZED VIEW {} OWNER TO {}").format(
        sql.Identifier(view.schema, view.name), sql.Identifier(want))),), f"owned by {fact.owner}, belongs to {want}",
        f"materialized view {view.name}", Lock.ACCESS_EXCLUSIVE, view.phase, table=view.key,
        target="materialized view")]


def _plan(view: MatViewSpec, catalog: Catalog, context: PlanContext) -> Planned:
    if view.state != "present":
        return Planned(tuple(plan_matview(view, catalog, [])))
    steps = as_owner(plan_matview(view, catalog, [g for g in context.grants if g.key == view.key], context.desired),
                     catalog, view.schema, context.owner)
    refusal = swap_refusal(view, catalog) if any(s.action == Action.SWAP for s in steps) else None
    # built: its privileges were set in the transaction that built it
    return Planned((*owner_drift(view, catalog, context.owner), *steps), covered=any(s.long_running for s in steps),
                   refusals=(refusal,) if refusal else ())


# after the new views and materialized views of its phase that it reads
MATVIEW = Kind(name="materialized view", section="materialized_views", plan=_plan, rollback=rollback_matview,
               build=build_matview, render=render_matview, shapes=live_shapes,
               owned=False, provides=True, after=lambda view: relations_read(view.query),
               read=read_matviews, facts_field="matviews",
               stand_in=lambda view, mark: MatViewFact(view.name, "", mark))
