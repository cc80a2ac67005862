"""What a kind of object is to the engine: one module that reads its objects from the catalog, renders a declared
one the way the server prints it, plans and rolls back. Kinds in the registry (kinds/__init__.py) are looped over
by facts, desired definitions, plan, rollback, undeclared notes, export-sql and validate: adding one is its module,
its schema entry and its spec builder."""

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
