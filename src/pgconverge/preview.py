"""`--dry -y` (CI jobs set PYINFRA_YES=1): pyinfra then skips change detection, so no operation is prepared and none
prints its SQL. The deploy prints the same plan itself in that case — a dry run in a pipeline is never silent."""

from __future__ import annotations

import functools
import sys

import click
from pyinfra import host, state

from . import operations, pipeline
from .spec import Spec


def _dry() -> bool:
    context = click.get_current_context(silent=True)
    if context is not None and "dry" in context.params:
        return bool(context.params["dry"])
    return "--dry" in sys.argv


def wanted() -> bool:
    """A dry run whose operations will not be prepared (-y / PYINFRA_YES)."""
    return _dry() and not state.should_check_for_changes()


def _usable() -> bool:
    if operations.refused():
        return False
    try:
        operations.database()
        return True
    except operations.REFUSALS as exc:
        operations.refuse(str(exc))
        return False


def converge(spec: Spec, phase_ids: list[str]) -> None:
    if not _usable():
        return
    for phase_id in phase_ids:
        result = operations.plan_or_fail(functools.partial(
            pipeline.converge_plan, spec=spec, phase_ids=[phase_id], render=operations.rendered_once))
        if isinstance(result, operations.FailedCommand):
            return
        operations.log_plan(result, phase_id)
        if not result.steps:
            host.noop(f"{phase_id} already converged")


def rollback(spec: Spec, phase_id: str) -> None:
    if not _usable():
        return
    result = operations.plan_or_fail(lambda conn: pipeline.rollback_plan(conn, spec, phase_id))
    if not isinstance(result, operations.FailedCommand):
        operations.log_plan(result, f"rollback from {phase_id}")
