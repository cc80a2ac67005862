"""Privileges: the ACL of every relation and function, grants and revokes that close the gap, a managed
function executable by its owner only unless granted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from ..model import (
    FUNCTION_PRIVILEGES,
    TABLE_PRIVILEGES,
    USER_SCHEMAS,
    Action,
    Catalog,
    Lock,
    Step,
    of_kind,
    render,
)
from ..names import QualifiedName
from ..spec import Builder, split_name
from .kind import Kind, PlanContext, Planned

if TYPE_CHECKING:
    from .function import FunctionSpec


@dataclass(frozen=True)
class GrantSpec:
    privileges: tuple[str, ...]
    on: str
    roles: tuple[str, ...]
    phase: str
    revoke: bool = False
    schema: str = "public"

    @property
    def key(self) -> QualifiedName:
        return QualifiedName(self.schema, self.on.rpartition(".")[2])


def build_grant(b: Builder, g: dict, at: tuple, phase: str) -> GrantSpec:
    revoke = at[-2] == "revokes"  # a revoke is a grant taken away: same target, roles under `from`
    b.identifier(g["on"], (*at, "on"), "grant target", qualified=True)
    roles_key = "from" if revoke else "to"
    roles = tuple(r if r == "PUBLIC" else b.identifier(r, (*at, roles_key, i), "role")
                  for i, r in enumerate(g[roles_key]))
    schema, _ = split_name(g["on"], b.schema)
    return GrantSpec(privileges=tuple(sorted(set(g["privileges"]))), on=g["on"], roles=roles, phase=phase,
                     revoke=revoke, schema=schema)


def read_acls(conn: psycopg.Connection) -> dict[str, dict[str, frozenset[str]]]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
               array_agg(a.privilege_type)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
        WHERE c.relkind IN ('r', 'v', 'm', 'p') AND """ + USER_SCHEMAS + """
        GROUP BY 1, 2
        UNION ALL
        SELECT n.nspname || '.' || p.proname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
               array_agg(a.privilege_type)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
        WHERE """ + USER_SCHEMAS + """
        GROUP BY 1, 2
        """,
    ).fetchall()
    acls: dict[str, dict[str, frozenset[str]]] = {}
    for name, role, privileges in rows:
        acls.setdefault(name, {})[role.strip('"')] = frozenset(privileges)
    return acls


def grant_statements(grant: GrantSpec, target: str, schema: str, current: dict[str, frozenset[str]] | None,
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


@of_kind("privileges")
def plan_grant(grant: GrantSpec, catalog: Catalog, is_function: bool, arguments: str | None = None) -> list[Step]:
    target = grant.on.rpartition(".")[2]
    verb = "revoke" if grant.revoke else "grant"
    if grant.key not in catalog.relations and grant.key not in catalog.functions:
        return []
    statements = grant_statements(grant, target, grant.schema, catalog.acls.get(grant.key, {}), is_function,
                                   catalog.roles, arguments)
    return [Step((s,), f"{verb} {', '.join(grant.privileges)} ({'from' if grant.revoke else 'to'} "
                 f"{', '.join(grant.roles)}) differs from the catalog", f"privileges on {grant.key}", Lock.NONE, grant.phase,
                 action=Action.GRANT) for s in statements]


def grant_notes(grant: GrantSpec, catalog: Catalog, created: set[str]) -> list[str]:
    notes = [f"role '{r}' does not exist here: {grant.on} privileges for it skipped"
             for r in grant.roles if r not in catalog.roles and r != "PUBLIC"]
    if grant.key not in catalog.relations and grant.key not in catalog.functions and grant.key not in created:
        notes.append(f"{grant.on} does not exist: its privileges are skipped")
    return notes


def _plan(grant: GrantSpec, catalog: Catalog, context: PlanContext) -> Planned:
    created = {o.key for kind_objects in context.declared.values() for o in kind_objects if not isinstance(o, GrantSpec)}
    notes = tuple(grant_notes(grant, catalog, created))
    if grant.key in context.covered:  # set in the transaction that created its object
        return Planned(notes=notes)
    return Planned(tuple(plan_grant(grant, catalog, grant.key in catalog.functions)), notes=notes)


# after the object it is on (a view of the phase); the grants of a new object go into the transaction that creates it
PRIVILEGES = Kind(name="privileges", section="grants", plan=_plan, rollback=lambda grant, catalog, phase_id: [],
                  build=build_grant, also_from=("revokes",), after=lambda grant: frozenset({str(grant.key)}),
                  marked=False, read=read_acls, facts_field="acls")
