"""`pgconverge bench --gates`: gates on a busy machine. The lending test application (a million loans, stale
statistics) converged again and again by the real pyinfra CLI while two CPU-bound processes spin and a client
writes loans the whole time: a correct phase must never be reverted, the regression (a partial index that turns the
shelf query into a join over every open loan) always. Also the client's write latency idle and during the builds."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql

from .. import gates
from ..execute import connect
from . import APP_ROLE, Lab, prepare_app_database, reset_statements, seed

# a phase a DBA would write for the desk's count: it changes that query's plan and not the shelf query's
CORRECT_PHASE = """
  - id: desk_counts
    title: "Open loans per desk: an index on desk and return"
    on_gate_failure: revert
    indexes:
      - name: loans_by_desk_returned
        table: loans
        columns: [desk_id, returned_at]
    gates:
      - name: shelf_still_fast
        kind: latency
        query: copies_on_shelf
        max_ratio_to_before: 1.2
        slack_ms: 0.5
        runs: 20{compare}
      - name: desk_not_slower
        kind: latency
        query: open_at_desk
        max_ratio_to_before: 1.2
        slack_ms: 0.5
        runs: 20{compare}
"""
WRITE = ("INSERT INTO lending.loans (id, copy_id, desk_id, lent_at)"
         " SELECT max(id) + 1, 1 + (random() * 99999)::int, 1 + (random() * 3)::int, now() FROM lending.loans")


@contextlib.contextmanager
def busy_cpus(count: int = 2) -> Iterator[None]:
    """`count` processes spinning on the CPU, as a busy machine's neighbours do."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


class Writer:
    """An application client inserting a loan every 10 ms; its latencies and failures, per window."""

    def __init__(self, url: str, statement: str = WRITE):
        self.url, self.statement = url, statement
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name="bench-writer") as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    conn.execute(self.statement)  # type: ignore[arg-type]
                    self.latencies.append((time.perf_counter() - started) * 1000)
                except psycopg.Error as exc:
                    self.failures.append(str(exc).splitlines()[0])
                time.sleep(0.01)

    def window(self) -> int:
        return len(self.latencies)

    def p99(self, since: int, until: int | None = None) -> float:
        samples = self.latencies[since:until] or [0.0]
        return round(gates.percentile(samples, 99), 2)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def load_lending(lab: Lab, app: Path, loans: int) -> str:
    with psycopg.connect(lab.superuser_url(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS lending WITH (FORCE)")
        conn.execute(pgsql.SQL("CREATE DATABASE lending OWNER {}").format(pgsql.Identifier(APP_ROLE)))
    with psycopg.connect(lab.superuser_url("lending"), autocommit=True) as conn:
        prepare_app_database(conn, with_cron=False)
    url = lab.urls()["DATABASE_URL"].rsplit("/", 1)[0] + "/lending"
    schema = (app / "sql" / "schema.sql").read_text().replace(":loans", str(loans))
    with connect(url) as conn:
        for statement in filter(str.strip, re.sub(r"(?m)^--.*$", "", schema).split(";")):
            conn.execute(statement)  # type: ignore[arg-type]
    return url


def gate_lines(out: str) -> list[str]:
    return sorted({m.group(1) for m in re.finditer(r"\] (gate \w+ \(latency.*)", out)})


def stopwatch_would_fail(line: str, ratio: float = 1.2, slack: float = 0.5) -> bool:
    """The rule before plans and work: the p95 after against ratio × the p95 before + slack."""
    after = re.search(r"/ p95 ([\d.]+) .*before p95 ([\d.]+) ms", line)
    return bool(after) and float(after.group(1)) > ratio * float(after.group(2)) + slack  # type: ignore[union-attr]


BOXOFFICE_WRITE = ("INSERT INTO box.orders (id, code, customer_id, event_id, status, total_cents, created_at, expires_at)"
                   " SELECT max(id) + 1, 'bench-' || (max(id) + 1), 1, 1, 'n', 1000, now(), now() + interval '15 min'"
                   " FROM box.orders")


class Series:
    """Converges of one phase under load, each kept one rolled back before the next."""

    def __init__(self, repo: Path, env: dict[str, str], writer: Writer, log):
        self.repo, self.env, self.writer, self.log = repo, env, writer, log

    def run(self, phases: Path, deploy: str, phase: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "pyinfra"), "inventory/lab.py", deploy, "-y",
                               "--data", f"phase={phase}"], cwd=self.repo,
                              env={**self.env, "PGCONVERGE_PHASES": str(phases)},
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=1800)

    def converge(self, label: str, phases: Path, phase: str, correct: bool, converges: int) -> dict[str, Any]:
        reverted, by_stopwatch, seconds, during = 0, 0, [], []
        evidence: dict[str, str] = {}
        for i in range(converges):
            since = self.writer.window()
            started = time.monotonic()
            done = self.run(phases, "deploys/phase.py", phase)
            seconds.append(time.monotonic() - started)
            during.append(self.writer.p99(since))
            out = done.stdout + done.stderr
            if "Traceback" in out or (done.returncode != 0 and "reverted:" not in out):
                raise RuntimeError(f"{label}, converge {i + 1}: {out[-1500:]}")
            reverted += "reverted:" in out
            by_stopwatch += any(stopwatch_would_fail(line) for line in gate_lines(out))
            for line in gate_lines(out):  # one example per gate, verdict and kind of evidence
                evidence.setdefault(re.sub(r"[\d,.]+", "#", line.split(";")[0]), line)
            if done.returncode == 0:
                undo = self.run(phases, "deploys/rollback.py", phase)
                if undo.returncode != 0:
                    raise RuntimeError(f"rollback after {label}: {(undo.stdout + undo.stderr)[-1500:]}")
            self.log(f"  {label}: converge {i + 1}/{converges}: {'reverted' if 'reverted:' in out else 'kept'}"
                     f" in {seconds[-1]:.1f} s, write p99 {during[-1]} ms")
        return {"label": label, "correct": correct, "converges": converges, "reverted": reverted,
                "stopwatch_would_revert": by_stopwatch, "apply_s_median": round(gates.percentile(seconds, 50), 1),
                "write_p99_during_ms_median": round(gates.percentile(during, 50), 2),
                "evidence": list(evidence.values())}


def idle_p99(writer: Writer) -> float:
    time.sleep(5)
    since = writer.window()
    time.sleep(10)
    return writer.p99(since)


def gates_under_load(repo: Path, app: Path, out_dir: Path, converges: int = 10, loans: int = 1_000_000,
                     cpus: int = 2, boxoffice_rows: int = 1_200_000, log=print) -> dict[str, Any]:
    lab = Lab(repo / ".lab" / "bench-gates")
    lab.up(echo=log)
    url = load_lending(lab, app, loans)
    project = out_dir / "project"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(app, project)
    env = {**os.environ, "DATABASE_URL": url, "PGCONVERGE_REPORTS_DIR": str(out_dir / "reports"),
           "PGCONVERGE_BACKUP_DIR": str(out_dir / "backups")}
    report: dict[str, Any] = {"loans": loans, "converges": converges, "cpu_spinners": cpus, "series": []}
    base = (project / "phases.yml").read_text()
    lending = [("lending: correct phase, compare_by: work", "desk_counts", CORRECT_PHASE.format(compare=""), True),
               ("lending: correct phase, compare_by: time", "desk_counts",
                CORRECT_PHASE.format(compare="\n        compare_by: time"), True),
               ("lending: regression (partial index, stale statistics)", "desk_queue", "", False)]
    with busy_cpus(cpus), Writer(url) as writer:
        report["write_p99_idle_ms"] = idle_p99(writer)
        series = Series(repo, env, writer, log)
        for label, phase, extra, correct in lending:
            phases = project / f"phases-{phase}-{len(report['series'])}.yml"
            phases.write_text(base + extra)
            report["series"].append(series.converge(label, phases, phase, correct, converges))
        report["writes"], report["failed_writes"] = len(writer.latencies), len(writer.failures)
    if boxoffice_rows:
        report["boxoffice"] = advised_boxoffice(lab, repo, out_dir, env, converges, cpus, boxoffice_rows, log)
    lab.down()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gates.json").write_text(json.dumps(report, indent=2))
    (out_dir / "gates.md").write_text(gates_markdown(report))
    return report


def advised_boxoffice(lab: Lab, repo: Path, out_dir: Path, env: dict[str, str], converges: int, cpus: int,
                      rows: int, log) -> dict[str, Any]:
    """The box office's own proposal from advise (a not-slower gate on every top statement), converged under load:
    where the issue saw the whole advised phase reverted by its gate on the title search."""
    from .. import advise
    from ..spec import load
    from .bench import load_app, measure_workload

    app = repo / "tests" / "boxoffice"
    url = load_app(lab, app, "boxoffice", rows, log)
    with psycopg.connect(lab.superuser_url("boxoffice"), autocommit=True) as su:
        reset_statements(su)
    spec = load(app / "phases.yml")
    with connect(url) as conn:
        measure_workload(conn, spec, 30, 10, "replay", log)
        advice = advise.advise(conn, spec, offer_declared=False, write_window_s=1.0)
    proposal = advise.write_proposal(advice, out_dir / "boxoffice-proposal")
    with busy_cpus(cpus), Writer(url, BOXOFFICE_WRITE) as writer:
        figures: dict[str, Any] = {"rows": rows, "write_p99_idle_ms": idle_p99(writer)}
        result = Series(repo, {**env, "DATABASE_URL": url}, writer, log).converge(
            "box office: advise's proposal", proposal, "advised", True, converges)
        figures.update(series=[result], writes=len(writer.latencies), failed_writes=len(writer.failures))
    return figures


def gates_markdown(report: dict[str, Any]) -> str:
    lines = [f"### Gates under load: {report['cpu_spinners']} CPU-bound processes and a writing client throughout", "",
             "| series | converges | reverted | expected | the stopwatch rule (p95 ≤ 1.2× before + 0.5 ms) would have"
             " reverted | apply median | write p99 during (median) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    groups = [report, *([report["boxoffice"]] if "boxoffice" in report else [])]
    every = [s for group in groups for s in group["series"]]
    for s in every:
        want = 0 if s["correct"] else s["converges"]
        lines.append(f"| {s['label']} | {s['converges']} | {s['reverted']} | {want} | {s['stopwatch_would_revert']}"
                     f" | {s['apply_s_median']} s | {s['write_p99_during_ms_median']} ms |")
    lines.append("")
    lines += [f"- {label}: write p99 with the CPUs busy, no converge: {g['write_p99_idle_ms']} ms ({g['writes']:,}"
              f" writes, {g['failed_writes']} failed)" for label, g in zip(("lending", "box office"), groups, strict=False)]
    lines += ["", "evidence printed (one line per gate and outcome):", ""]
    lines += [f"- `{line[:400]}`" for s in every for line in s["evidence"]]
    return "\n".join(lines + [""])


def build_priority_at_scale(repo: Path, out_dir: Path, scale: str = "L", log=print) -> dict[str, Any]:
    """Phase 1's twelve concurrent builds on SalesFlow at `scale` with the application writing: the writers' p99
    idle, during the builds at normal priority and at build_priority low (nice 19, idle I/O), and the apply time."""
    from ..spec import load
    from .bench import WriteLoad

    lab = Lab(repo / ".lab" / "bench-priority")
    url = lab.up(echo=log)["DATABASE_URL"]
    seed.seed(url, scale, 42, echo=log)
    with connect(url) as conn:
        conn.execute("VACUUM ANALYZE")
        leads = [tuple(r) for r in conn.execute("SELECT id, user_id FROM leads ORDER BY id LIMIT 5000").fetchall()]
    spec = load(repo / "phases.yml")
    env = {**os.environ, "DATABASE_URL": url, "PGCONVERGE_REPORTS_DIR": str(out_dir / "reports"),
           "PGCONVERGE_BACKUP_DIR": str(out_dir / "backups"), "PGCONVERGE_PHASES": str(spec.path)}
    pyinfra = [str(Path(sys.executable).parent / "pyinfra"), "inventory/lab.py"]
    writers = WriteLoad(url, leads)
    figures: dict[str, Any] = {"scale": scale, "runs": []}
    writers.start()
    time.sleep(15)
    writers.stop()
    figures["idle"] = writers.figures()
    for priority in ("normal", "low", "normal", "low"):
        writers.start()
        started = time.monotonic()
        done = subprocess.run([*pyinfra, "deploys/phase1.py", "-y", "--data", f"build_priority={priority}"],
                              cwd=repo, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        apply_s = time.monotonic() - started
        writers.stop()
        if done.returncode != 0:
            raise RuntimeError(f"phase1 at build_priority {priority}: {(done.stdout + done.stderr)[-1500:]}")
        figures["runs"].append({"priority": priority, "apply_s": round(apply_s, 1), **writers.figures()})
        log(f"  build_priority {priority}: apply {apply_s:.1f} s, write p99 {writers.figures()['p99_ms']} ms")
        undo = subprocess.run([*pyinfra, "deploys/rollback.py", "-y", "--data", "phase=phase1"], cwd=repo, env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if undo.returncode != 0:
            raise RuntimeError(f"rollback: {(undo.stdout + undo.stderr)[-1500:]}")
    lab.down()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "priority.json").write_text(json.dumps(figures, indent=2))
    return figures


def priority_markdown(figures: dict[str, Any]) -> str:
    idle = figures["idle"]["p99_ms"]
    lines = [f"### Phase 1's builds at scale {figures['scale']} with the application writing", "",
             f"write p99 idle: {idle} ms", "", "| build_priority | apply | writes | failed | write p99 | × idle |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['priority']} | {r['apply_s']} s | {r['writes']:,} | {r['failed']} | {r['p99_ms']} ms |"
              f" {r['p99_ms'] / max(idle, 0.01):.1f}× |" for r in figures["runs"]]
    return "\n".join(lines + [""])
