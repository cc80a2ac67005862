"""What a kind of object is to the engine: one module that reads its objects from the catalog, renders a declared
one the way the server prints it, plans and rolls back, and says what each declared object must come after. Kinds in
the registry (kinds/__init__.py) are looped over by facts, desired definitions, plan, rollback, undeclared notes,
export-sql and validate: adding one is its module, its schema entry (schemas/phases.schema.json) and its tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import psycopg

from ..model import Action, Catalog, Desired, Step, seen_fact

if TYPE_CHECKING:
    from .privileges import GrantSpec


@dataclass(frozen=True)
class PlanContext:
    """What planning one object may need beyond the catalog: the phase's other objects, the rendered definitions."""

    desired: Desired = field(default_factory=Desired)
    owner: str | None = None  # settings.owner: who new and managed objects belong to (else their schema's owner)
    # the phase's objects by kind name: what one object's plan may depend on (a policy on RLS declared)
    declared: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    api_roles: tuple[str, ...] = ()  # settings.api_roles: who may call a function unless phases.yml says who
    # keys whose privileges an earlier object's plan set in its own transaction (filled while the phase is planned)
    covered: set = field(default_factory=set)

    @property
    def grants(self) -> tuple[GrantSpec, ...]:
        """The phase's grants and revokes: a new object gets its own in the transaction that creates it."""
        return self.declared.get("privileges", ())


@dataclass(frozen=True)
class RenderContext:
    """What rendering one declared object may need: the live catalog, what a fleet's other databases rendered."""

    catalog: Catalog
    shared: dict | None = None  # a fleet's renders by what they depend on (None: this database alone)
    declared: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # kind name → every object being rendered
    memo: dict = field(default_factory=dict)  # a kind's own reads, once per database and run


class DeclaredProblem(Exception):
    """The server refuses a declared object that is still to be made: a mistake in phases.yml, said before anything
    runs."""


@dataclass(frozen=True)
class Planned:
    """One declared object's plan: its steps in order, and what the planner needs to know beside them."""

    steps: tuple[Step, ...] = ()
    covered: bool = False  # its privileges were set in the transaction that created or rebuilt it
    notes: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()  # this phase must not run at all
    unrepairable: tuple[str, ...] = ()  # drift pgconverge may not repair here: said, the phase goes on


def planned(result: Planned | Iterable[Step]) -> Planned:
    """A kind may return its steps alone: an object whose plan creates it set its privileges while doing so."""
    if isinstance(result, Planned):
        return result
    steps = tuple(result)
    return Planned(steps, covered=any(s.action == Action.CREATE for s in steps))


def as_owner(steps: Iterable[Step], catalog: Catalog, schema: str, owner: str | None) -> list[Step]:
    """Steps that create or change an object run as the role it belongs to (settings.owner, else its schema's)."""
    want = catalog.owner_for(schema, owner)
    return [replace(s, run_as=want) if want != catalog.current_user else s for s in steps]


def _nothing_after(obj: Any) -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class Kind:
    name: str  # the label in steps and notes ("view"), the key in Catalog.objects and Desired.definitions
    section: str  # its list in a phase of phases.yml ("views")
    plan: Callable[[Any, Catalog, PlanContext], Planned | list[Step]]
    rollback: Callable[[Any, Catalog, str], list[Step]]
    # every live object, keyed schema.name (None: none read)
    read: Callable[[psycopg.Connection], dict[str, Any]] | None = None
    # the declared object as the server prints it, made inside a transaction that is rolled back (None: unknown)
    render: Callable[[psycopg.Connection, Any, int, RenderContext], Any] | None = None
    # a fact as if the object were there with this marker (export-sql plans the rollback of everything with it)
    stand_in: Callable[[Any, str], Any] | None = None
    # phases.yml → its spec value: (builder, the entry, where it is for errors, phase id); None: no section of its own
    build: Callable[[Any, dict, tuple, str], Any] | None = None
    also_from: tuple[str, ...] = ()  # other sections of a phase whose entries it builds too (grants: revokes)
    # export-sql: the statements a live database can add to the object's (empty catalog, catalog with everything)
    shapes: Callable[[Any, Catalog, Catalog], list[Step]] | None = None
    # advice on a phase's declared objects (None: validate, without a catalog) — what plan and validate print
    notes: Callable[[tuple[Any, ...], Catalog | None], list[str]] = lambda objects, catalog: []
    # the names (as a query writes them) of what a declared object reads or stands on: planned after those of its
    # phase, rolled back before them
    after: Callable[[Any], frozenset[str]] = _nothing_after
    provides: bool = False  # other objects may read its objects by name (views, materialized views, functions)
    owned: bool = True  # its steps run as the object's owner (not: it sets run_as itself, or runs as the login)
    marked: bool = True  # its objects carry our marker: adopted, reported when undeclared, one project's each
    facts_field: str | None = None  # the Catalog field `read` fills (None: Catalog.objects[name])
    # a live object as one project sees it (another project's marker is none of ours)
    seen: Callable[[Any, str], Any] = seen_fact

    def facts(self, catalog: Catalog) -> dict[str, Any]:
        return getattr(catalog, self.facts_field) if self.facts_field else catalog.objects.get(self.name, {})

    def live_objects(self, catalog: Catalog) -> dict[str, Any]:
        """Its live objects that a project may own by their marker."""
        return self.facts(catalog) if self.marked else {}

    def declared(self, phase: Any) -> tuple[Any, ...]:
        return phase.objects.get(self.section, ())
