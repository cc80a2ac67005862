"""Row-level security policies: identity (schema, table, name); compared as the server prints them (pg_policy through
pg_get_expr); a changed policy replaced in one transaction (ALTER POLICY where it can, else DROP + CREATE) so no
request ever runs without it; rollback restores what the policy was before pgconverge touched it, kept in its
comment. Also the checks for policies written the slow way (Supabase's auth_rls_initplan and
multiple_permissive_policies)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..model import USER_SCHEMAS, Action, Catalog, Lock, Step, is_managed, of_kind, render
from ..names import QualifiedName
from ..reads import walk
from ..spec import Builder, digest, marker
from .kind import Kind, PlanContext, RenderContext

COMMANDS = ("ALL", "SELECT", "INSERT", "UPDATE", "DELETE")
# stable calls that PostgreSQL evaluates once per row unless written as a scalar subquery (splinter: auth_rls_initplan)
PER_ROW_CALLS = frozenset({"auth.uid", "auth.jwt", "auth.role", "auth.email", "current_setting"})

POLICIES = """
    SELECT n.nspname, c.relname, p.polname, p.polpermissive,
           CASE WHEN p.polroles = '{0}' THEN ARRAY['public']
                ELSE ARRAY(SELECT rolname::text FROM pg_roles WHERE oid = ANY(p.polroles) ORDER BY rolname) END,
           CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE'
                ELSE 'ALL' END,
           pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid), obj_description(p.oid, 'pg_policy')
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE """


@dataclass(frozen=True)
class PolicySpec:
    table: str  # as the catalog names it (schema default: settings.schema)
    name: str
    phase: str
    schema: str = "public"
    command: str = "ALL"
    roles: tuple[str, ...] = ("public",)
    using: str | None = None
    with_check: str | None = None
    permissive: bool = True
    state: str = "present"
    project: str = ""
    # the application's policies on the same table this one takes the place of (several permissive ones combined):
    # dropped in the transaction that creates it, so no request sees the table with neither
    replaces: tuple[str, ...] = ()

    @property
    def table_key(self) -> QualifiedName:
        return QualifiedName(self.schema, self.table.rpartition(".")[2])

    @property
    def key(self) -> str:
        return policy_key(self.table_key, self.name)

    @property
    def definition_hash(self) -> str:
        return digest({"command": self.command, "roles": sorted(self.roles), "using": self.using,
                       "with_check": self.with_check, "permissive": self.permissive})


@dataclass(frozen=True)
class PolicyFact:
    table: QualifiedName
    name: str
    permissive: bool
    roles: tuple[str, ...]
    command: str
    using: str | None
    with_check: str | None
    comment: str | None = None

    @property
    def table_key(self) -> QualifiedName:
        return self.table

    @property
    def definition(self) -> str:
        return definition_text(self.permissive, self.command, self.roles, self.using, self.with_check)

    @property
    def record(self) -> dict[str, Any]:
        """What pgconverge keeps of it when it first changes it: enough to put it back exactly."""
        return {"permissive": self.permissive, "roles": list(self.roles), "command": self.command,
                "using": self.using, "with_check": self.with_check, "comment": self.comment}


def policy_key(table: str, name: str) -> str:
    return f"{table}:{name}"


def definition_text(permissive: bool, command: str, roles: Iterable[str], using: str | None,
                    with_check: str | None) -> str:
    return (f"AS {'PERMISSIVE' if permissive else 'RESTRICTIVE'} FOR {command} TO {', '.join(sorted(roles))}"
            f" USING ({using or ''}) WITH CHECK ({with_check or ''})")


def _fact(row: Any) -> PolicyFact:
    return PolicyFact(QualifiedName(row[0], row[1]), row[2], row[3], tuple(row[4]), row[5], row[6], row[7], row[8])


def read_policies(conn: psycopg.Connection) -> dict[str, PolicyFact]:
    facts = (_fact(r) for r in conn.execute(POLICIES + USER_SCHEMAS).fetchall())  # type: ignore[operator]
    return {policy_key(f.table, f.name): f for f in facts}


def render_policy(conn: psycopg.Connection, policy: PolicySpec, number: int, context: RenderContext) -> str | None:
    """The declared policy on a temporary copy of its table's columns (the real table is never locked)."""
    if policy.state != "present":
        return None
    probe = sql.Identifier(f"pgconverge_probe_policy_{number}")
    conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {})").format(probe, policy.table_key.identifier))
    conn.execute(create_policy_sql(policy, sql.SQL("pg_temp.") + probe))  # type: ignore[arg-type]
    row = conn.execute(POLICIES + "p.polrelid = to_regclass(%s)",  # type: ignore[operator]
                       [f"pg_temp.pgconverge_probe_policy_{number}"]).fetchone()
    if not row:
        return None
    # a column of the table itself, qualified in a subquery, prints with the probe's name: give it the table's
    real = conn.execute("SELECT quote_ident(%s)", [policy.table_key.name]).fetchone()[0]  # type: ignore[index]
    return re.sub(rf"(?<![\w\"$])pgconverge_probe_policy_{number}\.", f"{real}.", _fact(row).definition)


def _roles(roles: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("PUBLIC") if r.lower() == "public" else sql.Identifier(r) for r in roles)


def _clauses(using: str | None, with_check: str | None) -> sql.Composable:
    parts = [sql.SQL(" USING ({})").format(sql.SQL(using))] if using else []  # type: ignore[arg-type]
    parts += [sql.SQL(" WITH CHECK ({})").format(sql.SQL(with_check))] if with_check else []  # type: ignore[arg-type]
    return sql.Composed(parts)


def create_policy_sql(policy: PolicySpec | PolicyFact, table: sql.Composable | None = None) -> str:
    on = table if table is not None else policy.table_key.identifier
    return render(sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
        sql.Identifier(policy.name), on, sql.SQL("PERMISSIVE" if policy.permissive else "RESTRICTIVE"),
        sql.SQL(policy.command), _roles(policy.roles)) + _clauses(policy.using, policy.with_check))


def _alter_or_replace(live: PolicyFact, wanted: PolicySpec | PolicyFact) -> tuple[str, ...]:
    """ALTER POLICY keeps the policy's identity where it can (roles, USING, WITH CHECK that stay given); its command,
    kind or a clause it loses need DROP + CREATE — in one transaction, so no request sees the table without it."""
    target = sql.SQL("{} ON {}").format(sql.Identifier(live.name), live.table.identifier)
    if (live.command, live.permissive) == (wanted.command, wanted.permissive) and \
            (wanted.using or not live.using) and (wanted.with_check or not live.with_check):
        return (render(sql.SQL("ALTER POLICY {} TO {}").format(target, _roles(wanted.roles))
                       + _clauses(wanted.using, wanted.with_check)),)
    return (render(sql.SQL("DROP POLICY {}").format(target)),
            create_policy_sql(wanted, live.table.identifier))


def _comment(name: str, table: QualifiedName, text: str | None) -> str:
    return render(sql.SQL("COMMENT ON POLICY {} ON {} IS {}").format(sql.Identifier(name), table.identifier,
                                                                     sql.Literal(text)))


def marker_of(comment: str | None) -> str | None:
    return comment.split("\n", 1)[0] if comment else None


def kept(comment: str | None) -> dict[str, Any]:
    """What a managed policy's comment keeps below its marker: the policy as it was, RLS as it was."""
    if not is_managed(comment) or "\n" not in (comment or ""):
        return {}
    try:
        value = json.loads((comment or "").split("\n", 1)[1])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _mark(want: str, record: dict[str, Any]) -> str:
    return want + ("\n" + json.dumps(record, sort_keys=True) if record else "")


def _rls_before(policy: PolicySpec, catalog: Catalog, context: PlanContext) -> dict[str, Any]:
    """When this phase turns RLS on for the policy's table, how it was: rollback turns it back (see
    row_level_security.py)."""
    declared = [r for r in context.declared.get("row_level_security", ()) if r.key == policy.table_key]
    live = catalog.objects.get("row_level_security", {}).get(policy.table_key)
    if declared and live is not None and (live.enabled, live.forced) != (declared[0].enabled, declared[0].forced):
        return {"rls": [live.enabled, live.forced]}
    return {}


@of_kind("policy")
def plan_policy(policy: PolicySpec, catalog: Catalog, context: PlanContext) -> list[Step]:
    fact: PolicyFact | None = catalog.objects.get("policy", {}).get(policy.key)
    label = f"policy {policy.name} on {policy.table_key}"
    table = policy.table_key
    if policy.state == "absent":
        if fact is None:
            return []
        why = "declared absent" + ("" if is_managed(fact.comment) else
                                   ": not created by pgconverge, named in phases.yml (the pre-change backup keeps it)")
        return [Step((render(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(policy.name),
                                                                              table.identifier)),),
                     why, label, Lock.ACCESS_EXCLUSIVE, policy.phase, table=table, action=Action.DROP)]
    want = marker(policy.phase, policy.definition_hash, policy.project)
    wanted = context.desired.definitions.get("policy", {}).get(policy.key)
    live = catalog.objects.get("policy", {})
    gone = [f for name in policy.replaces if (f := live.get(policy_key(table, name)))]
    drops = tuple(render(sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(f.name), table.identifier))
                  for f in gone)
    if fact is None:
        mark = _mark(want, {**_rls_before(policy, catalog, context), **_replaced({}, gone)})
        return [Step((create_policy_sql(policy), *drops, _comment(policy.name, table, mark)),
                     "missing: create" + (f", in place of {_names(gone)} (one transaction)" if gone else ""), label,
                     Lock.ACCESS_EXCLUSIVE, policy.phase, transactional=True, table=table, action=Action.CREATE,
                     undo=render(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(policy.name),
                                                                                  table.identifier)))]
    # the policy as it was before pgconverge first changed it, and RLS as it was: kept across re-marks
    # (recorded when pgconverge first touches it: later drift of RLS is repaired, not taken for how it was)
    record = kept(fact.comment) if is_managed(fact.comment) else \
        {"was": fact.record, **_rls_before(policy, catalog, context)}
    record = _replaced(record, gone)
    same = fact.definition == wanted if wanted else marker_of(fact.comment) == want
    instead = f", in place of {_names(gone)} (one transaction)" if gone else ""
    if same:
        if marker_of(fact.comment) == want and kept(fact.comment) == record and not drops:
            return []
        why = ("adopt: the live policy equals the declared one" if not is_managed(fact.comment)
               else f"re-mark: the live policy equals the declared one ({marker_of(fact.comment)} → {want})")
        return [Step((*drops, _comment(policy.name, table, _mark(want, record))), why + instead, label,
                     Lock.ACCESS_EXCLUSIVE if drops else Lock.NONE, policy.phase, transactional=bool(drops),
                     table=table, action=Action.ALTER if drops else Action.MARK)]
    statements = _alter_or_replace(fact, policy)
    how = "ALTER POLICY in place" if statements[0].startswith("ALTER") else "DROP and CREATE in one transaction"
    return [Step((*statements, *drops, _comment(policy.name, table, _mark(want, record))),
                 f"live policy differs from the declared one ({fact.definition} → {wanted or 'declared'}): {how}"
                 + instead, label, Lock.ACCESS_EXCLUSIVE, policy.phase, transactional=True, table=table,
                 action=Action.ALTER)]


def _names(facts: list[PolicyFact]) -> str:
    return ", ".join(f'"{f.name}"' for f in facts)


def _replaced(record: dict[str, Any], gone: list[PolicyFact]) -> dict[str, Any]:
    """The record with the application's policies this one takes the place of (the first print of each kept)."""
    if not gone:
        return record
    known = {r["name"] for r in record.get("replaced", [])}
    return {**record, "replaced": [*record.get("replaced", []),
                                   *({"name": f.name, **f.record} for f in gone if f.name not in known)]}


@of_kind("policy")
def rollback_policy(policy: PolicySpec, catalog: Catalog, phase_id: str) -> list[Step]:
    fact: PolicyFact | None = catalog.objects.get("policy", {}).get(policy.key)
    if not (fact and is_managed(fact.comment)):
        return []
    label, table = f"policy {policy.name} on {policy.table_key}", policy.table_key
    record = kept(fact.comment)
    live = catalog.objects.get("policy", {})
    # the application's policies it took the place of: back in the same transaction
    back: list[str] = []
    for r in record.get("replaced", []):
        if policy_key(table, r["name"]) not in live:
            original = _from_record(table, r["name"], r)
            back += [create_policy_sql(original), *([_comment(r["name"], table, original.comment)]
                                                     if original.comment else [])]
    was = record.get("was")
    if isinstance(was, dict):  # the application's own policy before this phase: put back exactly as it was
        original = _from_record(table, fact.name, was)
        statements = _alter_or_replace(fact, original) if fact.definition != original.definition else ()
        return [Step((*statements, *back, _comment(fact.name, table, original.comment)),
                     "rollback: the policy as it was before pgconverge", label,
                     Lock.ACCESS_EXCLUSIVE if statements or back else Lock.NONE, phase_id, transactional=True,
                     table=table, action=Action.ALTER)]
    return [Step((render(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(policy.name),
                                                                          table.identifier)), *back),
                 "rollback", label, Lock.ACCESS_EXCLUSIVE, phase_id, transactional=bool(back), table=table,
                 action=Action.DROP)]


def _from_record(table: QualifiedName, name: str, r: dict[str, Any]) -> PolicyFact:
    return PolicyFact(table, name, r["permissive"], tuple(r["roles"]), r["command"], r["using"], r["with_check"],
                      r.get("comment"))


def per_row_calls(expression: str | None) -> list[str]:
    """Stable calls outside any subquery: evaluated for every row the policy filters (auth_rls_initplan)."""
    if not expression:
        return []
    import pglast
    from pglast import ast

    try:
        tree = pglast.parse_sql(f"SELECT 1 WHERE {expression}")
    except pglast.parser.ParseError:
        return []
    # once per statement: a call that is all of a scalar subquery without FROM, `(select auth.uid())`; a call inside
    # a subquery that reads a table runs for each of that table's rows
    inside = {id(n) for link in walk(tree) if isinstance(link, ast.SubLink)
              and isinstance(link.subselect, ast.SelectStmt) and not link.subselect.fromClause
              for n in walk(link.subselect)}
    found = []
    for node in walk(tree):
        if isinstance(node, ast.FuncCall) and id(node) not in inside:
            name = ".".join(part.sval for part in node.funcname or ())
            if name.removeprefix("pg_catalog.") in PER_ROW_CALLS:
                found.append(name.removeprefix("pg_catalog."))
    return sorted(set(found))


def wrapped(expression: str, calls: Iterable[str]) -> str:
    """The rewrite to declare: each per-row call as a scalar subquery, evaluated once per statement."""
    for call in calls:
        expression = re.sub(rf"(?<![\w.(]){re.escape(call)}\s*\(([^()]*)\)", rf"(select {call}(\1))", expression)
    return expression


def slow_policy_notes(policies: Iterable[PolicySpec | PolicyFact], where: str = "") -> list[str]:
    """Policies written the slow way, each with the rewrite to declare."""
    notes = []
    for policy in policies:
        table = policy.table_key
        for clause, expression in (("using", policy.using), ("with_check", policy.with_check)):
            calls = per_row_calls(expression)
            if calls and expression:
                notes.append(f"{where}policy {policy.name} on {table} calls {', '.join(c + '()' for c in calls)} for"
                             f" every row in {clause} — declare {clause}: \"{wrapped(expression, calls)}\" (evaluated"
                             " once per statement as an InitPlan)")
    commands = {"ALL": COMMANDS[1:]}
    shared: dict[tuple[str, str, str], list[str]] = {}
    for policy in policies:
        if policy.permissive:
            on = policy.table_key
            for role in policy.roles:
                for command in commands.get(policy.command, (policy.command,)):
                    shared.setdefault((str(on), role, command), []).append(policy.name)
    for (on_table, role, command), names in sorted(shared.items()):
        if len(names) > 1:
            notes.append(f"{where}table {on_table}: {len(names)} permissive policies for {role} on {command}"
                         f" ({', '.join(sorted(names))}) are each evaluated for every row — combine them into one"
                         " policy whose using joins theirs with OR, and declare the others state: absent")
    return notes


def phase_notes(policies: tuple[PolicySpec, ...], catalog: Catalog | None) -> list[str]:
    """The declared policies, and (with a catalog) every policy their tables will have after the phase."""
    present = [p for p in policies if p.state == "present"]
    if catalog is None:
        return slow_policy_notes(present)
    declared = {p.key for p in policies} | {policy_key(p.table_key, n) for p in present for n in p.replaces}
    tables = {p.table_key for p in policies}
    others = [f for key, f in catalog.objects.get("policy", {}).items() if f.table in tables and key not in declared]
    return slow_policy_notes([*present, *others])


def build_policy(b: Builder, p: dict, at: tuple, phase: str) -> PolicySpec:
    table = p["table"]
    schema, bare = b.table(table, (*at, "table"))
    name = p["name"]
    b.unique_name("policy", f"{schema}.{bare}:{name}", (*at, "name"))
    command = p.get("command", "ALL").upper()
    roles = tuple(r if r.lower() == "public" else b.identifier(r, (*at, "roles", i), "role")
                  for i, r in enumerate(p.get("roles", ["public"])))
    for clause in ("using", "with_check"):
        if p.get(clause) is not None:
            statements = b.parse_sql(f"SELECT 1 WHERE ({p[clause]})", (*at, clause), f"policy {name}'s {clause}")
            if len(statements) != 1:
                raise b.fail((*at, clause), f"policy {name}'s {clause} must be one expression — remove ';'")
    if command in ("SELECT", "DELETE") and p.get("with_check"):
        raise b.fail((*at, "with_check"), f"a {command} policy has no WITH CHECK — remove with_check or use"
                     " command ALL/INSERT/UPDATE")
    if command == "INSERT" and p.get("using"):
        raise b.fail((*at, "using"), "an INSERT policy has no USING — write the condition as with_check")
    if p.get("state", "present") == "present" and not p.get("using") and not p.get("with_check"):
        raise b.fail((*at, "name"), f"policy {name} needs using or with_check — the rows it lets through")
    replaces = tuple(p.get("replaces", []))
    if name in replaces:
        raise b.fail((*at, "replaces"), f"policy {name} replaces itself — list the other policies it takes the"
                     " place of")
    return PolicySpec(table=table, name=name, phase=phase, schema=schema, command=command, roles=roles,
                      using=p.get("using"), with_check=p.get("with_check"), replaces=replaces,
                      permissive=p.get("as", "permissive") == "permissive", state=p.get("state", "present"),
                      project=b.project)


POLICY = Kind(name="policy", section="policies", read=read_policies, render=render_policy, plan=plan_policy,
              rollback=rollback_policy, build=build_policy, notes=phase_notes,
              stand_in=lambda p, mark: PolicyFact(p.table_key, p.name, p.permissive, p.roles, p.command, None, None,
                                                  mark))
