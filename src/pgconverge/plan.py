"""Spec + Catalog → ordered Steps. Pure: no I/O. Each kind (kinds/) plans its own objects; this orders across
kinds: removals first (latest first), then extensions, indexes, views, functions, privileges, cron jobs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from psycopg import sql

from .kinds import REGISTRY, PlanContext
from .kinds.cron_job import plan_cron_job, rollback_cron_job
from .kinds.extension import plan_extension, rollback_extension
from .kinds.function import plan_function, rollback_function
from .kinds.index import (
    create_index_sql,
    drop_index_sql,
    index_duplicates,
    partition_note,
    plan_index,
    rollback_index,
)
from .kinds.matview import plan_matview, rollback_matview, swap_refusal
from .kinds.privileges import function_privileges, grant_notes, plan_grant
from .model import (
    RETIRED_SUFFIX,
    TEMP_SUFFIX,
    Action,
    Catalog,
    Desired,
    FunctionShape,
    Lock,
    Plan,
    Step,
    is_managed,
    marked_project,
    render,
    seen_by,
)
from .reads import relations_read
from .spec import Phase, Spec

__all__ = ["Desired", "FunctionShape", "Plan", "Step", "create_index_sql", "drop_index_sql", "plan", "plan_cron_job",
           "plan_extension", "plan_function", "plan_grant", "plan_index", "plan_matview", "plan_phase",
           "plan_rollback", "render"]


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
                f"owned by {fact.owner}, belongs to {want}", f"materialized view {view.name}", Lock.ACCESS_EXCLUSIVE,
                view.phase, table=view.key, target="materialized view"))
    for function in (f for f in phase.functions if f.state == "present"):
        function_fact = catalog.functions.get(function.key)
        want = catalog.owner_for(function.schema, owner)
        if function_fact and function_fact.owner and function_fact.owner != want and function_fact.overloads == 1:
            steps.append(Step((render(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(
                sql.Identifier(function.schema, function.name), sql.Identifier(want))),),
                f"owned by {function_fact.owner}, belongs to {want}", f"function {function.name}", Lock.NONE,
                function.phase, target="function"))
    return steps


def _as_owner(steps: list[Step], catalog: Catalog, schema: str, owner: str | None) -> list[Step]:
    want = catalog.owner_for(schema, owner)
    return [replace(s, run_as=want) if want != catalog.current_user else s for s in steps]


def plan_phase(phase: Phase, catalog: Catalog, api_roles: tuple[str, ...] = (), desired: Desired | None = None,
               owner: str | None = None) -> Plan:
    """Everything one phase needs, in dependency order; removals first, in reverse order."""
    desired = desired or Desired()
    created = {v.key for v in phase.materialized_views} | {f.key for f in phase.functions} | {
        o.key for kind in REGISTRY for o in phase.objects.get(kind.section, ())}
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
    unrepairable: list[str] = []
    for extension in phase.extensions:
        steps += plan_extension(extension, catalog)
        fact = catalog.extensions.get(extension.name)
        if fact and extension.schema and fact.schema != extension.schema and not fact.relocatable:
            notes.append(f"extension {extension.name} is in schema {fact.schema}, declared in {extension.schema}, and"
                         " cannot be moved (not relocatable): drop and re-create it there when nothing depends on it")
        elif fact and extension.schema and fact.schema != extension.schema and not fact.movable:
            # it works where it is; moving it is the owner's (a superuser's) job, not a reason to stop the phase
            unrepairable.append(f"extension {extension.name} is in schema {fact.schema}, declared in {extension.schema};"
                                f" it belongs to {fact.owner} and {catalog.current_user} may not move it — left where"
                                f" it is; a superuser runs: ALTER EXTENSION {extension.name} SET SCHEMA"
                                f" {extension.schema}")
    for index in (i for i in phase.indexes if i.state == "present"):
        index_steps = plan_index(index, catalog, desired)
        steps += index_steps
        note = partition_note(index, catalog) if index_steps else None
        notes += [note] if note else []
        wanted = desired.indexes.get(index.key)
        if wanted and index.key not in catalog.indexes and not index.allow_duplicate:
            same, _ = index_duplicates(index, catalog, wanted)
            if same:
                notes.append(f"index {index.key} not built: {', '.join(same)} already has exactly this definition"
                             f" ({wanted}) — drop that one, or set allow_duplicate: true")
    steps += ownership_steps(phase, catalog, owner)
    handled: set[str] = set()
    refusals: list[str] = []
    context = PlanContext(phase.grants, desired, owner,
                          {kind.name: phase.objects.get(kind.section, ()) for kind in REGISTRY})
    # a new view a materialized view of this phase reads is created first; views on those MVs come after them
    read_by_matviews = read_by(phase.materialized_views)
    first = [(kind, o) for kind in REGISTRY for o in phase.objects.get(kind.section, ()) if _in(o, read_by_matviews)]
    steps += _registry_steps(first, catalog, context, owner, handled)
    for view in (v for v in phase.materialized_views if v.state == "present"):
        view_steps = _as_owner(plan_matview(view, catalog, [g for g in phase.grants if g.key == view.key], desired),
                               catalog, view.schema, owner)
        refusal = swap_refusal(view, catalog) if any(s.action == Action.SWAP for s in view_steps) else None
        refusals += [refusal] if refusal else []
        if any(s.long_running for s in view_steps):
            handled.add(view.key)  # its privileges were set in the transaction that built it
        steps += view_steps
    privilege_steps: list[Step] = []
    for function in (f for f in phase.functions if f.state == "present"):
        privileges = function_privileges(function, phase.grants, api_roles)
        function_steps = _as_owner(plan_function(function, catalog, privileges, desired), catalog, function.schema,
                                   owner)
        if all(s.action == Action.MARK for s in function_steps):  # not replaced: compare privileges
            arguments = desired.functions[function.key].arguments if function.key in desired.functions else None
            privilege_steps += _as_owner([s for g in privileges for s in plan_grant(g, catalog, True, arguments)],
                                         catalog, function.schema, owner)
        handled.add(function.key)
        steps += function_steps
    steps += privilege_steps
    rest = [(kind, o) for kind in REGISTRY for o in phase.objects.get(kind.section, ()) if not _in(o, read_by_matviews)]
    steps += _registry_steps(rest, catalog, context, owner, handled)
    for kind in REGISTRY:
        notes += kind.notes(phase.objects.get(kind.section, ()), catalog)
    for grant in phase.grants:
        notes += grant_notes(grant, catalog, created)
        if grant.key not in handled:
            steps += _as_owner(plan_grant(grant, catalog, grant.key in catalog.functions), catalog, grant.schema, owner)
    for job in (j for j in phase.cron_jobs if j.state == "present"):
        # scheduled as the login (pg_cron shows each role only its own jobs): it runs as the login, which owns
        # or acts for the owner of what the job refreshes
        steps += plan_cron_job(job, catalog)
    return Plan(tuple(steps), tuple(notes), tuple(refusals), tuple(unrepairable))


def read_by(matviews) -> frozenset[str]:
    """What the present materialized views read (names as their queries write them)."""
    return frozenset().union(*(relations_read(v.query) for v in matviews if v.state == "present"))


def _in(obj, names: frozenset[str]) -> bool:
    return obj.state == "present" and (str(obj.key) in names or obj.name in names)


def _registry_steps(objects, catalog: Catalog, context: PlanContext, owner: str | None, handled: set) -> list[Step]:
    steps: list[Step] = []
    for kind, obj in objects:
        kind_steps = kind.plan(obj, catalog, context)
        if obj.state == "present":
            kind_steps = _as_owner(kind_steps, catalog, obj.schema, owner)
        if any(s.action == Action.CREATE for s in kind_steps):
            handled.add(obj.key)  # its privileges were set in the transaction that created it
        steps += kind_steps
    return steps


def project_conflicts(phase: Phase, catalog: Catalog, project: str) -> list[str]:
    """Declared objects that carry another project's marker: never adopted, rebuilt or dropped by this one."""
    live = [(f"index {i.key}", catalog.indexes.get(i.key)) for i in phase.indexes] + [
        (f"materialized view {v.key}", catalog.matviews.get(v.key)) for v in phase.materialized_views] + [
        (f"function {f.key}", catalog.functions.get(f.key)) for f in phase.functions] + [
        (f"{kind.name} {o.key}", catalog.objects.get(kind.name, {}).get(o.key)) for kind in REGISTRY
        for o in phase.objects.get(kind.section, ())]
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
    live = {f"materialized view {k}" for k in catalog.matviews} | {f"function {k}" for k in catalog.functions} | {
        f"{kind.name} {k}" for kind in REGISTRY for k in catalog.objects.get(kind.name, {})}
    return [f"{what}: compared by its marker only — the server could not render the declared definition here"
            f" ({why})" for what, why in sorted((desired.unrendered if desired else {}).items()) if what in live]


def undeclared_notes(spec: Spec, catalog: Catalog) -> list[str]:
    """Objects that carry our marker but are no longer in phases.yml: reported, never removed silently."""
    declared = {i.key for p in spec.phases for i in p.indexes} | {
        v.key for p in spec.phases for v in p.materialized_views} | {
        f.key for p in spec.phases for f in p.functions} | {
        o.key for p in spec.phases for kind in REGISTRY for o in p.objects.get(kind.section, ())}
    found = [("index", n, f.comment) for n, f in catalog.indexes.items()] + [
        ("materialized view", n, f.comment) for n, f in catalog.matviews.items()] + [
        ("function", n, f.comment) for n, f in catalog.functions.items()] + [
        (kind.name, n, f.comment) for kind in REGISTRY for n, f in catalog.objects.get(kind.name, {}).items()]
    # a key may hold spaces (a policy's name): compared whole, never split from the label
    return [f"{what} {key} carries {(comment or '').splitlines()[0]} but is not declared — remove it with state:"
            " absent or a rollback"
            for what, key, comment in sorted(found)
            if is_managed(comment) and key not in declared and not key.endswith((TEMP_SUFFIX, RETIRED_SUFFIX, "_key"))]


def plan_rollback(spec: Spec, catalog: Catalog, from_phase: str) -> Plan:
    """Undo a phase and every later one, latest first; only objects that carry our project's marker are touched."""
    catalog = seen_by(catalog, spec.settings.project)
    steps: list[Step] = []
    refusals: list[str] = []
    rolled_back = {o.key for p in spec.phases_from(from_phase) for kind in REGISTRY for o in p.objects.get(kind.section, ())}
    for phase in reversed(spec.phases_from(from_phase)):
        for job in phase.cron_jobs:
            steps += rollback_cron_job(job, catalog, phase.id)
        read = read_by(phase.materialized_views)
        registry = [(kind, o) for kind in reversed(REGISTRY) for o in reversed(phase.objects.get(kind.section, ()))]
        for kind, obj in (pair for pair in registry if not _in(pair[1], read)):
            steps += kind.rollback(obj, catalog, phase.id)
        for function in reversed(phase.functions):
            steps += rollback_function(function, catalog, phase.id)
        for view in reversed(phase.materialized_views):
            view_steps = rollback_matview(view, catalog, phase.id)
            # managed views on it go first in this same rollback: only the application's own stop it
            views_on_it = [d.key for d in catalog.dependents.get(view.key, ()) if d.key not in rolled_back]
            if view_steps and views_on_it:
                refusals.append(f"rollback would drop materialized view {view.key}, and {', '.join(views_on_it)}"
                                " depend(s) on it — drop those first (they are not pgconverge's), then run again;"
                                " nothing was changed")
            steps += view_steps
        for kind, obj in (pair for pair in registry if _in(pair[1], read)):  # after the MVs that read them
            steps += kind.rollback(obj, catalog, phase.id)
        for index in reversed(phase.indexes):
            steps += rollback_index(index, catalog, phase.id)
        for extension in phase.extensions:
            steps += rollback_extension(extension, catalog, phase.id)
    return Plan(tuple(steps), refusals=tuple(refusals))
