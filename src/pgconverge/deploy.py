"""What the deploy files call: each phase converges, then its gates run."""

from __future__ import annotations

import sys

from pyinfra import host

from . import operations, preview
from .operations import load_spec_or_exit, phase_or_exit


def _is_database_target() -> bool:
    """Database operations run only for hosts that name a connection variable (db targets, the lab)."""
    return bool(host.data.get("database_url_env"))


def converge(phase_id: str | None = None) -> None:
    """Converge `phase_id` and the phases it requires (all phases when None), each followed by its gates."""
    spec = load_spec_or_exit()
    if not _is_database_target():
        return
    phases = spec.phases if phase_id is None else spec.phases_through(phase_or_exit(spec, phase_id))
    operations.connection_check(name="Connection check")
    if preview.wanted():
        preview.converge(spec, [p.id for p in phases])
    for phase in phases:
        operations.phase(name=f"Converge {phase.id}: {phase.title}", phase_id=phase.id)
        operations.phase_gates(name=f"Gates of {phase.id}, then its snapshot", phase_id=phase.id, snapshot=True)
    operations.run_summary(name="Summary")


def _no_confirmation_without_a_terminal() -> None:
    """verify changes nothing: run from cron or CI without -y, pyinfra's "Press enter to execute" prompt would end
    in EOFError at its input(); there is nothing to confirm."""
    if sys.stdin is None or not sys.stdin.isatty():
        import pyinfra_cli.cli

        pyinfra_cli.cli._do_confirm = lambda _message: True  # type: ignore[attr-defined]


def verify() -> None:
    """Drift and every gate of every phase, even after a failure; changes nothing; exit != 0 if anything failed."""
    _no_confirmation_without_a_terminal()
    spec = load_spec_or_exit()
    if not _is_database_target():
        return
    operations.connection_check(name="Connection check")
    for phase in spec.phases:
        operations.phase_drift(name=f"Drift of {phase.id}", phase_id=phase.id)
        operations.phase_gates(name=f"Gates of {phase.id}", phase_id=phase.id, keep_going=True)
    operations.run_summary(name="Summary", strict=True)


def rollback(phase_id: str | None) -> bool:
    """Roll back `phase_id` (the first phase when None) and every later one; True when that is the first phase."""
    spec = load_spec_or_exit()
    phase_id = phase_or_exit(spec, phase_id or (spec.phases[0].id if spec.phases else None))
    first = phase_id == spec.phases[0].id
    if not _is_database_target():
        return first
    operations.connection_check(name="Connection check")
    if preview.wanted():
        preview.rollback(spec, phase_id)
    operations.rollback(name=f"Roll back {phase_id} and later phases", phase_id=phase_id)
    return first
