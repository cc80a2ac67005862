"""Read-only catalog facts: each kind's catalog query (kinds/), gathered into one Catalog for the planner; what the
server says of the declared objects (rendered in transactions that are rolled back)."""

from __future__ import annotations

import re

import psycopg

from .kinds import REGISTRY
from .kinds.index import read_partitions
from .kinds.kind import DeclaredProblem, RenderContext
from .kinds.matview import read_dependents
from .model import (
    USER_SCHEMAS,
    Catalog,
    CatalogUnreadable,
    CronJobFact,
    Desired,
    ExtensionFact,
    FunctionFact,
    FunctionShape,
    IndexFact,
    MatViewFact,
    canonical_index,
    is_managed,
)

__all__ = ["Catalog", "CatalogUnreadable", "CronJobFact", "Desired", "ExtensionFact", "FunctionFact", "FunctionShape",
           "IndexFact", "MatViewFact", "canonical_index", "is_managed", "read", "desired_definitions"]


def read_relations(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND """ + USER_SCHEMAS,
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def read(conn: psycopg.Connection, schema: str = "public") -> Catalog:
    """A snapshot of everything the planner compares with the spec; one line naming the missing grant if refused."""
    try:
        return _read(conn, schema)
    except psycopg.errors.InsufficientPrivilege as exc:
        first = str(exc).strip().splitlines()[0]
        user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        target = re.search(r"permission denied for (schema|table|relation|view|function) (\S+)", first)
        grant = (f"GRANT {'USAGE' if target.group(1) == 'schema' else 'SELECT'} ON {target.group(1).upper()}"
                 f" {target.group(2)} TO {user}" if target else f"grant {user} read access to the catalog")
        raise CatalogUnreadable(f"{first} — {grant}, then run again") from None
    except psycopg.Error as exc:
        raise CatalogUnreadable(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) \
            from None


def _read(conn: psycopg.Connection, schema: str) -> Catalog:
    database, user = conn.execute("SELECT current_database(), current_user").fetchone()  # type: ignore[misc]
    relations = read_relations(conn)
    partitions, partition_keys = read_partitions(conn)
    live = {kind: kind.read(conn) for kind in REGISTRY if kind.read}  # one catalog query per kind
    return Catalog(
        database=database,
        current_user=user,
        schema=schema,
        **{kind.facts_field: facts for kind, facts in live.items() if kind.facts_field},
        objects={kind.name: facts for kind, facts in live.items() if not kind.facts_field},
        roles=frozenset(r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()),
        relations=frozenset(relations),
        row_estimates=relations,
        partitions=partitions,
        partition_keys=partition_keys,
        dependents=read_dependents(conn),
        schema_owners=dict(conn.execute(
            "SELECT n.nspname, CASE WHEN n.nspowner = 'pg_database_owner'::regrole"
            " THEN pg_get_userbyid(d.datdba) ELSE pg_get_userbyid(n.nspowner) END"
            " FROM pg_namespace n, pg_database d WHERE d.datname = current_database() AND " + USER_SCHEMAS
        ).fetchall()),
    )


class _Rollback(Exception):
    pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def desired_definitions(conn: psycopg.Connection, spec, phase_ids: list[str], catalog: Catalog,
                        shared: dict | None = None) -> Desired:
    """Render each declared index, view and function the way the server prints it, inside a transaction that is
    rolled back (temporary tables and views; function bodies unchecked): drift is then a comparison of what is with
    what is wanted, not of our own comment. An object the server cannot render here stays unknown (the marker
    decides, as before); an index still to be built that the server refuses is a problem in phases.yml (method vs
    column type, operator class, expression), reported before anything runs."""
    desired = Desired()
    phases = [spec.phase(pid) for pid in phase_ids]
    context = RenderContext(catalog, shared, {kind.name: tuple(o for p in phases for o in kind.declared(p))
                                              for kind in REGISTRY})
    try:
        with conn.transaction():
            conn.execute("SET LOCAL check_function_bodies = off")
            for kind in REGISTRY:
                if kind.render is None:
                    continue
                for number, obj in enumerate(context.declared[kind.name]):
                    try:
                        with conn.transaction():
                            definition = kind.render(conn, obj, number, context)
                        if definition is not None:
                            desired.definitions.setdefault(kind.name, {})[obj.key] = definition
                    except DeclaredProblem as problem:
                        desired.problems.append(str(problem))
                    except psycopg.Error as exc:  # e.g. it reads what this run creates first: the marker decides
                        desired.unrendered[f"{kind.name} {obj.key}"] = _first_line(exc)
            raise _Rollback
    except _Rollback:
        pass
    return desired
