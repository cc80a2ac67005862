"""One run's state: per host its connection, run lock, refusal, journal and baselines; phases.yml loaded once.
It lives on pyinfra's State (one per run), not in module globals: a second run in the same process starts clean."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from . import rendercache
from .evidence import Baseline
from .spec import Spec, load


@dataclass(frozen=True)
class Entry:
    """What the run did on a host, for the summary at the end."""

    kind: str  # "applied", "gate", "drift"
    phase: str
    text: str
    passed: bool = True
    undo: str | None = None  # applied: the statement that removes the new object it created
    step: Any = None  # applied: the step itself (its kind and lock decide how its undo runs)

    @property
    def line(self) -> str:
        if self.kind == "applied":
            return f"applied [{self.phase}] {self.text}"
        if self.kind == "drift":
            return f"drift [{self.phase}] {self.text}"
        return self.text


@dataclass
class HostSession:
    name: str
    conn: psycopg.Connection | None = None
    url: str = ""
    run_locked: bool = False
    refused: str | None = None  # the connection check's one line: every later operation of the host stops
    journal: list[Entry] = field(default_factory=list)
    before: dict[str, Baseline] = field(default_factory=dict)  # latency gate → its statement before its phase
    # a fleet's rollout reads each host's outcome from here (rewritten as the run goes: a failed host stops early)
    summary_path: Path | None = None
    wave: int | None = None
    failure: str | None = None
    started: float = field(default_factory=time.time)
    finished: bool = False  # the run reached its summary: a host whose process died says "incomplete", not "ok"
    changes: int = 0  # statements this run sent to change the database (applied or not)
    # the catalog as last read, and `changes` then: still the catalog while nothing was sent since (a run over
    # many phases that changes nothing reads it once)
    catalog: tuple[int, Any] | None = None

    def record(self, entry: Entry) -> None:
        self.journal.append(entry)
        self.write_summary()

    def fail(self, line: str) -> None:
        self.failure = self.failure or line  # the first failure is the one that stopped the host
        self.write_summary()

    def summary(self) -> dict[str, Any]:
        gates = [e for e in self.journal if e.kind == "gate"]
        drift = [e for e in self.journal if e.kind == "drift"]
        result = "failed" if self.failure else "ok" if self.finished else "incomplete"
        return {"host": self.name, "wave": self.wave, "result": result,
                "applied": sum(e.kind == "applied" for e in self.journal), "gates_passed": sum(e.passed for e in gates),
                "gates": len(gates), "drift": len(drift), "failure": self.failure,
                "first_failed_gate": next((e.text for e in gates if not e.passed), None),
                "duration_s": round(time.time() - self.started, 2)}

    def write_summary(self) -> None:
        if self.summary_path is None:
            return
        self.summary_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.summary_path.with_suffix(".tmp")
        partial.write_text(json.dumps(self.summary(), indent=1))
        partial.replace(self.summary_path)  # a reader never sees half a file

    def applied_in(self, phase: str) -> bool:
        return any(e.kind == "applied" and e.phase == phase for e in self.journal)


@dataclass
class Run:
    hosts: dict[str, HostSession] = field(default_factory=dict)
    # phases.yml loaded once per run, not once per operation and host (a file of 150 indexes took 0.3 s a load)
    specs: dict[str, tuple[tuple[int, int], Spec]] = field(default_factory=dict)
    announced: set[str] = field(default_factory=set)
    stopwatch: Any = None  # the lock timed gates take (operations.stopwatch)
    # declared indexes as the server printed them, by what that print depends on: rendered once per fleet, kept
    # between runs (rendercache.py)
    rendered: dict = field(default_factory=rendercache.load)
    render_gates: dict = field(default_factory=dict)  # phase ids → set once their first host has rendered them

    def host(self, target: Any) -> HostSession:
        if target.name not in self.hosts:
            self.hosts[target.name] = HostSession(target.name)
        return self.hosts[target.name]

    def spec(self, path: str) -> Spec:
        try:
            stat = os.stat(path)
        except OSError:
            return load(path)  # names the missing or unreadable file, as a SpecError
        signature = (stat.st_mtime_ns, stat.st_size)
        cached = self.specs.get(path)
        if cached is None or cached[0] != signature:
            self.specs[path] = (signature, load(path))
        return self.specs[path][1]


def summary_file(folder: str | Path, host_name: str) -> Path:
    """A host's JSON summary: its name without path characters (host names never carry secrets)."""
    return Path(folder) / (re.sub(r"[^A-Za-z0-9_.-]+", "_", host_name.strip("@")) + ".json")


def current(state: Any) -> Run:
    """The run of this pyinfra State."""
    run = getattr(state, "pgconverge_run", None)
    if run is None:
        run = Run()
        state.pgconverge_run = run
    return run
