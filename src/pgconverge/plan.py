"""Spec + Catalog → ordered Steps. Pure: no I/O. Each kind (kinds/) plans its own objects and says what each must
come after; this orders them: removals first (latest kind first), then a stable dependency order (kinds/__init__.py
says the order where nothing else decides), rollback in reverse."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from .kinds import REGISTRY, Kind, PlanContext
from .kinds.cron_job import plan_cron_job
from .kinds.extension import plan_extension
from .kinds.function import plan_function
from .kinds.index import create_index_sql, drop_index_sql, plan_index
from .kinds.kind import as_owner, planned
from .kinds.matview import plan_matview
from .kinds.privileges import plan_grant
from .model import (
    RETIRED_SUFFIX,
    TEMP_SUFFIX,
    Catalog,
    Desired,
    FunctionShape,
    Plan,
    Step,
    is_managed,
    marked_project,
    render,
)
from .spec import Phase, Spec

# the kinds' planning functions, for callers that plan one object (the PR plan's shapes, the planner's unit tests)
__all__ = ["Desired", "FunctionShape", "Plan", "Step", "create_index_sql", "drop_index_sql", "plan", "plan_cron_job",
           "plan_extension", "plan_function", "plan_grant", "plan_index", "plan_matview", "plan_phase",
           "plan_rollback", "render"]


def state(obj: Any) -> str:
    return getattr(obj, "state", "present")  # a grant has none: it is always wanted


def dependency_order(objects: list[tuple[Kind, Any]]) -> tuple[list[tuple[Kind, Any]], list[tuple[Kind, Any]]]:
    """A stable topological order: each object after the objects of the list it reads (Kind.after); ties keep the
    list's order (the registry's, then the declaration's). The second list is what a cycle left: never planned."""
    by_key = {str(obj.key): i for i, (kind, obj) in reversed(list(enumerate(objects))) if kind.provides}
    by_name = {obj.name: i for i, (kind, obj) in reversed(list(enumerate(objects))) if kind.provides}
    waiting: dict[int, set[int]] = {}
    for i, (kind, obj) in enumerate(objects):
        found = {by_key.get(name, by_name.get(name)) for name in kind.after(obj)}
        waiting[i] = {j for j in found if j is not None and j != i}
    needed_by: dict[int, list[int]] = {i: [] for i in waiting}
    for i, before in waiting.items():
        for j in before:
            needed_by[j].append(i)
    ready = [i for i, before in waiting.items() if not before]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in needed_by[i]:
            waiting[j].discard(i)
            if not waiting[j]:
                heapq.heappush(ready, j)
    left = sorted(set(waiting) - set(order))
    return [objects[i] for i in order], [objects[i] for i in left]


def plan_phase(phase: Phase, catalog: Catalog, api_roles: tuple[str, ...] = (), desired: Desired | None = None,
               owner: str | None = None) -> Plan:
    """Everything one phase needs: removals first (latest kind first), then every declared object in dependency
    order, each object's plan from its kind."""
    context = PlanContext(desired or Desired(), owner,
                          {kind.name: kind.declared(phase) for kind in REGISTRY}, tuple(api_roles))
    removals = [(kind, o) for kind in reversed(REGISTRY) for o in kind.declared(phase) if state(o) == "absent"]
    present, cycle = dependency_order([(kind, o) for kind in REGISTRY for o in kind.declared(phase)
                                       if state(o) == "present"])
    steps: list[Step] = []
    notes: list[str] = []
    refusals: list[str] = [cycle_refusal(phase, cycle)] if cycle else []
    unrepairable: list[str] = []
    for kind, obj in [*removals, *present]:
        result = planned(kind.plan(obj, catalog, context))
        kind_steps = list(result.steps)
        if kind.owned and state(obj) == "present":
            kind_steps = as_owner(kind_steps, catalog, obj.schema, owner)
        if result.covered:
            context.covered.add(obj.key)
        steps += kind_steps
        notes += result.notes
        refusals += result.refusals
        unrepairable += result.unrepairable
    for kind in REGISTRY:
        notes += kind.notes(kind.declared(phase), catalog)
    return Plan(tuple(steps), tuple(notes), tuple(refusals), tuple(unrepairable))


def cycle_refusal(phase: Phase, cycle: list[tuple[Kind, Any]]) -> str:
    return (f"phase {phase.id}: {', '.join(f'{kind.name} {obj.key}' for kind, obj in cycle)} read each other (a"
            " cycle, or one reads what the cycle makes) — no order can create them; change a query so that one of"
            " them does not read the other; nothing was changed")


def seen_by(catalog: Catalog, project: str) -> Catalog:
    """The catalog as one project sees it: another project's markers are not ours, so never adopted, rolled back
    or reported as undeclared."""
    def seen(kind: Kind) -> dict[str, Any]:
        return {key: kind.seen(fact, project) for key, fact in kind.facts(catalog).items()}
    fields: dict[str, Any] = {kind.facts_field: seen(kind) for kind in REGISTRY if kind.facts_field}
    return replace(catalog, **fields,
                   objects={**catalog.objects, **{kind.name: seen(kind) for kind in REGISTRY if not kind.facts_field}})


def project_conflicts(phase: Phase, catalog: Catalog, project: str) -> list[str]:
    """Declared objects that carry another project's marker: never adopted, rebuilt or dropped by this one."""
    live = [(f"{kind.name} {o.key}", kind.live_objects(catalog).get(o.key)) for kind in REGISTRY
            for o in kind.declared(phase) if kind.marked]
    return [f"{what} belongs to project '{owner or 'default'}' (its marker: {fact.comment}), and this phases.yml"
            f" (project '{project or 'default'}') declares it too in phase {phase.id} — give one of them another"
            " name, or leave it to its project; nothing was changed"
            for what, fact in live
            if fact is not None and (owner := marked_project(fact.comment)) is not None and owner != project]


def plan(spec: Spec, catalog: Catalog, phase_ids: Iterable[str], desired: Desired | None = None) -> Plan:
    steps: list[Step] = []
    notes: list[str] = []
    refusals: list[str] = []
    unrepairable: list[str] = []
    phase_ids = list(phase_ids)
    for phase_id in phase_ids:
        refusals += project_conflicts(spec.phase(phase_id), catalog, spec.settings.project)
    catalog = seen_by(catalog, spec.settings.project)
    for phase_id in phase_ids:
        phase_plan = plan_phase(spec.phase(phase_id), catalog, spec.settings.api_roles, desired, spec.settings.owner)
        steps += phase_plan.steps
        notes += phase_plan.notes
        refusals += phase_plan.refusals
        unrepairable += phase_plan.unrepairable
    return Plan(tuple(steps), tuple(notes) + tuple(undeclared_notes(spec, catalog))
                + tuple(unrendered_notes(desired, catalog)), tuple(refusals), tuple(unrepairable))


def unrendered_notes(desired: Desired | None, catalog: Catalog) -> list[str]:
    """A live object whose declared definition the server could not print here is compared by its marker only:
    say so, with the server's reason, instead of silently trusting the marker."""
    live = {f"{kind.name} {k}" for kind in REGISTRY for k in kind.live_objects(catalog)}
    return [f"{what}: compared by its marker only — the server could not render the declared definition here"
            f" ({why})" for what, why in sorted((desired.unrendered if desired else {}).items()) if what in live]


def undeclared_notes(spec: Spec, catalog: Catalog) -> list[str]:
    """Objects that carry our marker but are no longer in phases.yml: reported, never removed silently."""
    declared = {o.key for p in spec.phases for kind in REGISTRY for o in kind.declared(p) if kind.marked}
    found = [(kind.name, n, f.comment) for kind in REGISTRY for n, f in kind.live_objects(catalog).items()]
    # a key may hold spaces (a policy's name): compared whole, never split from the label
    return [f"{what} {key} carries {(comment or '').splitlines()[0]} but is not declared — remove it with state:"
            " absent or a rollback"
            for what, key, comment in sorted(found)
            if is_managed(comment) and key not in declared and not key.endswith((TEMP_SUFFIX, RETIRED_SUFFIX, "_key"))]


def plan_rollback(spec: Spec, catalog: Catalog, from_phase: str) -> Plan:
    """Undo a phase and every later one, latest first, each phase in the reverse of its dependency order; only
    objects that carry our project's marker are touched."""
    catalog = seen_by(catalog, spec.settings.project)
    steps: list[Step] = []
    refusals: list[str] = []
    rolled_back = {o.key for p in spec.phases_from(from_phase) for kind in REGISTRY for o in kind.declared(p)}
    for phase in reversed(spec.phases_from(from_phase)):
        ordered, cycle = dependency_order([(kind, o) for kind in REGISTRY for o in kind.declared(phase)])
        for kind, obj in reversed(ordered + cycle):
            kind_steps = kind.rollback(obj, catalog, phase.id)
            # what depends on it goes first when this rollback removes it too: only the application's own stop it
            views_on_it = [d.key for d in catalog.dependents.get(obj.key, ()) if d.key not in rolled_back]
            if kind_steps and views_on_it:
                refusals.append(f"rollback would drop {kind.name} {obj.key}, and {', '.join(views_on_it)}"
                                " depend(s) on it — drop those first (they are not pgconverge's), then run again;"
                                " nothing was changed")
            steps += kind_steps
    return Plan(tuple(steps), refusals=tuple(refusals))
