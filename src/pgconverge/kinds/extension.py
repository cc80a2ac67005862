"""Extensions: the catalog query, schema and version compared, created or moved, rollback."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..model import (
    Action,
    Catalog,
    ExtensionFact,
    Lock,
    Step,
    comment_sql,
    is_managed,
    of_kind,
    render,
)
from ..spec import Builder, marker
from .kind import Kind, PlanContext, Planned, RenderContext


@dataclass(frozen=True)
class ExtensionSpec:
    name: str
    phase: str
    schema: str | None = None
    version: str | None = None
    state: str = "present"
    project: str = ""

    @property
    def key(self) -> str:
        return self.name  # one per database: its name is its identity


def build_extension(b: Builder, e: dict, at: tuple, phase: str) -> ExtensionSpec:
    name = b.identifier(e["name"], (*at, "name"), "extension name")
    b.unique_name("extension", name, (*at, "name"))
    if "schema" in e:
        b.identifier(e["schema"], (*at, "schema"), "schema")
    return ExtensionSpec(name=name, phase=phase, project=b.project, schema=e.get("schema"), version=e.get("version"),
                         state=e.get("state", "present"))


def read_extensions(conn: psycopg.Connection) -> dict[str, ExtensionFact]:
    rows = conn.execute(
        """
        SELECT e.extname, e.extversion, n.nspname, obj_description(e.oid, 'pg_extension'), e.extrelocatable,
               pg_has_role(e.extowner, 'USAGE'), pg_get_userbyid(e.extowner)
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        """
    ).fetchall()
    return {r[0]: ExtensionFact(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows}


@of_kind("extension")
def plan_extension(extension: ExtensionSpec, catalog: Catalog) -> list[Step]:
    fact = catalog.extensions.get(extension.name)
    label = f"extension {extension.name}"
    ident = sql.Identifier(extension.name)
    if extension.state == "absent":
        if fact and is_managed(fact.comment):
            return [Step((render(sql.SQL("DROP EXTENSION IF EXISTS {}").format(ident)),), "declared absent", label,
                         Lock.ACCESS_EXCLUSIVE, extension.phase, action=Action.DROP)]
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
        want = marker(extension.phase, "extension", extension.project)
        return [Step((*before, render(statement), comment_sql("EXTENSION", ident, want)), "missing", label, Lock.NONE,
                     extension.phase, transactional=True, action=Action.CREATE)]
    steps = []
    if extension.schema and fact.schema != extension.schema and fact.relocatable and fact.movable:
        create = () if extension.schema in ("pg_catalog", "public") else (render(sql.SQL(
            "CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(extension.schema))),)
        steps.append(Step((*create, render(sql.SQL("ALTER EXTENSION {} SET SCHEMA {}").format(
                               ident, sql.Identifier(extension.schema)))),
                          f"in schema {fact.schema}, declared in {extension.schema}", label, Lock.ACCESS_EXCLUSIVE,
                          extension.phase, transactional=True, action=Action.ALTER))
    if extension.version and fact.version != extension.version:
        steps.append(Step((render(sql.SQL("ALTER EXTENSION {} UPDATE TO {}").format(
            ident, sql.Literal(extension.version))),), f"version {fact.version} → {extension.version}", label, Lock.NONE,
            extension.phase, action=Action.ALTER))
    return steps


@of_kind("extension")
def rollback_extension(extension: ExtensionSpec, catalog: Catalog, phase_id: str) -> list[Step]:
    extension_fact = catalog.extensions.get(extension.name)
    if not (extension_fact and is_managed(extension_fact.comment)):
        return []
    return [Step((render(sql.SQL("DROP EXTENSION IF EXISTS {}").format(sql.Identifier(extension.name))),),
                 "rollback", f"extension {extension.name}", Lock.ACCESS_EXCLUSIVE, phase_id, action=Action.DROP)]


def render_extension(conn: psycopg.Connection, extension: ExtensionSpec, number: int, context: RenderContext) -> None:
    """Created in the rolled-back probe when still to be made in this run: the indexes rendered after it may need
    its operator classes (the apply says why it cannot be created, if so)."""
    if extension.state == "present" and extension.name not in context.catalog.extensions:
        statement = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension.name))
        if extension.schema:
            statement += sql.SQL(" WITH SCHEMA {}").format(sql.Identifier(extension.schema))
        conn.execute(statement)


def _plan(extension: ExtensionSpec, catalog: Catalog, context: PlanContext) -> Planned:
    steps = tuple(plan_extension(extension, catalog))
    fact = catalog.extensions.get(extension.name)
    if extension.state != "present" or not fact or not extension.schema or fact.schema == extension.schema:
        return Planned(steps)
    if not fact.relocatable:
        return Planned(steps, notes=(
            f"extension {extension.name} is in schema {fact.schema}, declared in {extension.schema}, and cannot be"
            " moved (not relocatable): drop and re-create it there when nothing depends on it",))
    if not fact.movable:  # it works where it is; moving it is the owner's (a superuser's) job, not a reason to stop
        return Planned(steps, unrepairable=(
            f"extension {extension.name} is in schema {fact.schema}, declared in {extension.schema}; it belongs to"
            f" {fact.owner} and {catalog.current_user} may not move it — left where it is; a superuser runs: ALTER"
            f" EXTENSION {extension.name} SET SCHEMA {extension.schema}",))
    return Planned(steps)


EXTENSION = Kind(name="extension", section="extensions", plan=_plan, rollback=rollback_extension, owned=False,
                 build=build_extension, render=render_extension,
                 marked=False, read=read_extensions, facts_field="extensions",
                 stand_in=lambda extension, mark: ExtensionFact(extension.name, "", extension.schema or "", mark))
