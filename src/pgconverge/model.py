"""The ground floor: the values every kind and the planner share — steps, the plan, the catalog's fact records,
markers. Nothing here does I/O."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from psycopg import sql

from .errors import UserError

MARKER_PREFIX = "pgconverge:"

TABLE_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"})


FUNCTION_PRIVILEGES = frozenset({"EXECUTE"})


TEMP_SUFFIX = "_pgc_new"


RETIRED_SUFFIX = "_pgc_old"


class Lock(StrEnum):
    """The strongest table-level lock a step takes on objects the application uses."""

    NONE = "none"
    SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
    SHARE = "SHARE"
    ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"

    @property
    def queues_writers(self) -> bool:
        """A waiting request for this lock stalls every later writer (and for ACCESS EXCLUSIVE, reader) behind it."""
        return self in (Lock.SHARE, Lock.ACCESS_EXCLUSIVE)


class Action(StrEnum):
    BUILD_CONCURRENTLY = "build concurrently"
    BUILD = "build"  # a new object, in one transaction nobody else sees until it commits
    CREATE = "create"
    MARK = "mark"
    SWAP = "swap"
    ATTACH = "attach"
    DROP_CONCURRENTLY = "drop concurrently"
    DROP = "drop"
    ALTER = "alter"
    GRANT = "grant"
    SCHEDULE = "schedule"


@dataclass(frozen=True)
class Step:
    """One unit of execution: a single statement, or several that must commit together."""

    statements: tuple[str, ...]
    why: str
    object: str
    lock: Lock
    phase: str
    transactional: bool = False
    # a build: statement_timeout 0, progress logged; otherwise a short statement, retried on lock timeout
    long_running: bool = False
    table: str | None = None
    # the role the step runs as (SET ROLE), so new objects belong to their schema's owner whoever connects
    run_as: str | None = None
    action: Action = Action.ALTER
    lock_scope: str = ""  # what the lock is taken on when that is not the application's objects
    builds: str | None = None  # the qualified index a concurrent build creates: dropped if the build fails
    # run when the step fails for good: remove what an earlier step of the same change left for it
    on_failure: tuple[str, ...] = ()
    target: str = ""  # the kind of object it changes: "index", "materialized view", "function", "extension", …
    # a new object this step creates (its statement to remove it again): what on_gate_failure: revert drops
    undo: str | None = None

    @property
    def lock_text(self) -> str:
        return f"{self.lock} ({self.lock_scope})" if self.lock_scope else str(self.lock)

    @property
    def concurrent(self) -> bool:
        return self.action in (Action.BUILD_CONCURRENTLY, Action.DROP_CONCURRENTLY)

    @property
    def sql(self) -> str:
        if self.transactional:
            return "BEGIN;\n" + ";\n".join(self.statements) + ";\nCOMMIT;"
        return ";\n".join(self.statements) + ";"


def of_kind(kind: str) -> Callable[[Callable[..., list[Step]]], Callable[..., list[Step]]]:
    """A kind's planning function: every step it returns says which kind of object it changes."""
    def decorate(planner: Callable[..., list[Step]]) -> Callable[..., list[Step]]:
        @functools.wraps(planner)
        def tagged(*args: Any, **kwargs: Any) -> list[Step]:
            return [replace(s, target=kind) for s in planner(*args, **kwargs)]
        return tagged
    return decorate


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    # why this plan must not run at all: found before anything changes, each one line naming the objects
    refusals: tuple[str, ...] = field(default_factory=tuple)
    # drift this login cannot repair (a superuser's statement): the phase goes on, verify reports it
    unrepairable: tuple[str, ...] = field(default_factory=tuple)


def render(composable: sql.Composable) -> str:
    return composable.as_string(None)


def temp_name(name: str) -> str:
    return name[: 63 - len(TEMP_SUFFIX)] + TEMP_SUFFIX


def retired_name(name: str) -> str:
    return name[: 63 - len(RETIRED_SUFFIX)] + RETIRED_SUFFIX


def key_index_name(view: str) -> str:
    return view[:59] + "_key"


def comment_sql(kind: str, name: sql.Composable, text: str | None) -> str:
    return render(sql.SQL("COMMENT ON {} {} IS {}").format(sql.SQL(kind), name, sql.Literal(text)))


@dataclass(frozen=True)
class IndexFact:
    name: str
    table: str
    valid: bool
    definition: str
    comment: str | None = None
    oid: int = 0
    table_key: str = ""  # schema.table
    parent: str | None = None  # the partitioned index this one is attached to (schema.name)
    partitioned: bool = False  # on a partitioned table: no storage, one attached index per partition


@dataclass(frozen=True)
class MatViewFact:
    name: str
    definition: str
    comment: str | None = None
    oid: int = 0
    owner: str = ""


@dataclass(frozen=True)
class DependentFact:
    """An object that depends on a materialized view directly: a view is re-pointed at the new one in the swap
    transaction; anything else stops the swap before it starts."""

    key: str
    kind: str  # "view", "materialized view", "function"
    definition: str = ""  # pg_get_viewdef with every name schema-qualified
    options: tuple[str, ...] = ()  # reloptions: security_invoker=true, security_barrier=true, check_option=…


@dataclass(frozen=True)
class FunctionFact:
    name: str
    arguments: str
    comment: str | None = None
    security_definer: bool = False
    config: tuple[str, ...] = ()
    oid: int = 0
    overloads: int = 1
    owner: str = ""
    # every overload carrying a marker: (identity arguments, marker)
    marked_overloads: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CronJobFact:
    name: str
    schedule: str
    command: str
    database: str
    active: bool = True
    jobid: int = 0
    username: str = ""


@dataclass(frozen=True)
class ExtensionFact:
    name: str
    version: str
    schema: str
    comment: str | None = None
    relocatable: bool = True
    movable: bool = True  # this login owns it (or acts for its owner): ALTER EXTENSION is allowed
    owner: str = ""


@dataclass(frozen=True)
class Catalog:
    database: str = "postgres"
    current_user: str = "postgres"
    schema: str = "public"
    indexes: dict[str, IndexFact] = field(default_factory=dict)
    matviews: dict[str, MatViewFact] = field(default_factory=dict)
    functions: dict[str, FunctionFact] = field(default_factory=dict)
    cron_jobs: dict[str, CronJobFact] = field(default_factory=dict)
    extensions: dict[str, ExtensionFact] = field(default_factory=dict)
    # object name → role → privileges ("PUBLIC" for the public pseudo-role)
    acls: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    roles: frozenset[str] = frozenset()
    relations: frozenset[str] = frozenset()
    row_estimates: dict[str, int] = field(default_factory=dict)
    # partitioned table → its direct partitions (schema.name, in bound order); a leaf is absent from the keys
    partitions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    partition_keys: dict[str, str] = field(default_factory=dict)  # partitioned table → pg_get_partkeydef
    dependents: dict[str, tuple[DependentFact, ...]] = field(default_factory=dict)  # matview → direct dependents
    # a kind without a field of its own (Kind.facts_field) → its live objects by key
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    # schema → the role that owns it (pg_database_owner resolved to the database's owner)
    schema_owners: dict[str, str] = field(default_factory=dict)

    def owner_for(self, schema: str, declared: str | None) -> str:
        """Who a new object in `schema` belongs to: settings.owner, else the schema's owner, else whoever runs."""
        return declared or self.schema_owners.get(schema) or self.current_user


# every schema but the system's: objects are keyed "schema.name" in the Catalog
USER_SCHEMAS = ("n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'")


def is_managed(comment: str | None) -> bool:
    return bool(comment and comment.startswith(MARKER_PREFIX))


def marked_project(comment: str | None) -> str | None:
    """The project a marker names ("" for the default project, markers written before projects); None: unmarked."""
    if not comment or not is_managed(comment):
        return None
    head = comment[len(MARKER_PREFIX):].split(":", 1)[0]
    return head.split("/", 1)[0] if "/" in head else ""


def seen_fact(fact: Any, project: str) -> Any:
    """A fact as one project sees it: another project's marker is no marker of ours (never adopted, rolled back or
    reported as undeclared); a fact without a comment is what it is."""
    comment = getattr(fact, "comment", None)
    if comment is not None and marked_project(comment) not in (None, project):
        return replace(fact, comment=None)
    return fact


@dataclass(frozen=True)
class FunctionShape:
    """What makes a function behave: compared between the live catalog and phases.yml's body."""

    arguments: str
    result: str
    source: str
    volatility: str
    security_definer: bool
    config: tuple[str, ...]
    managed: bool = False


@dataclass(frozen=True)
class Desired:
    """The declared objects as the server itself prints them (canonical), next to the live ones' prints."""

    # declared indexes still to be built that the server refuses to build: mistakes in phases.yml
    problems: list[str] = field(default_factory=list)
    # kind (its name) → key → the server's print of the declared object (pg_get_viewdef, pg_get_expr …)
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # declared objects the server could not render here: their drift is decided by the marker (key → why)
    unrendered: dict[str, str] = field(default_factory=dict)


INDEX_DEFINITION = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON (?:ONLY )?\S+ (USING .*)$", re.DOTALL)


def canonical_index(definition: str) -> str | None:
    """pg_get_indexdef without the index's and table's names: what the index is, whatever it is called."""
    match = INDEX_DEFINITION.match(definition)
    return f"{match.group(1) or ''}{match.group(2)}" if match else None


class CatalogUnreadable(UserError):
    """The catalog could not be read; one line naming what to grant."""
