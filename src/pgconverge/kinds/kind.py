"""What a kind of object is to the engine: one module that reads its objects from the catalog, renders a declared
one the way the server prints it, plans and rolls back. Kinds in the registry (kinds/__init__.py) are looped over
by facts, desired definitions, plan, rollback, undeclared notes, export-sql and validate: adding one is its module,
its schema entry (schemas/phases.schema.json) and its tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..model import Catalog, Desired, Step
from ..spec import GrantSpec


@dataclass(frozen=True)
class PlanContext:
    """What planning one object may need beyond the catalog: the phase's grants, the rendered definitions."""

    grants: tuple[GrantSpec, ...] = ()
    desired: Desired = field(default_factory=Desired)
    owner: str | None = None  # settings.owner: who new and managed objects belong to (else their schema's owner)
    # the phase's registry objects by kind name: what one object's plan may depend on (a policy on RLS declared)
    declared: dict[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Kind:
    name: str  # the label in steps and notes ("view"), the key in Catalog.objects and Desired.definitions
    section: str  # its list in a phase of phases.yml ("views")
    read: Callable[[psycopg.Connection], dict[str, Any]]  # every live object, keyed schema.name
    # the declared object as the server prints it, made inside a transaction that is rolled back (None: unknown)
    render: Callable[[psycopg.Connection, Any, int], str | None]
    plan: Callable[[Any, Catalog, PlanContext], list[Step]]
    rollback: Callable[[Any, Catalog, str], list[Step]]
    stand_in: Callable[[Any, str], Any]  # a fact as if the object were there with this marker (export-sql)
    # phases.yml → its spec value: (builder, the entry, where it is for errors, phase id)
    build: Callable[[Any, dict, tuple, str], Any] = lambda b, entry, at, phase: entry
    # advice on a phase's declared objects (None: validate, without a catalog) — what plan and validate print
    notes: Callable[[tuple[Any, ...], Catalog | None], list[str]] = lambda objects, catalog: []
