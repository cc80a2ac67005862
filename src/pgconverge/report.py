"""`pgconverge plan`: what a deploy would do to each database of an inventory, as Markdown (for PRs) or JSON."""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from . import facts, pipeline, plan
from .connection import open_session
from .errors import UserError
from .execute import APPLICATION_NAME, session_statements
from .kinds import REGISTRY
from .model import Action, Lock
from .names import QualifiedName
from .secrets import mask, url_from_env
from .spec import Spec, marker


@dataclass
class HostPlan:
    host: str
    phases: list[tuple[str, plan.Plan]] = field(default_factory=list)
    gates: list[tuple[str, str, str]] = field(default_factory=list)
    error: str | None = None
    risks: dict[str, list[str]] = field(default_factory=dict)  # phase label → the risk of each of its steps


def database_hosts(inventory: Path) -> list[tuple[str, dict[str, Any]]]:
    """Hosts of a pyinfra inventory file that name a database URL variable, with their merged data."""
    if not inventory.is_file():
        raise UserError(f"{inventory}: no such inventory file — pass the path to e.g. inventory/staging.py")
    try:
        namespace = runpy.run_path(str(inventory))
    except SyntaxError as exc:
        raise UserError(f"{inventory}:{exc.lineno}: {exc.msg} — fix the inventory, then run again") from None
    except Exception as exc:  # an inventory is Python: whatever it raises is the user's to fix, in one line
        raise UserError(f"{inventory}: loading it raised {exc.__class__.__name__}: {exc} — fix the inventory,"
                          " then run again") from None
    hosts: dict[str, dict[str, Any]] = {}  # a host in several groups (the lab's @local) is one database
    for group, value in namespace.items():
        if group.startswith("_") or not isinstance(value, list | tuple):
            continue
        entries, group_data = (value[0], value[1]) if isinstance(value, tuple) and len(value) == 2 and isinstance(
            value[1], dict) else (value, {})
        for entry in entries:
            name, data = (entry, {}) if isinstance(entry, str) else (entry[0], entry[1])
            merged = {**hosts.get(name, {}), **group_data, **data}
            if merged.get("database_url_env"):
                hosts[name] = merged
    return list(hosts.items())


def group_hosts(inventory: Path, group: str) -> list[tuple[str, dict[str, Any]]]:
    """The database hosts of one inventory group, with their merged data."""
    namespace = runpy.run_path(str(inventory)) if inventory.is_file() else {}
    value = namespace.get(group)
    if not isinstance(value, list | tuple):
        groups = sorted(k for k, v in namespace.items() if not k.startswith("_") and isinstance(v, list | tuple))
        raise UserError(f"{inventory}: no group '{group}' — the groups are: {', '.join(groups) or 'none'}")
    entries = value[0] if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict) else value
    names = {entry if isinstance(entry, str) else entry[0] for entry in entries}
    return [(name, data) for name, data in database_hosts(inventory) if name in names]


def deploy_phases(spec: Spec, deploy: str, rollback_phase: str | None) -> tuple[str, list[str]]:
    """(mode, phase ids) for a deploy file name: converge, verify or rollback."""
    stem = Path(deploy).stem
    if stem == "all":
        return "converge", [p.id for p in spec.phases]
    if stem == "verify":
        return "verify", [p.id for p in spec.phases]
    if stem == "rollback":
        start = rollback_phase or (spec.phases[0].id if spec.phases else None)
        return "rollback", [p.id for p in spec.phases_from(start)] if start else []
    if stem == "phase":  # the generic deploy: deploys/phase.py --data phase=ID, here --phase ID
        if not rollback_phase:
            raise UserError("deploys/phase.py needs --phase ID (as the deploy needs --data phase=ID)")
        return "converge", [p.id for p in spec.phases_through(rollback_phase)]
    return "converge", [p.id for p in spec.phases_through(stem)]


def risk(step: plan.Step, catalog: facts.Catalog, settings_lock_timeout: str) -> str:
    table = step.table or ""
    rows = catalog.row_estimates.get(QualifiedName.parse(table, catalog.schema), 0)
    if step.action == Action.BUILD_CONCURRENTLY:
        return f"builds concurrently, reads and writes continue; table has ~{rows:,} rows"
    if step.action == Action.BUILD:
        return "builds a new view beside anything in use; the app sees it only when committed"
    if step.lock.queues_writers:
        return f"brief {step.lock} lock, gives up after exclusive_lock_timeout {settings_lock_timeout} and retries"
    if step.action == Action.DROP_CONCURRENTLY:
        return "dropped concurrently, queries are not blocked"
    return "catalog-only change"


def build(spec: Spec, inventory: Path, deploy: str, rollback_phase: str | None = None,
          limit: list[str] | None = None) -> list[HostPlan]:
    mode, phase_ids = deploy_phases(spec, deploy, rollback_phase)
    result = []
    rendered: dict = {}  # the hosts of an inventory share one rendering of each declared index (same shapes)
    hosts = [(n, d) for n, d in database_hosts(inventory) if not limit or any(fnmatch(n, pattern) for pattern in limit)]
    if limit and not hosts:
        raise UserError(f"--limit {' '.join(limit)}: no database host of {inventory} matches — the hosts are: "
                        + ", ".join(n for n, _ in database_hosts(inventory)))
    for name, data in hosts:
        host_plan = HostPlan(name)
        try:
            url = url_from_env(data["database_url_env"], f"host {name}")
            conn = open_session(url, APPLICATION_NAME, f"host {name}")
        except UserError as exc:
            host_plan.error = mask(str(exc))
            result.append(host_plan)
            continue
        try:
            with conn:
                catalog, desired = pipeline.reading(
                    conn, spec, phase_ids if mode == "converge" else (),
                    lambda c, s, ids, known: facts.desired_definitions(c, s, ids, known, rendered))
        except pipeline.DeclaredUnrenderable as exc:
            host_plan.error = mask(f"cannot plan: {exc}".replace(" (nothing was changed)", ""))
            result.append(host_plan)
            continue
        except facts.CatalogUnreadable as exc:
            host_plan.error = mask(f"cannot read the catalog: {exc}")
            result.append(host_plan)
            continue
        if mode == "rollback":
            host_plan.phases.append((f"rollback from {phase_ids[0]}", plan.plan_rollback(spec, catalog, phase_ids[0])))
        elif mode == "converge":
            host_plan.phases += [(pid, plan.plan(spec, catalog, [pid], desired)) for pid in phase_ids]
        refusals = [r for _, p in host_plan.phases for r in p.refusals]
        if refusals:
            host_plan.error = mask("cannot apply: " + "; ".join(refusals))
        if mode != "rollback":
            host_plan.gates = [(pid, g.name, g.kind) for pid in phase_ids for g in spec.phase(pid).gates]
        host_plan.risks = {label: [risk(s, catalog, spec.settings.exclusive_lock_timeout) for s in p.steps]
                           for label, p in host_plan.phases}
        result.append(host_plan)
    return result


def rows(steps: tuple[plan.Step, ...], risks: list[str]) -> list[tuple[plan.Step, str, int]]:
    """One row per change: a build and the marker that follows it for the same object are one row (the step, its
    risk, how many statements the row stands for)."""
    merged: list[tuple[plan.Step, str, int]] = []
    for step, step_risk in zip(steps, risks, strict=True):
        if merged and step.action == Action.MARK and merged[-1][0].object == step.object \
                and merged[-1][0].action in (Action.BUILD_CONCURRENTLY, Action.CREATE, Action.ATTACH):
            merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + 1)
            continue
        merged.append((step, step_risk, 1))
    return merged


def to_markdown(plans: list[HostPlan], deploy: str) -> str:
    lines = [f"## pgconverge plan: `{deploy}`", ""]
    for host_plan in plans:
        lines.append(f"### {host_plan.host}")
        if host_plan.error:
            lines += ["", f"**Cannot plan:** {host_plan.error}", ""]
            continue
        for label, p in host_plan.phases:
            risks, notes = host_plan.risks.get(label, []), list(p.notes)
            lines += ["", f"#### {label}: {len(p.steps)} statement{'s' if len(p.steps) != 1 else ''}"
                      + (" (converged)" if not p.steps else ""), ""]
            if p.steps:
                lines += ["| # | object | reason | lock | risk |", "|---|---|---|---|---|"]
                for i, (step, note, _) in enumerate(rows(p.steps, risks), 1):
                    cells = [str(i), step.object, step.why, step.lock_text, note]
                    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
                lines += ["", "```sql", *[s.sql for s in p.steps], "```"]
            lines += [f"> note: {n}" for n in notes]
        if host_plan.gates:
            lines += ["", "#### gates that will run", ""]
            lines += [f"- `{g}` ({kind}, after {pid})" for pid, g, kind in host_plan.gates]
        lines.append("")
    return mask("\n".join(lines))


def to_json(plans: list[HostPlan], deploy: str) -> str:
    document = {"deploy": deploy, "hosts": [{
        "host": hp.host,
        "error": hp.error,
        "phases": [{
            "phase": label,
            "steps": [{"object": s.object, "why": s.why, "lock": s.lock_text, "risk": r, "sql": s.sql, "phase": s.phase}
                      for s, r in zip(p.steps, hp.risks.get(label, []), strict=True)],
            "notes": list(p.notes),
        } for label, p in hp.phases],
        "gates": [{"phase": pid, "gate": g, "kind": k} for pid, g, k in hp.gates],
    } for hp in plans]}
    return mask(json.dumps(document, indent=2))


def every_statement(spec: Spec) -> str:
    """All SQL pgconverge can generate for this spec, as the executor runs it, for squawk: converging a database
    that has none of the objects, rolling everything back from one that has all of them, and the shapes a live
    database can add (each declared index on a partitioned table, each view rebuilt under a view of the app)."""
    api_roles = frozenset(spec.settings.api_roles)
    empty = facts.Catalog(roles=api_roles, schema=spec.settings.schema)
    converge = plan.plan(spec, empty, [p.id for p in spec.phases]).steps
    mark = marker("x", "x", spec.settings.project)
    # every declared object as if there, keyed as the live catalog is (schema.name), so that every rollback DROP is
    # generated
    stand_ins = {kind: {o.key: kind.stand_in(o, mark) for p in spec.phases for o in kind.declared(p)}
                 for kind in REGISTRY if kind.stand_in}
    fields: dict[str, Any] = {kind.facts_field: objects for kind, objects in stand_ins.items() if kind.facts_field}
    applied = facts.Catalog(
        roles=api_roles,
        schema=spec.settings.schema,
        **fields,
        objects={kind.name: objects for kind, objects in stand_ins.items() if not kind.facts_field},
    )
    rollback = plan.plan_rollback(spec, applied, spec.phases[0].id).steps if spec.phases else ()
    shapes = _live_shapes(spec, empty, applied)
    chunks = []
    for step in (*converge, *rollback, *shapes):
        chunks.append(f"-- {step.phase} {step.object}: {step.why}")
        chunks += [f"{s};" for s in session_statements(spec.settings, step)]
        chunks += ["BEGIN;"] if step.transactional else []
        for statement in step.statements:
            waived = _waivers(step, step in rollback)
            chunks += [f"-- squawk-ignore {', '.join(waived)}"] if waived else []
            chunks.append(f"{statement};")
        chunks += ["COMMIT;"] if step.transactional else []
    return "\n".join(chunks) + "\n"


def _live_shapes(spec: Spec, empty: facts.Catalog, applied: facts.Catalog) -> list[plan.Step]:
    """What a live database can add to a kind's statements (Kind.shapes): an index on a partitioned table, a
    materialized view swapped under a view of the application."""
    return [step for kind in REGISTRY if kind.shapes for p in spec.phases for o in kind.declared(p)
            if o.state == "present" for step in kind.shapes(o, empty, applied)]


def _waivers(step: plan.Step, rolling_back: bool) -> list[str]:
    """Findings that are the point of the step, each with its reason in the code, not in a global config."""
    if step.action == Action.BUILD:
        return ["require-concurrent-index-creation"]  # the view's key index, in the transaction creating the view
    if step.action == Action.CREATE and step.lock == Lock.SHARE:
        # ON ONLY a partitioned table: no rows read, and PostgreSQL refuses CONCURRENTLY there
        return ["require-concurrent-index-creation"]
    if step.action == Action.SWAP:
        # names trade places inside one transaction: clients see the same names before and after it commits
        return ["renaming-object", "ban-drop-view"]
    if step.action == Action.DROP and step.target == "index":
        return ["require-concurrent-index-deletion"]  # a partitioned index: PostgreSQL has no concurrent drop
    if rolling_back and step.action == Action.DROP:
        # rollback removes what the phase added, by definition
        return {"materialized view": ["ban-drop-view"], "view": ["ban-drop-view"],
                "function": ["ban-drop-function"], "extension": ["ban-drop-extension"]}.get(step.target, [])
    return []
