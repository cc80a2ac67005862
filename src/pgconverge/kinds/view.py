"""Plain views: the catalog query, the comparison by pg_get_viewdef and options, created with their privileges in
one transaction, replaced in place (CREATE OR REPLACE keeps grants and the views on it), rollback."""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..model import USER_SCHEMAS, Action, Catalog, Lock, Step, comment_sql, is_managed, of_kind, render
from ..reads import relations_read
from ..spec import Builder, SchemaObject, digest, marker
from .kind import Kind, PlanContext, RenderContext
from .privileges import grant_statements


@dataclass(frozen=True)
class ViewSpec(SchemaObject):
    """A plain view: its query, its options; owner and grants as for materialized views."""

    name: str
    sql_file: str
    query: str
    phase: str
    security_invoker: bool = False
    security_barrier: bool = False
    state: str = "present"
    schema: str = "public"
    project: str = ""

    @property
    def source(self) -> str:
        return f"sql/{self.sql_file}" if self.sql_file else "its inline query"

    @property
    def options(self) -> tuple[str, ...]:
        """As pg_class.reloptions prints them."""
        return tuple(f"{option}=true" for option, on in (("security_invoker", self.security_invoker),
                                                         ("security_barrier", self.security_barrier)) if on)

    @property
    def definition_hash(self) -> str:
        return digest({"query": self.query, "options": list(self.options)})


def build_view(b: Builder, v: dict, at: tuple, phase: str) -> ViewSpec:
    schema, name = b.declared_name(v, at, "view", "relation")
    # a file under sql/, or the query itself (as params: takes either)
    in_file = re.fullmatch(r"[\w./-]+\.sql", v["sql"]) is not None
    query = (b.sql_file(v["sql"], (*at, "sql")) if in_file else v["sql"]).strip().rstrip(";").strip()
    source = f"sql/{v['sql']}" if in_file else f"the query of view {name}"
    b.one_select(query, at, source)
    return ViewSpec(name=name, sql_file=v["sql"] if in_file else "", query=query, phase=phase, project=b.project, schema=schema,
                    security_invoker=v.get("security_invoker", False), security_barrier=v.get("security_barrier", False),
                    state=v.get("state", "present"))


@dataclass(frozen=True)
class ViewFact:
    name: str
    definition: str
    options: tuple[str, ...] = ()
    comment: str | None = None
    owner: str = ""


def read_views(conn: psycopg.Connection) -> dict[str, ViewFact]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname, c.relname, pg_get_viewdef(c.oid), coalesce(c.reloptions, '{}'),
               obj_description(c.oid, 'pg_class'), pg_get_userbyid(c.relowner)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'v' AND """ + USER_SCHEMAS,
    ).fetchall()
    return {r[0]: ViewFact(r[1], r[2], tuple(r[3]), r[4], r[5]) for r in rows}


def printed_query(conn: psycopg.Connection, query: str, probe: str) -> str | None:
    """A query as pg_get_viewdef prints it: a temporary view of it, in the rolled-back probe transaction."""
    conn.execute(sql.SQL("CREATE TEMP VIEW {} AS {}").format(sql.Identifier(probe), sql.SQL(query)))
    row = conn.execute("SELECT pg_get_viewdef(to_regclass(%s))", [f"pg_temp.{probe}"]).fetchone()
    return row[0] if row and row[0] else None


def render_view(conn: psycopg.Connection, view: ViewSpec, number: int, context: RenderContext) -> str | None:
    return printed_query(conn, view.query, f"pgconverge_probe_plain_view_{number}") if view.state == "present" \
        else None


def create_view_sql(view: ViewSpec, replace: bool = False) -> str:
    statement = sql.SQL("CREATE {}VIEW {}").format(sql.SQL("OR REPLACE " if replace else ""),
                                                   sql.Identifier(view.schema, view.name))
    if view.options:  # OR REPLACE resets the options it is not given: always give them all
        statement += sql.SQL(" WITH ({})").format(sql.SQL(", ").join(
            sql.SQL("{} = true").format(sql.Identifier(o.split("=")[0])) for o in view.options))
    return render(statement + sql.SQL(" AS {}").format(sql.SQL(view.query)))


@of_kind("view")
def plan_view(view: ViewSpec, catalog: Catalog, context: PlanContext) -> list[Step]:
    fact: ViewFact | None = catalog.objects.get("view", {}).get(view.key)
    want = marker(view.phase, view.definition_hash, view.project)
    wanted = context.desired.definitions.get("view", {}).get(view.key)
    label, target = f"view {view.name}", sql.Identifier(view.schema, view.name)
    if view.state == "absent":
        if fact is None:
            return []
        why = "declared absent" if is_managed(fact.comment) else \
            "declared absent: not created by pgconverge, named in phases.yml"
        return [Step((render(sql.SQL("DROP VIEW IF EXISTS {}").format(target)),), why, label, Lock.ACCESS_EXCLUSIVE,
                     view.phase, table=view.key, action=Action.DROP)]
    mark = comment_sql("VIEW", target, want)
    if fact is None:
        # its privileges in the creating transaction: default privileges (Supabase's) must never expose it
        grants = [s for g in context.grants if g.key == view.key
                  for s in grant_statements(g, view.name, view.schema, None, False, catalog.roles)]
        return [Step((create_view_sql(view), mark, *grants), f"missing: create from {view.source}", label,
                     Lock.ACCESS_EXCLUSIVE, view.phase, transactional=True, action=Action.CREATE,
                     lock_scope="new object only", undo=render(sql.SQL("DROP VIEW IF EXISTS {}").format(target)))]
    owner = catalog.owner_for(view.schema, context.owner)
    # drift of its owner: given back (as whoever runs, which needs the current owner's rights)
    give_back = [Step((render(sql.SQL("ALTER VIEW {} OWNER TO {}").format(target, sql.Identifier(owner))),),
                      f"owned by {fact.owner}, belongs to {owner}", label, Lock.ACCESS_EXCLUSIVE, view.phase,
                      table=view.key, action=Action.ALTER)] if fact.owner and fact.owner != owner else []
    same_query = fact.definition == wanted if wanted else fact.comment == want
    if same_query and set(fact.options) == set(view.options):
        if fact.comment == want:
            return give_back
        why = ("adopt: the live view equals the declared one" if not is_managed(fact.comment)
               else f"re-mark: the live view equals the declared one ({fact.comment} → {want})")
        return [Step((mark,), why, label, Lock.SHARE_UPDATE_EXCLUSIVE, view.phase, table=view.key,
                     action=Action.MARK), *give_back]
    differs = [what for what, differ in (("query", not same_query),
                                         ("options", set(fact.options) != set(view.options))) if differ]
    return [Step((create_view_sql(view, replace=True), mark),
                 f"live {' and '.join(differs)} differ from the declared: CREATE OR REPLACE keeps its grants, owner"
                 " and the views on it", label, Lock.ACCESS_EXCLUSIVE, view.phase, transactional=True,
                 table=view.key, action=Action.ALTER), *give_back]


@of_kind("view")
def rollback_view(view: ViewSpec, catalog: Catalog, phase_id: str) -> list[Step]:
    fact = catalog.objects.get("view", {}).get(view.key)
    if not (fact and is_managed(fact.comment)):
        return []
    return [Step((render(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(view.schema, view.name))),),
                 "rollback", f"view {view.name}", Lock.ACCESS_EXCLUSIVE, phase_id, table=view.key, action=Action.DROP)]


# after the new views and materialized views of its phase that it reads
VIEW = Kind(name="view", section="views", read=read_views, render=render_view, plan=plan_view,
            rollback=rollback_view, build=build_view, stand_in=lambda view, mark: ViewFact(view.name, "", (), mark),
            after=lambda view: relations_read(view.query), provides=True)
