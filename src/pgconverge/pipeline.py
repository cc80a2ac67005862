"""One way from a live database to a plan, for every caller (the deploy's operations, plan and preview, the PR
report, the benches, the kinds' tests): read the catalog → render the declared objects the way this server prints
them → plan (the planner sees the catalog as this project's, kinds/ and plan.py) — or plan the rollback."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg

from . import facts, plan
from .errors import UserError
from .model import Catalog, Desired, Plan
from .spec import Spec

Render = Callable[[psycopg.Connection, Spec, list[str], Catalog], Desired]
Read = Callable[[psycopg.Connection, Spec], Catalog]


class DeclaredUnrenderable(UserError):
    """The server refuses a declared object that is still to be made (method vs column type, operator class…)."""


def _render(conn: psycopg.Connection, spec: Spec, phase_ids: list[str], catalog: Catalog) -> Desired:
    return facts.desired_definitions(conn, spec, phase_ids, catalog)


def _read(conn: psycopg.Connection, spec: Spec) -> Catalog:
    return facts.read(conn, spec.settings.schema)


def reading(conn: psycopg.Connection, spec: Spec, phase_ids: Sequence[str] = (),
            render: Render = _render, read: Read = _read) -> tuple[Catalog, Desired | None]:
    """The catalog, and the declared objects of these phases as the server prints them (none: a rollback needs
    only the markers); a declared object the server refuses stops here, before anything runs."""
    catalog = read(conn, spec)
    desired = render(conn, spec, list(phase_ids), catalog) if phase_ids else None
    if desired and desired.problems:
        raise DeclaredUnrenderable("; ".join(desired.problems) + " (nothing was changed)")
    return catalog, desired


def converge_plan(conn: psycopg.Connection, spec: Spec, phase_ids: Sequence[str], render: Render = _render,
                  read: Read = _read) -> Plan:
    catalog, desired = reading(conn, spec, phase_ids, render, read)
    return plan.plan(spec, catalog, phase_ids, desired)


def rollback_plan(conn: psycopg.Connection, spec: Spec, from_phase: str, read: Read = _read) -> Plan:
    catalog, _ = reading(conn, spec, read=read)
    return plan.plan_rollback(spec, catalog, from_phase)
