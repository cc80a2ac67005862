"""pyinfra operations: thin — connect, read facts, plan, log the SQL while preparing, yield SqlCommands."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import gevent.event
import gevent.lock
import psycopg
from pyinfra import host, logger, state
from pyinfra.api import operation
from pyinfra.api.command import PyinfraCommand

from . import backup, facts, gates, pipeline, plan, rendercache
from .connection import ConnectionFailed, open_session
from .errors import UserError
from .execute import APPLICATION_NAME, Interruption, StepFailed, run_step, take_run_lock
from .kinds import REGISTRY
from .model import Action, Lock
from .names import QualifiedName
from .secrets import mask, url_from_env
from .session import Entry, HostSession, current, summary_file
from .snapshot import present
from .spec import Settings, Spec, SpecError, locate


def stopwatch():
    """Held while a gate times queries: the hosts of a run share one process, so timings are taken one at a time."""
    run = current(state)
    if run.stopwatch is None:
        run.stopwatch = gevent.lock.Semaphore(1)
    return run.stopwatch


def session(target=None) -> HostSession:
    """This run's state for a host (pyinfra's current host by default)."""
    target = target if target is not None else host
    here = current(state).host(target)
    folder = target.data.get("summary_dir") or os.environ.get("PGCONVERGE_SUMMARY_DIR")
    if folder and here.summary_path is None:
        here.summary_path = summary_file(folder, target.name)
        here.wave = target.data.get("rollout_wave")
        here.write_summary()
    return here


def load_spec_or_exit() -> Spec:
    """phases.yml for this run (--data phases=FILE > $PGCONVERGE_PHASES > ./phases.yml); a bad file stops the deploy
    with one line, before any connection."""
    path, why = locate(host.data.get("phases"))
    Interruption.install()
    try:
        loaded = current(state).spec(path)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)
    if path not in current(state).announced:  # an error above names the file itself
        current(state).announced.add(path)
        print(f"phases: {path} ({'from --data phases=' if why == 'given' else why})", file=sys.stderr)
    return loaded


def phase_or_exit(spec: Spec, phase_id: str | None) -> str:
    """A phase id from a deploy or --data phase=…; an unknown one stops with one line naming the ids there are."""
    known = [p.id for p in spec.phases]
    if phase_id in known:
        return phase_id  # type: ignore[return-value]
    print(f"{spec.path}: no phase '{phase_id}' — the phases are: {', '.join(known)}"
          " (pass one with --data phase=ID)", file=sys.stderr)
    sys.exit(2)


def database(target=None) -> tuple[psycopg.Connection, str]:
    """One autocommit connection per host for the whole run (it also holds the run's advisory lock)."""
    target = target or host
    here = session(target)
    if here.conn is not None and not here.conn.closed and not here.conn.broken:
        return here.conn, here.url
    env_var = target.data.get("database_url_env") or "DATABASE_URL"
    url = url_from_env(env_var, f"host {target.name}")
    here.conn, here.url, here.run_locked = open_session(url, APPLICATION_NAME, f"host {target.name}"), url, False
    return here.conn, url


def locked_database(target) -> tuple[psycopg.Connection, str]:
    """The host's connection, holding the run's advisory lock from the first change on."""
    conn, url = database(target)
    if not session(target).run_locked:
        take_run_lock(conn)
        session(target).run_locked = True
    return conn, url


def _fail(target, message: str) -> bool:
    target.log_styled(mask(message), fg="red", log_func=logger.error)
    session(target).fail(mask(message))
    return False


class SqlCommand(PyinfraCommand):
    """One planned step; pyinfra treats execute() returning False as a failed host."""

    def __init__(self, step: plan.Step, settings: Settings):
        super().__init__()
        self.step = step
        self.settings = settings

    def __repr__(self) -> str:
        return f"SqlCommand({self.step.object}: {self.step.statements[0][:60]})"

    def __str__(self) -> str:
        return self.step.sql

    def execute(self, state, host, connector_arguments) -> bool:  # noqa: A002 - pyinfra's signature
        try:
            conn, url = locked_database(host)
            host.log(f"{self.step.object}: {self.step.why}")
            started = time.monotonic()
            window = host.data.get("build_window") or self.settings.build_window
            priority = host.data.get("build_priority") or self.settings.build_priority
            apply(conn, url, self.step, replace(self.settings, build_window=window, build_priority=priority),
                  host.log, host)
            session(host).record(Entry("applied", self.step.phase, f"{self.step.object}: {self.step.why}"
                                                                  f" ({time.monotonic() - started:.1f} s)",
                                       undo=self.step.undo, step=self.step))
            # Fault-injection tests slow the run down so that a kill can land between any two steps.
            time.sleep(float(os.environ.get("PGCONVERGE_STEP_DELAY") or 0))
            return True
        except UserError as exc:
            return _fail(host, str(exc))


class PhaseCommand(PyinfraCommand):
    """A command of ours about one phase of phases.yml."""

    def __init__(self, spec: Spec, phase_id: str):
        super().__init__()
        self.spec = spec
        self.phase_id = phase_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.phase_id})"


class GateCommand(PhaseCommand):
    """Runs a phase's gates; any failure fails the host (optionally after rolling the phase back)."""

    def __init__(self, spec: Spec, phase_id: str, keep_going: bool = False):
        super().__init__(spec, phase_id)
        # verify: every phase's gates run; the summary fails the host at the end
        self.keep_going = keep_going

    def execute(self, state, host, connector_arguments) -> bool:
        phase = self.spec.phase(self.phase_id)
        try:
            Interruption.check()
            conn, _ = database(host)
        except (UserError, psycopg.Error) as exc:
            return _fail(host, f"gates of {phase.id}: {exc}")
        params = gates.ParamSampler(conn, self.spec)
        failed = []
        # a converge that changed nothing in the phase does not re-time its queries on every database of a fleet:
        # verify (keep_going) and any run that applied something time them
        retime = self.keep_going or session(host).applied_in(phase.id) or self.spec.settings.noop_gates == "all"
        skipped = [g.name for g in phase.gates if g.kind in gates.TIMED and not retime]
        for name in skipped:
            session(host).record(Entry("skipped", phase.id, f"gate {name}: not re-timed, nothing changed"))
        if skipped:
            host.log(f"{phase.id}: nothing changed, timed gates not re-run: {', '.join(skipped)}"
                     " (deploys/verify.py times them; settings.noop_gates: all to always)")
        changes = gates.phase_changes([e.step for e in session(host).journal
                                       if e.kind == "applied" and e.phase == phase.id and e.step is not None])
        for gate in (g for g in phase.gates if g.name not in skipped):
            with stopwatch():  # one database timed at a time: another host's timing loop is not this one's latency
                result = gates.run_gate(conn, self.spec, gate, params, session(host).before.get(gate.name), changes)
            session(host).record(Entry("gate", phase.id, result.line(), result.passed))
            if result.passed:
                host.log(result.line())
            else:
                failed.append(result)
                host.log_styled(mask(result.line()), fg="red", log_func=logger.error)
        if not failed or self.keep_going:
            return True
        first = failed[0]
        named = f"gate {first.name}" + (f" (query {first.query})" if first.query else "")
        if phase.on_gate_failure == "revert":
            left = self.revert(conn, host, phase.id)
            return _fail(host, f"{phase.id}: {named} failed after the phase was applied — reverted: {left};"
                               f" {first.line()}")
        if phase.on_gate_failure == "rollback":
            host.log_styled(f"{phase.id}: gate failed, rolling the phase back (on_gate_failure: rollback)", fg="yellow")
            _, url = database(host)
            for step in pipeline.rollback_plan(conn, self.spec, phase.id).steps:
                try:
                    apply(conn, url, step, self.spec.settings, host.log, host)
                except StepFailed as exc:
                    return _fail(host, f"rollback after failed gate: {exc}")
        return _fail(host, f"{phase.id}: {len(failed)} of {len(phase.gates)} gates failed — first: {failed[0].line()}")


    def revert(self, conn: psycopg.Connection, target, phase_id: str) -> str:
        """on_gate_failure: revert — drop what this run created in the phase, newest first (concurrently for
        indexes); what it replaced in place stays replaced, and says so."""
        _, url = database(target)
        applied = [e for e in session(target).journal if e.kind == "applied" and e.phase == phase_id]
        undone, kept = [], []
        for entry in reversed(applied):
            step = entry.step
            if entry.undo is None:
                if step is not None and step.action not in (Action.MARK, Action.ATTACH, Action.GRANT):
                    kept.append(step.object)
                continue
            concurrent = step.action == Action.BUILD_CONCURRENTLY
            undo = replace(step, statements=(entry.undo,), why="revert after a failed gate", transactional=False,
                           long_running=False, undo=None, builds=None, on_failure=(), lock_scope="",
                           action=Action.DROP_CONCURRENTLY if concurrent else Action.DROP,
                           lock=Lock.SHARE_UPDATE_EXCLUSIVE if concurrent else Lock.ACCESS_EXCLUSIVE)
            try:
                apply(conn, url, undo, self.spec.settings, target.log, target)
                undone.append(step.object)
            except StepFailed as exc:
                kept.append(f"{step.object} ({exc})")
        # a partitioned index's per-partition steps go with its parent's DROP
        kept = [k for k in kept if k not in undone]
        return (f"dropped {', '.join(undone) or 'nothing'}"
                + (f"; not reverted (replaced in place or not removable): {', '.join(dict.fromkeys(kept))}" if kept else ""))


class BaselineCommand(PhaseCommand):
    """Before a phase changes anything: each gate that compares with before (max_ratio_to_before) reads its statement
    on tail-covering parameter sets (plans, blocks; timings where it compares time)."""

    def execute(self, state, host, connector_arguments) -> bool:
        try:
            Interruption.check()
            conn, _ = database(host)
            params = gates.ParamSampler(conn, self.spec)
            for gate in self.spec.phase(self.phase_id).gates:
                if gate.kind != "latency" or gate.get("max_ratio_to_before") is None:
                    continue
                query = self.spec.query(gate.get("query"))
                if query.needs and not present(conn, query.needs):
                    # what the query needs comes with this phase: nothing to compare with, the absolute bound judges
                    host.log(f"before {self.phase_id}: gate {gate.name}: query {query.name} needs {query.needs},"
                             " not there yet — no 'before'; judged by its absolute bound")
                    continue
                try:
                    baseline = gates.take_baseline(conn, gate, query, params)
                except psycopg.Error as exc:
                    raise UserError(f"gate {gate.name}, query {query.name}: {str(exc).strip().splitlines()[0]}"
                                    " — fix the query or its params in phases.yml") from None
                session(host).before[gate.name] = baseline
                heavy = baseline.heaviest()
                host.log(f"before {self.phase_id}: {gate.get('query')} on {len(baseline.sets)} parameter sets,"
                         f" {sum(r.blocks for r in baseline.readings):,} blocks (heaviest set {heavy.blocks:,} blocks,"
                         f" {heavy.rows:,} rows read), p95 {baseline.p95_ms:.2f} ms")
        except (UserError, psycopg.Error) as exc:
            return _fail(host, f"measuring before {self.phase_id}: {exc}")
        return True


class LabelledCommand(PyinfraCommand):
    """A command of ours that carries only a label (the phase or moment it is for)."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label})"


class BackupCommand(LabelledCommand):
    """A verified pg_dump before any change; if it fails, the change does not start."""

    def __init__(self, label: str, mode: str, schemas: tuple[str, ...] = ()):
        super().__init__(label)
        self.mode = mode
        self.schemas = schemas

    def execute(self, state, host, connector_arguments) -> bool:
        try:
            Interruption.check()
            _, url = locked_database(host)
        except UserError as exc:  # another run holds the database, or it cannot be reached: not a backup failure
            return _fail(host, f"{exc}; nothing was changed")
        try:
            directory, environment = backup_target(host)
            started = time.monotonic()
            record = backup.take_backup(url, directory, environment, self.label,
                                        int(host.data.get("backup_retention") or 5), host=host.name, mode=self.mode,
                                        schemas=self.schemas, pg_bin=host.data.get("pg_bin"))
        except (UserError, OSError) as exc:  # BackupFailed is one
            return _fail(host, f"backup before {self.label} failed, nothing was changed: {exc}")
        line = (f"backup {record.path} ({record.mode}, {record.size:,} bytes, {record.entries} entries,"
                f" sha256 {record.sha256[:12]}…, {time.monotonic() - started:.1f} s, {record.tool})")
        host.log(line)
        session(host).record(Entry("backup", self.label, line))
        return True


def backup_target(target) -> tuple[Path, str]:
    """backups/<environment>/<inventory host>/: same-named databases of a fleet never share a file or a retention."""
    environment = target.data.get("environment") or "default"
    base = target.data.get("backup_dir") or os.environ.get("PGCONVERGE_BACKUP_DIR") or "backups"
    return backup.host_directory(Path(base), environment, target.name), environment


def managed_schemas(spec: Spec) -> tuple[str, ...]:
    """The schemas phases.yml can change: what the schema backup before a change holds."""
    schemas: set[str] = set()
    for phase in spec.phases:
        schemas |= {o.schema for kind in REGISTRY if kind.marked for o in kind.declared(phase)}
    return tuple(sorted(schemas or {spec.settings.schema}))


def _with_backup(label: str, mode: str, steps: tuple[plan.Step, ...], spec: Spec):
    if mode != "none" and steps:
        directory, _ = backup_target(host)
        if not state.is_executing:
            what = "schema and managed objects" if mode == "schema" else "schema and data"
            host.log(f"-- first: verified backup of the {what} (pg_dump -Fc, pg_restore --list, sha256)"
                     f" into {directory}/")
        yield BackupCommand(label, mode, managed_schemas(spec))
    for step in steps:
        yield SqlCommand(step, spec.settings)


def log_plan(result: plan.Plan, label: str) -> None:
    for note in (*result.notes, *result.unrepairable):
        host.log_styled(f"note: {note}", fg="yellow")
    if state.is_executing:
        return
    host.log(f"{label}: {len(result.steps)} steps to run" + (" (converged)" if not result.steps else ""))
    for step in result.steps:
        host.log(f"-- [{step.phase}] {step.object}: {step.why} (lock: {step.lock_text})")
        for line in step.sql.splitlines():
            host.log(f"   {line}")


class FailedCommand(PyinfraCommand):
    """A host whose plan could not be made fails on its own; the other hosts of the inventory go on."""

    def __init__(self, message: str, logged: bool = False):
        super().__init__()
        self.message = message
        # said once already while preparing: fail without a second copy of the line
        self.logged = logged

    def __repr__(self) -> str:
        return "FailedCommand()"

    def execute(self, state, host, connector_arguments) -> bool:
        session(host).fail(mask(self.message))
        return False if self.logged else _fail(host, self.message)


# what makes a host's database unusable for a run: one line each, never a traceback
REFUSALS = (UserError,)


def refused(target=None) -> str | None:
    """The one line why the host's database cannot be used for this run (unreachable, pooler, standby, read-only)."""
    return session(target).refused


def refuse(message: str) -> None:
    """Preparing: this host's database cannot be used; say so once, fail the host, prepare nothing else for it."""
    session().refused = mask(message)
    session().fail(mask(message))
    _refuse_while_preparing(mask(message))


def _refuse_while_preparing(message: str) -> None:
    host.log_styled(message, fg="red", log_func=logger.error)
    # --dry never executes FailedCommand: the failed host must still end the run with exit != 0.
    state.failed_hosts.add(host)


@operation()
def connection_check():
    """
    Ensure the host's database can be used for a run before anything else: reachable, a session of its own (no
    transaction-mode pooler), a primary that takes writes (no standby, no read-only default). Changes nothing.
    """
    here = session()
    if here.refused is None:
        try:
            database()
            return
        except REFUSALS as exc:
            if not state.is_executing:
                refuse(str(exc))
                yield FailedCommand(mask(str(exc)), logged=True)
                return
            here.refused = mask(str(exc))
    yield FailedCommand(here.refused, logged=not state.is_executing or state.should_check_for_changes())


def rendered_once(conn: psycopg.Connection, spec: Spec, phase_ids: list[str], catalog: facts.Catalog) -> facts.Desired:
    """The declared objects as the server prints them. The hosts of a run start together: the first renders the
    phases' indexes, the others wait for it and reuse what matches their tables' shapes (a fleet renders once)."""
    run = current(state)
    key = tuple(phase_ids)
    first = key not in run.render_gates
    if first:
        run.render_gates[key] = gevent.event.Event()
    else:
        run.render_gates[key].wait(timeout=60)
    known = len(run.rendered)
    try:
        return facts.desired_definitions(conn, spec, phase_ids, catalog, run.rendered)
    finally:
        if first:
            run.render_gates[key].set()
        if len(run.rendered) != known:
            rendercache.keep(run.rendered)


def catalog_once(conn: psycopg.Connection, spec: Spec) -> facts.Catalog:
    """The host's catalog, read again only when this run has sent a change since it was last read."""
    here = session()
    if here.catalog is None or here.catalog[0] != here.changes:
        here.catalog = (here.changes, facts.read(conn, spec.settings.schema))
    return here.catalog[1]


def apply(conn: psycopg.Connection, url: str, step: plan.Step, settings: Settings, log, target) -> None:
    session(target).changes += 1  # the catalog this run read is stale from here on, whether the step succeeds or not
    run_step(conn, url, step, settings, log)


def plan_or_fail(compute: Callable[[psycopg.Connection], plan.Plan]) -> plan.Plan | FailedCommand:
    """The plan of this host (pipeline.py), or one line saying why there is none: the catalog unreadable, a declared
    object the server refuses, a refusal of the planner."""
    try:
        conn, _ = database()
        result = compute(conn)
    except (UserError, psycopg.Error) as exc:
        message = mask(str(exc) if isinstance(exc, ConnectionFailed) else f"cannot plan: {exc}"
                       if isinstance(exc, pipeline.DeclaredUnrenderable) else f"cannot read the catalog: {exc}")
        if not state.is_executing:
            _refuse_while_preparing(message)
        return FailedCommand(message)
    if result.refusals:
        message = mask("; ".join(result.refusals))
        if not state.is_executing:
            _refuse_while_preparing(message)
        return FailedCommand(message)
    return result


@operation()
def phase(phase_id: str):
    """
    Converge the database to one phase of phases.yml: extensions, indexes (always CONCURRENTLY), materialized
    views, functions, grants and pg_cron jobs. Drifted objects are rebuilt beside the old one and swapped in.

    + phase_id: the phase's id in phases.yml

    **Example:**

    .. code:: python

        operations.phase(name="Converge phase 1", phase_id="phase1")
    """
    spec = load_spec_or_exit()
    if refused():
        return
    result = plan_or_fail(lambda conn: pipeline.converge_plan(conn, spec, [phase_id], rendered_once, catalog_once))
    if isinstance(result, FailedCommand):
        yield result
        return
    log_plan(result, phase_id)
    if not result.steps:
        host.noop(f"{phase_id} already converged")
        return
    # evidence for the before/after report, only for a phase that changes something
    yield SnapshotCommand(f"before-{phase_id}")
    if any(g.get("max_ratio_to_before") is not None for g in spec.phase(phase_id).gates):
        yield BaselineCommand(spec, phase_id)
    yield from _with_backup(phase_id, spec.phase(phase_id).backup, result.steps, spec)


@operation()
def rollback(phase_id: str):
    """
    Roll back a phase and every later one, latest first: unschedule its jobs, drop its functions and MVs, drop
    its indexes concurrently. Only objects carrying the pgconverge marker are touched.

    + phase_id: the first phase to undo
    """
    spec = load_spec_or_exit()
    if refused():
        return
    result = plan_or_fail(lambda conn: pipeline.rollback_plan(conn, spec, phase_id, catalog_once))
    if isinstance(result, FailedCommand):
        yield result
        return
    log_plan(result, f"rollback from {phase_id}")
    if not result.steps:
        host.noop(f"nothing of {phase_id} or later is present")
        return
    yield from _with_backup(f"rollback-{phase_id}", "schema", result.steps, spec)


@operation()
def phase_gates(phase_id: str, keep_going: bool = False, snapshot: bool = False):
    """
    Run a phase's gates (read-only) at execution time; a failing gate fails the host with its measured value.
    Then, when this run applied something of the phase, a health snapshot (one operation: each operation call
    costs pyinfra a stack inspection per host, which a fleet's no-op run pays hundreds of times).

    + phase_id: the phase whose gates run
    + keep_going: record failures and go on (verify); the summary then fails the host
    + snapshot: write the after-phase snapshot when the phase changed something
    """
    spec = load_spec_or_exit()
    selected = spec.phase(phase_id)
    if refused():
        return
    if snapshot and state.is_executing and not selected.gates:
        yield from health_snapshot._inner(label=f"after-{phase_id}", after_phase=phase_id)
    if not selected.gates:
        host.noop(f"{phase_id} declares no gates")
        return
    if not state.is_executing:
        # Gates change nothing, so preparing reports no change; they run when the deploy executes.
        host.log(f"{phase_id}: {len(selected.gates)} gates will run after the phase: "
                 + ", ".join(g.name for g in selected.gates))
        created = {o.key for kind in REGISTRY if kind.provides for o in kind.declared(selected)}  # what queries read
        for gate in (g for g in selected.gates if g.kind == "latency" and g.get("max_ratio_to_before") is not None):
            needs = spec.query(gate.get("query")).needs
            if needs and QualifiedName.parse(needs, spec.settings.schema) in created:
                host.log(f"  gate {gate.name}: query {gate.get('query')} needs {needs}, which this phase creates —"
                         " no 'before' to compare with; judged by its absolute bound"
                         f" ({'p95 ≤ ' + str(gate.get('p95_ms')) + ' ms' if gate.get('p95_ms') else 'none declared'})")
        return
    yield GateCommand(spec, phase_id, keep_going)
    if snapshot:
        yield from health_snapshot._inner(label=f"after-{phase_id}", after_phase=phase_id)


class DriftCommand(PhaseCommand):
    """verify: every object of a phase whose live state differs from phases.yml, one line each (read-only)."""

    def execute(self, state, host, connector_arguments) -> bool:
        try:
            conn, _ = database(host)
            result = pipeline.converge_plan(conn, self.spec, [self.phase_id], rendered_once, catalog_once)
        except (UserError, psycopg.Error) as exc:
            session(host).record(Entry("drift", self.phase_id, f"cannot be read: {exc}", False))
            host.log_styled(mask(f"drift of {self.phase_id} cannot be read: {exc}"), fg="red", log_func=logger.error)
            return True
        seen = set()
        found = [(s.object, s.why) for s in result.steps] + [("", why) for why in (*result.refusals,
                                                                                   *result.unrepairable)]
        for what, why in found:
            if (what, why) in seen:
                continue
            seen.add((what, why))
            entry = Entry("drift", self.phase_id, f"{what + ': ' if what else ''}{why}", False)
            session(host).record(entry)
            host.log_styled(mask(entry.line), fg="red", log_func=logger.error)
        if not found:
            host.log(f"{self.phase_id}: no drift")
        return True


@operation()
def phase_drift(phase_id: str):
    """
    Report every object of a phase whose live definition differs from phases.yml (read-only; verify).

    + phase_id: the phase to compare
    """
    load_spec_or_exit()
    if state.is_executing and not refused():
        yield DriftCommand(load_spec_or_exit(), phase_id)


class SummaryCommand(PyinfraCommand):
    def __init__(self, strict: bool = False):
        super().__init__()
        self.strict = strict

    def __repr__(self) -> str:
        return "SummaryCommand()"

    def execute(self, state, host, connector_arguments) -> bool:
        if Interruption.received:
            return _fail(host, f"interrupted by {Interruption.received}: the run stopped before its end")
        session(host).finished = True
        session(host).write_summary()
        entries = session(host).journal
        lines = [e.line for e in entries]
        applied = [e for e in entries if e.kind == "applied"]
        gate_lines = [e for e in entries if e.kind == "gate"]
        drift = [e for e in entries if e.kind == "drift"]
        passed = sum(e.passed for e in gate_lines)
        skipped = sum(e.kind == "skipped" for e in entries)
        clean = passed == len(gate_lines) and not drift
        host.log_styled(f"summary: {len(applied)} statements applied, {passed}/{len(gate_lines)} gates passed"
                        + (f", {skipped} timed gates not re-run (nothing changed)" if skipped else "")
                        + (f", {len(drift)} drifted objects" if self.strict else ""), fg="green" if clean else "red")
        for line in lines:
            host.log(f"  {mask(line)}")
        if self.strict and not clean:
            return _fail(host, f"verify: {len(gate_lines) - passed} gates failed, {len(drift)} objects drifted"
                               " — converge to repair the drift")
        return True


@operation()
def run_summary(strict: bool = False):
    """
    Print what this run changed on the host and every gate with its measured value and threshold (read-only).

    + strict: fail the host when any gate failed or any object drifted (verify)
    """
    if state.is_executing and not refused():
        yield SummaryCommand(strict)


class SnapshotCommand(LabelledCommand):
    """A read-only health snapshot written as JSON."""

    def execute(self, state, host, connector_arguments) -> bool:
        from . import snapshot

        try:
            conn, _ = database(host)
            redis_var = host.data.get("redis_url_env")
            taken = snapshot.take(conn, os.environ.get(redis_var) if redis_var else None)
            reports = host.data.get("reports_dir") or os.environ.get("PGCONVERGE_REPORTS_DIR") or "reports"
            path = snapshot.write(taken, Path(reports), host.data.get("environment") or "default", host.name,
                                  self.label, int(host.data.get("snapshot_retention") or snapshot.RETENTION))
        except (UserError, OSError, psycopg.Error) as exc:
            return _fail(host, f"snapshot {self.label} failed: {exc}")
        host.log(f"snapshot {path}")
        return True


@operation()
def health_snapshot(label: str, after_phase: str | None = None):
    """
    Record a read-only snapshot (pg_stat_statements, sizes, scans, cache hits, cron health, Redis) as JSON.

    + label: e.g. after-phase1
    + after_phase: only when this run applied something of that phase (a no-op run writes no snapshot)
    """
    if not state.is_executing or refused():
        return
    if after_phase and not session().applied_in(after_phase):
        return
    yield SnapshotCommand(label)
