"""Row-level security of a table (enabled, forced) as its own planned object. In the registry after the policies:
switched on after the table's declared policies exist, and on rollback switched back before they are removed —
never a moment with RLS on and the declared policies missing (every request denied), or the reverse. How it was
before is kept in the comment of the table's managed policies (policy.py): rollback restores that, and leaves RLS
alone on a table where nothing of pgconverge's switched it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..model import USER_SCHEMAS, Action, Catalog, Lock, Step, is_managed, of_kind, render
from ..names import QualifiedName
from ..spec import Builder
from .kind import Kind, PlanContext
from .policy import kept


@dataclass(frozen=True)
class RowSecuritySpec:
    table: str
    phase: str
    schema: str = "public"
    enabled: bool = True
    forced: bool = False
    state: str = "present"  # present: as declared; there is no absent (declare enabled: false)

    @property
    def key(self) -> QualifiedName:
        return QualifiedName(self.schema, self.table.rpartition(".")[2])

    @property
    def name(self) -> str:
        return self.key.name


@dataclass(frozen=True)
class RowSecurityFact:
    enabled: bool
    forced: bool
    comment: str | None = None  # it carries no marker: provenance sits on the table's policies


def read_row_security(conn: psycopg.Connection) -> dict[str, RowSecurityFact]:
    rows = conn.execute(
        "SELECT n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND " + USER_SCHEMAS).fetchall()
    return {QualifiedName(r[0], r[1]): RowSecurityFact(r[2], r[3]) for r in rows}


def _statements(table: QualifiedName, enabled: bool, forced: bool, live: RowSecurityFact | None) -> tuple[str, ...]:
    statements = []
    if live is None or live.enabled != enabled:
        statements.append(render(sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY").format(
            table.identifier, sql.SQL("ENABLE" if enabled else "DISABLE"))))
    if live is None or live.forced != forced:
        statements.append(render(sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY").format(
            table.identifier, sql.SQL("FORCE" if forced else "NO FORCE"))))
    return tuple(statements)


def _state(enabled: bool, forced: bool) -> str:
    return ("on" if enabled else "off") + (", forced" if forced else "")


@of_kind("row level security")
def plan_row_security(rls: RowSecuritySpec, catalog: Catalog, context: PlanContext) -> list[Step]:
    live = catalog.objects.get("row_level_security", {}).get(rls.key)
    if live is None:
        return [Step(_statements(rls.key, rls.enabled, rls.forced, None), "declared; the table is not here yet",
                     f"row level security on {rls.key}", Lock.ACCESS_EXCLUSIVE, rls.phase, transactional=True,
                     table=rls.key, action=Action.ALTER)]
    statements = _statements(rls.key, rls.enabled, rls.forced, live)
    if not statements:
        return []
    return [Step(statements, f"{_state(live.enabled, live.forced)} → {_state(rls.enabled, rls.forced)}"
                 " (after the table's declared policies)", f"row level security on {rls.key}", Lock.ACCESS_EXCLUSIVE,
                 rls.phase, transactional=True, table=rls.key, action=Action.ALTER)]


def switched_by_us(table: QualifiedName, catalog: Catalog) -> list[Any] | None:
    """RLS as it was before a managed policy of this table recorded it: None when nothing of ours switched it."""
    for policy in catalog.objects.get("policy", {}).values():
        if policy.table == table and is_managed(policy.comment) and isinstance(kept(policy.comment).get("rls"), list):
            return list(kept(policy.comment)["rls"])
    return None


@of_kind("row level security")
def rollback_row_security(rls: RowSecuritySpec, catalog: Catalog, phase_id: str) -> list[Step]:
    before = switched_by_us(rls.key, catalog)
    live = catalog.objects.get("row_level_security", {}).get(rls.key)
    if before is None or live is None:
        return []
    statements = _statements(rls.key, bool(before[0]), bool(before[1]), live)
    return [Step(statements, f"rollback: {_state(live.enabled, live.forced)} → {_state(before[0], before[1])} as it"
                 " was, before the table's managed policies go", f"row level security on {rls.key}",
                 Lock.ACCESS_EXCLUSIVE, phase_id, transactional=True, table=rls.key, action=Action.ALTER)] \
        if statements else []


def build_row_security(b: Builder, r: dict, at: tuple, phase: str) -> RowSecuritySpec:
    table = r["table"]
    schema, bare = b.table(table, (*at, "table"))
    b.unique_name("row level security", f"{schema}.{bare}", (*at, "table"))
    if r.get("forced") and not r.get("enabled", True):
        raise b.fail((*at, "forced"), "forced needs enabled: true — RLS that is off cannot be forced")
    return RowSecuritySpec(table=table, phase=phase, schema=schema, enabled=r.get("enabled", True),
                           forced=r.get("forced", False))


ROW_LEVEL_SECURITY = Kind(name="row_level_security", section="row_level_security", read=read_row_security,
                          plan=plan_row_security,
                          rollback=rollback_row_security, build=build_row_security,
                          stand_in=lambda rls, mark: RowSecurityFact(rls.enabled, rls.forced))
