"""`pgconverge bench`: KPI latencies before any phase and after each, writes during apply, runner overhead.

It runs on a lab of its own (.lab/bench-<scale>, loopback only) so the numbers never depend on the demo lab.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from .. import backup, gates, pipeline
from ..errors import UserError
from ..execute import connect, run_step
from ..names import QualifiedName
from ..spec import Spec
from . import Lab, reset_statements, seed

# KPI class → the query each stage uses: the best one that the stage's objects make possible.
CLASSES: dict[str, dict[str, str]] = {
    "dashboard analytics": {"before": "dashboard_analytics", "phase2": "dashboard_analytics_mv"},
    "message events list": {"before": "message_events_list"},
    "events list by channel": {"before": "message_events_list_channel"},
    "P-score batch, old way (100 queries)": {"before": "pscore_per_lead"},
    "P-score batch (calculate_lead_event_stats)": {"phase3": "pscore_batch"},
    "hot leads": {"before": "hot_leads", "phase2": "hot_leads_mv"},
    "unified inbox": {"before": "unified_inbox", "phase3": "unified_inbox_fn"},
    "template performance": {"before": "template_performance", "phase2": "template_performance_mv"},
}
STAGES = ("before", "phase1", "phase2", "phase3")


def query_for(kpi: str, stage: str) -> str | None:
    chosen = None
    for candidate in STAGES[: STAGES.index(stage) + 1]:
        chosen = CLASSES[kpi].get(candidate, chosen)
    return chosen


@dataclass
class WriteLoad:
    """Writers on loopback: INSERT an event and UPDATE a lead, paced, each in its own transaction."""

    url: str
    leads: list[tuple[Any, Any]]
    threads: int = 2
    pause: float = 0.01
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._stop.clear()
        self.latencies, self.failures = [], []
        self._workers = [threading.Thread(target=self._write, args=(i,), daemon=True) for i in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def _write(self, seed_value: int) -> None:
        rng = random.Random(seed_value)
        with psycopg.connect(self.url, autocommit=True, application_name="pgconverge-bench-writer") as conn:
            while not self._stop.is_set():
                lead, user = rng.choice(self.leads)
                started = time.perf_counter()
                try:
                    conn.execute(
                        "INSERT INTO message_events (user_id, lead_id, channel, direction, status, subject, created_at)"
                        " VALUES (%s, %s, 'email', 'inbound', 'delivered', 'bench write', now())", [user, lead])
                    conn.execute("UPDATE leads SET last_activity_at = now() WHERE id = %s", [lead])
                    self.latencies.append((time.perf_counter() - started) * 1000)
                except psycopg.Error as exc:
                    self.failures.append(str(exc).splitlines()[0])
                time.sleep(self.pause)

    def figures(self) -> dict[str, Any]:
        samples = self.latencies or [0.0]
        return {"writes": len(self.latencies), "failed": len(self.failures),
                "p50_ms": round(gates.percentile(samples, 50), 2), "p99_ms": round(gates.percentile(samples, 99), 2),
                "first_failure": self.failures[0] if self.failures else None}


def measure(conn: psycopg.Connection, spec: Spec, stage: str, runs: int, budget_s: float, log) -> dict[str, Any]:
    params = gates.ParamSampler(conn, spec)
    result: dict[str, Any] = {}
    for kpi in CLASSES:
        name = query_for(kpi, stage)
        if name is None:
            continue
        query = spec.query(name)
        samples = gates.time_within(conn, query, params, runs, budget_s)
        result[kpi] = {"query": name, "runs": len(samples), **gates.percentiles(samples, 3)}
        log(f"  {stage:<7} {kpi:<45} p95 {result[kpi]['p95_ms']:>10.2f} ms ({len(samples)} runs, {name})")
    return result


def converge(url: str, spec: Spec, phase_id: str, log) -> float:
    started = time.monotonic()
    with connect(url) as conn:
        steps = pipeline.converge_plan(conn, spec, [phase_id]).steps
        for step in steps:
            run_step(conn, url, step, spec.settings, lambda _line: None)
    log(f"  applied {phase_id}: {len(steps)} steps in {time.monotonic() - started:.1f} s")
    return time.monotonic() - started


def rollback_all(url: str, spec: Spec) -> None:
    with connect(url) as conn:
        for step in pipeline.rollback_plan(conn, spec, spec.phases[0].id).steps:
            run_step(conn, url, step, spec.settings, lambda _line: None)
        conn.execute("VACUUM ANALYZE")


def backup_times(url: str, out_dir: Path, label: str) -> dict[str, Any]:
    """The pre-change backup (schema and managed objects) as every phase takes it."""
    started = time.monotonic()
    record = backup.take_backup(url, out_dir / "backups", "bench", label, retention=2, host="bench")
    return {"mode": record.mode, "seconds": round(time.monotonic() - started, 2), "bytes": record.size}


def changed_view_spec(spec: Spec, view: str) -> Spec:
    """The same phases with one view's query changed, so that converging it builds beside and swaps."""
    phases = []
    for phase in spec.phases:
        views = tuple(dataclasses.replace(v, query=v.query.rstrip().rstrip(";") + "\n-- changed for the bench\n"
                                          "LIMIT ALL") if v.name == view else v for v in phase.materialized_views)
        phases.append(dataclasses.replace(phase, objects={**phase.objects, "materialized_views": views}))
    return dataclasses.replace(spec, phases=tuple(phases))


def swap_probe(url: str, spec: Spec, view: str, reader_s: float, log) -> dict[str, Any]:
    """Swap a view while a report reads it for `reader_s` and a probe queries it every 10 ms: the longest any
    probe query waited is what the application would feel (bounded by exclusive_lock_timeout per try)."""
    phase_id = next(p.id for p in spec.phases if any(v.name == view for v in p.materialized_views))
    waits: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with psycopg.connect(url, autocommit=True, application_name="pgconverge-bench-probe") as conn:
            while not stop.is_set():
                started = time.perf_counter()
                conn.execute(f"SELECT count(*) FROM {view}").fetchone()  # type: ignore[arg-type]
                waits.append(time.perf_counter() - started)
                time.sleep(0.01)

    def report_reader() -> None:
        with psycopg.connect(url, autocommit=True, application_name="pgconverge-bench-report") as conn:
            conn.execute(f"SELECT count(*), pg_sleep({reader_s}) FROM {view}")  # type: ignore[arg-type]

    threads = [threading.Thread(target=probe), threading.Thread(target=report_reader)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    converge(url, changed_view_spec(spec, view), phase_id, log)
    swap_s = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join()
    converge(url, spec, phase_id, log)
    figures = {"view": view, "report_reader_s": reader_s, "probe_queries": len(waits),
               "probe_max_wait_s": round(max(waits), 3), "probe_p99_ms": round(gates.percentile(
                   [w * 1000 for w in waits], 99), 2), "swap_s": round(swap_s, 1),
               "exclusive_lock_timeout": spec.settings.exclusive_lock_timeout}
    log(f"  MV swap of {view} under a {reader_s} s report: probe max wait {figures['probe_max_wait_s']} s"
        f" over {len(waits)} queries")
    return figures


def runner_overhead(url: str, repo: Path) -> dict[str, float]:
    """Wall time of the real pyinfra CLI on a converged database: plan only, and apply (incl. every gate)."""
    pyinfra = str(Path(sys.executable).parent / "pyinfra")
    env = {**os.environ, "DATABASE_URL": url}
    figures = {}
    for label, extra in (("dry_s", ["--dry"]), ("apply_with_gates_s", ["-y"])):
        started = time.monotonic()
        done = subprocess.run([pyinfra, "inventory/lab.py", "deploys/all.py", *extra, "--data", "backup_dir=/tmp"],
                              cwd=repo, env=env, capture_output=True, text=True)
        figures[label] = round(time.monotonic() - started, 2)
        if done.returncode != 0:
            figures[label + "_failed"] = 1.0
    return figures


def run(spec: Spec, scale: str, runs: int, out_dir: Path, repo: Path, log=print) -> dict[str, Any]:
    lab = Lab(repo / ".lab" / f"bench-{scale}")
    urls = lab.up(echo=log)
    url = urls["DATABASE_URL"]
    seed_started = time.monotonic()
    seed.seed(url, scale, 42, echo=log)
    seed_s = time.monotonic() - seed_started
    rollback_all(url, spec)
    with connect(url) as conn:
        leads = [tuple(r) for r in conn.execute("SELECT id, user_id FROM leads ORDER BY id LIMIT 5000").fetchall()]
    report: dict[str, Any] = {"scale": scale, "rows": seed.SCALES[scale].__dict__, "seed_s": round(seed_s, 1),
                              "stages": {}, "apply_s": {}, "writes": {}}
    writers = WriteLoad(url, leads)
    log("write load while idle (10 s)")
    writers.start()
    time.sleep(10)
    writers.stop()
    report["writes"]["idle"] = writers.figures()
    with connect(url) as conn:
        report["stages"]["before"] = measure(conn, spec, "before", runs, 20, log)
    report["backup"] = {}
    for phase in spec.phases:
        report["backup"][phase.id] = backup_times(url, out_dir, phase.id)
        if phase.id in ("phase1", "phase2"):
            writers.start()
            report["apply_s"][phase.id] = round(converge(url, spec, phase.id, log), 1)
            writers.stop()
            report["writes"][f"during {phase.id}"] = writers.figures()
        else:
            report["apply_s"][phase.id] = round(converge(url, spec, phase.id, log), 1)
        with connect(url) as conn:
            conn.execute("VACUUM ANALYZE")
            report["stages"][phase.id] = measure(conn, spec, phase.id, runs, 20, log)
    views = [v.name for p in spec.phases for v in p.materialized_views if v.state == "present"]
    if views:
        report["mv_swap"] = swap_probe(url, spec, views[-1], 3.0, log)
    report["runner_overhead"] = runner_overhead(url, repo)
    lab.down()  # the data stays on disk for the next run; the servers stop
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "bench.md").write_text(to_markdown(report))
    chart(report, out_dir / "bench.png")
    return report


def to_markdown(report: dict[str, Any]) -> str:
    stages = report["stages"]
    lines = [f"### KPI p95 at scale {report['scale']} (ms; {report['rows']['events']:,} message events)", "",
             "| KPI class | before | after phase 1 | after phase 2 | after phase 3 | change |",
             "|---|---:|---:|---:|---:|---:|"]
    for kpi in CLASSES:
        cells = [stages[s][kpi]["p95_ms"] if kpi in stages.get(s, {}) else None for s in STAGES]
        first = next((c for c in cells if c is not None), None)
        last = cells[-1]
        change = f"{100 * (last - first) / first:+.1f} %" if first and last is not None and cells[0] else "new"
        lines.append(f"| {kpi} | " + " | ".join("—" if c is None else f"{c:,.2f}" for c in cells) + f" | {change} |")
    old, new = stages["before"].get("P-score batch, old way (100 queries)"), stages["phase3"].get(
        "P-score batch (calculate_lead_event_stats)")
    if old and new:
        lines += ["", f"P-score batch of 100 leads: old way {old['p95_ms']:,.2f} ms → calculate_lead_event_stats "
                      f"{new['p95_ms']:,.2f} ms (p95)."]
    lines += ["", "| writes | count | failed | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for label, w in report["writes"].items():
        lines.append(f"| {label} | {w['writes']} | {w['failed']} | {w['p50_ms']} | {w['p99_ms']} |")
    lines += ["", "| pre-change backup (schema + managed objects) | seconds | bytes |", "|---|---:|---:|"]
    for phase_id, b in report.get("backup", {}).items():
        lines.append(f"| before {phase_id} | {b['seconds']} | {b['bytes']:,} |")
    swap = report.get("mv_swap")
    if swap:
        lines += ["", f"MV swap of {swap['view']} while a report read it for {swap['report_reader_s']} s: the probe"
                      f" (a query every 10 ms, {swap['probe_queries']} queries) waited at most"
                      f" {swap['probe_max_wait_s']} s (p99 {swap['probe_p99_ms']} ms; exclusive_lock_timeout"
                      f" {swap['exclusive_lock_timeout']}); the swap took {swap['swap_s']} s."]
    overhead = report["runner_overhead"]
    lines += ["", "Apply time: " + ", ".join(f"{k} {v} s" for k, v in report["apply_s"].items())
              + f". No-op run of all phases with pyinfra: plan only {overhead['dry_s']} s, "
                f"apply incl. every gate {overhead['apply_with_gates_s']} s. Seed {report['seed_s']} s.", ""]
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kpis = [k for k in CLASSES if any(k in report["stages"][s] for s in STAGES)]
    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.2
    for i, stage in enumerate(STAGES):
        values = [report["stages"][stage].get(k, {}).get("p95_ms", float("nan")) for k in kpis]
        ax.bar([x + (i - 1.5) * width for x in range(len(kpis))], values, width, label=stage)
    ax.set_yscale("log")
    ax.set_ylabel("p95 latency, ms (log scale)")
    ax.set_title(f"SalesFlow KPI queries at scale {report['scale']}: before and after each phase")
    ax.set_xticks(range(len(kpis)))
    ax.set_xticklabels([k.replace(" (", "\n(") for k in kpis], rotation=30, ha="right", fontsize=8)
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def advise_comparison(spec: Spec, scale: str, runs: int, out_dir: Path, repo: Path, log=print) -> dict[str, Any]:
    """Phase 1's indexes removed, the workload replayed, `advise` asked: KPI p95 with the advised indexes next to
    the shipped phase 1 set, and each statement's estimated improvement next to the measured one."""
    import tempfile

    from .. import advise
    from ..spec import load

    lab = Lab(repo / ".lab" / f"bench-{scale}")
    url = lab.up(echo=log)["DATABASE_URL"]
    seed.seed(url, scale, 42, echo=log)
    rollback_all(url, spec)
    with psycopg.connect(lab.superuser_url(lab.database), autocommit=True) as su:
        su.execute("CREATE EXTENSION IF NOT EXISTS hypopg WITH SCHEMA extensions")
        reset_statements(su, whole_cluster=True)
    with connect(url) as conn:
        before = measure(conn, spec, "phase1", min(runs, 20), 5, log)  # the replay advise reads
        started = time.monotonic()
        # advise's own choice against the shipped set; writes measured as the CLI does (no writer: none)
        advice = advise.advise(conn, spec, offer_declared=False, write_window_s=1.0)
        advise_s = time.monotonic() - started
    # the proposal as a user gets it from `advise --output-dir`
    advised_spec = load(advise.write_proposal(advice, Path(tempfile.mkdtemp(prefix="pgconverge-advised-"))))
    report: dict[str, Any] = {"scale": scale, "advise_s": round(advise_s, 2), "indexes": [
        {"name": c.name, "table": str(QualifiedName(c.schema, c.table)), "columns": list(c.columns), "include": list(c.include),
         "where": c.where} for c, *_ in advice.chosen]}
    converge(url, advised_spec, "advised", log)
    with connect(url) as conn:
        conn.execute("VACUUM ANALYZE")
        report["advised"] = measure(conn, spec, "phase1", runs, 20, log)
    rollback_all(url, advised_spec)
    converge(url, spec, spec.phases[0].id, log)
    with connect(url) as conn:
        conn.execute("VACUUM ANALYZE")
        report["shipped"] = measure(conn, spec, "phase1", runs, 20, log)
    rollback_all(url, spec)
    report["before"] = before
    report["estimates"] = [{"query": advise.one_line(s.query)[:80], "workload": advice.declared.get(s.queryid),
                            "calls": s.calls, "cost_before": round(b, 1), "cost_after": round(a, 1)}
                           for s, b, a in advice.statements]
    lab.down()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "advise.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "advise.md").write_text(advise_markdown(report))
    return report


def advise_markdown(report: dict[str, Any]) -> str:
    lines = [f"### Advised vs shipped phase-1 indexes at scale {report['scale']} (KPI p95, ms)", "",
             f"advise took {report['advise_s']} s and chose {len(report['indexes'])} indexes: "
             + "; ".join(f"{i['table']} ({', '.join(i['columns'])})"
                         + (f" INCLUDE ({', '.join(i['include'])})" if i.get("include") else "")
                         + (f" WHERE {i['where']}" if i.get("where") else "") for i in report["indexes"]), "",
             "| KPI class | before (replay) | advised | shipped phase 1 | advised / shipped |", "|---|---:|---:|---:|---:|"]
    for kpi, shipped in report["shipped"].items():
        advised = report["advised"].get(kpi, {}).get("p95_ms")
        before = report["before"].get(kpi, {}).get("p95_ms")
        ratio = f"{advised / shipped['p95_ms']:.2f}×" if advised is not None and shipped["p95_ms"] else "—"
        lines.append(f"| {kpi} | {before if before is not None else '—'} | {advised} | {shipped['p95_ms']} | {ratio} |")
    # estimated (planner cost) next to measured (p95) improvement, per statement that is a declared KPI query
    measured = {m["query"]: (m["p95_ms"], report["advised"].get(kpi, {}).get("p95_ms"))
                for kpi, m in report["before"].items()}
    lines += ["", "| statement | workload query | calls | est. cost before → after | estimated | measured p95"
              " before → advised |", "|---|---|---:|---:|---:|---:|"]
    for e in report["estimates"]:
        estimated = f"{e['cost_before'] / max(e['cost_after'], 0.01):,.0f}× cheaper"
        before, after = measured.get(e.get("workload"), (None, None))
        seen = f"{before} → {after} ms ({before / after:,.0f}× faster)" if before and after else "—"
        lines.append(f"| {e['query']} | {e.get('workload') or '—'} | {e['calls']} | {e['cost_before']:,} →"
                     f" {e['cost_after']:,} | {estimated} | {seen} |")
    return "\n".join(lines) + "\n"


def catalog_noop(phases_path: Path, repo: Path, out_dir: Path, tables: int = 3000, declared: int = 150,
                 runs: int = 10, log=print) -> dict[str, Any]:
    """A database with `tables` tables besides the application's and `declared` more indexes declared on them:
    wall time of the real pyinfra CLI for a no-op converge of every phase, and what the reports folder grows by."""
    import shutil

    import yaml

    lab = Lab(repo / ".lab" / "bench-catalog")
    url = lab.up(echo=log)["DATABASE_URL"]
    seed.seed(url, "S", 42, echo=log)
    with connect(url) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bulk")
        # one transaction may not hold locks on thousands of tables (max_locks_per_transaction): 100 at a time
        for first in range(1, tables + 1, 100):
            conn.execute(f"DO $$ BEGIN FOR i IN {first}..{min(first + 99, tables)} LOOP EXECUTE format("  # type: ignore[arg-type]
                         "'CREATE TABLE IF NOT EXISTS bulk.t%s (id bigint PRIMARY KEY, a int, b text)',"
                         " lpad(i::text, 4, '0')); END LOOP; END $$")
    project = out_dir / "catalog-project"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(phases_path.parent / "sql", project / "sql")
    # phases: is the file's last section: the new phase is appended to it as text, its indexes one flow mapping each
    indexes = "".join(f"      - {{name: bulk_t{i:04d}_a, table: bulk.t{i:04d}, columns: [a]}}\n"
                      for i in range(1, declared + 1))
    (project / "phases.yml").write_text(phases_path.read_text().rstrip("\n") + "\n  - id: bulk\n"
                                        "    title: indexes on another team's tables\n    backup: false\n"
                                        "    indexes:\n" + indexes)
    document = yaml.safe_load(phases_path.read_text())
    reports = out_dir / "catalog-reports"
    shutil.rmtree(reports, ignore_errors=True)
    env = {**os.environ, "DATABASE_URL": url, "PGCONVERGE_PHASES": str(project / "phases.yml"),
           "PGCONVERGE_REPORTS_DIR": str(reports), "PGCONVERGE_BACKUP_DIR": str(out_dir / "catalog-backups")}
    pyinfra = [str(Path(sys.executable).parent / "pyinfra"), "inventory/lab.py", "deploys/all.py"]

    def timed(argv: list[str]) -> float:
        started = time.monotonic()
        done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise UserError(f"{' '.join(argv[1:])} failed: {(done.stdout + done.stderr)[-600:]}")
        return time.monotonic() - started

    log(f"converging {tables:,} extra tables with {declared} declared indexes once")
    timed([*pyinfra, "-y"])

    def folder() -> tuple[int, int]:
        files = [p for p in reports.rglob("*") if p.is_file()] if reports.exists() else []
        return len(files), sum(p.stat().st_size for p in files)

    files_before, bytes_before = folder()
    noop = [timed([*pyinfra, "-y"]) for _ in range(runs)]
    files_after, bytes_after = folder()
    plan_s = timed([str(Path(sys.executable).parent / "pgconverge"), "plan", "inventory/lab.py", "deploys/all.py",
                    "--output", str(out_dir / "catalog-plan.md")])
    dry_s = timed([*pyinfra, "--dry"])
    lab.down()
    figures = {"extra_tables": tables, "declared_indexes": declared + sum(
        len(p.get("indexes") or []) for p in document["phases"]), "noop_runs": runs,
        "noop_median_s": round(gates.percentile(noop, 50), 2), "noop_max_s": round(max(noop), 2),
        "dry_s": round(dry_s, 2), "plan_s": round(plan_s, 2), "reports_files_before": files_before,
        "reports_files_after": files_after, "reports_bytes_before": bytes_before, "reports_bytes_after": bytes_after}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "catalog.json").write_text(json.dumps(figures, indent=2))
    return figures


def catalog_markdown(figures: dict[str, Any]) -> str:
    return "\n".join([
        f"### No-op converge with {figures['extra_tables']:,} other tables, {figures['declared_indexes']} declared"
        " indexes", "",
        "| figure | value | target |", "|---|---:|---:|",
        f"| no-op `deploys/all.py -y`, median of {figures['noop_runs']} | {figures['noop_median_s']} s | ≤ 2 s |",
        f"| no-op, slowest run | {figures['noop_max_s']} s | |",
        f"| `deploys/all.py --dry` | {figures['dry_s']} s | |",
        f"| `pgconverge plan` | {figures['plan_s']} s | |",
        f"| reports folder before → after the no-op runs | {figures['reports_files_before']} files,"
        f" {figures['reports_bytes_before']:,} B → {figures['reports_files_after']} files,"
        f" {figures['reports_bytes_after']:,} B | no growth |", ""])


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise UserError(f"{' '.join(argv[1:])} failed: {(done.stdout + done.stderr)[-800:]}")
    return time.monotonic() - started


def fleet_noop(phases_path: Path, repo: Path, out_dir: Path, sizes: tuple[int, ...] = (1, 20, 100),
               deploy: str = "deploys/phase1.py", runs: int = 3, log=print) -> dict[str, Any]:
    """Converge and no-op wall times of the real pyinfra CLI over fleets of 1, 20, 100 databases (above 20 spread
    over two clusters), each a copy of a scale-S database, one inventory of `@db/…` hosts."""
    from psycopg import sql as psql

    from . import APP_ROLE, prepare_app_database

    labs = [Lab(repo / ".lab" / "bench-fleet-a"), Lab(repo / ".lab" / "bench-fleet-b")]
    for lab in labs:
        lab.up(echo=log)
        with psycopg.connect(lab.superuser_url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_connections = 400")  # 100 databases, each with a run and a watcher
        lab.down()
        lab.up(echo=log)
        with psycopg.connect(lab.superuser_url(), autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS fleet_template WITH (FORCE)")
            conn.execute(psql.SQL("CREATE DATABASE fleet_template OWNER {}").format(psql.Identifier(APP_ROLE)))
        with psycopg.connect(lab.superuser_url("fleet_template"), autocommit=True) as conn:
            prepare_app_database(conn, with_cron=False)
        seed.seed(lab.urls()["DATABASE_URL"].rsplit("/", 1)[0] + "/fleet_template", "S", 42, echo=log)
    results = []
    pyinfra = str(Path(sys.executable).parent / "pyinfra")
    for size in sizes:
        members = [(f"t{i:03d}", labs[i % 2] if size > 20 else labs[0]) for i in range(size)]
        env = {**os.environ, "PGCONVERGE_PHASES": str(phases_path),
               "PGCONVERGE_BACKUP_DIR": str(out_dir / "fleet-backups"), "PGCONVERGE_REPORTS_DIR": str(out_dir / "r")}
        for name, lab in members:
            with psycopg.connect(lab.superuser_url(), autocommit=True) as conn:
                conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(f"fleet_{name}")))
                conn.execute(psql.SQL("CREATE DATABASE {} TEMPLATE fleet_template OWNER {}").format(
                    psql.Identifier(f"fleet_{name}"), psql.Identifier(APP_ROLE)))
            env[f"FLEET_{name.upper()}_URL"] = lab.urls()["DATABASE_URL"].rsplit("/", 1)[0] + f"/fleet_{name}"
        inventory = out_dir / f"fleet-{size}.py"
        out_dir.mkdir(parents=True, exist_ok=True)
        inventory.write_text("fleet = [\n" + "".join(
            f'    ("@db/{name}", {{"database_url_env": "FLEET_{name.upper()}_URL", "environment": "bench"}}),\n'
            for name, _ in members) + "]\n")

        converge_s = _timed([pyinfra, str(inventory), deploy, "-y"], repo, env)
        noop = [_timed([pyinfra, str(inventory), deploy, "-y"], repo, env) for _ in range(runs)]
        results.append({"databases": size, "clusters": 2 if size > 20 else 1, "converge_s": round(converge_s, 2),
                        "noop_median_s": round(gates.percentile(noop, 50), 2)})
        log(f"{size} databases: converge {converge_s:.1f} s, no-op median {gates.percentile(noop, 50):.2f} s")
        for name, lab in members:
            with psycopg.connect(lab.superuser_url(), autocommit=True) as conn:
                conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(f"fleet_{name}")))
    for lab in labs:
        lab.down()
    one = next((r for r in results if r["databases"] == 1), results[0])
    for r in results:
        r["converge_ratio"] = round(r["converge_s"] / one["converge_s"], 2)
        r["noop_ratio"] = round(r["noop_median_s"] / one["noop_median_s"], 2)
    figures = {"deploy": deploy, "noop_runs": runs, "sizes": results}
    (out_dir / "fleet.json").write_text(json.dumps(figures, indent=2))
    return figures


def fleet_markdown(figures: dict[str, Any]) -> str:
    lines = [f"### Fleets: `{figures['deploy']}` over N databases (scale S each), real pyinfra CLI", "",
             "| databases | clusters | converge | ratio to 1 | no-op (median of"
             f" {figures['noop_runs']}) | ratio to 1 |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['databases']} | {r['clusters']} | {r['converge_s']} s | {r['converge_ratio']}× |"
              f" {r['noop_median_s']} s | {r['noop_ratio']}× |" for r in figures["sizes"]]
    return "\n".join(lines + ["", "target: no-op(20) ≤ 2× no-op(1)", ""])


def load_app(lab: Lab, app: Path, database: str, rows: int, log) -> str:
    """A fresh database for a test application: its sql/schema/*.sql run by the application's owner in order,
    `:orders` standing for the size of its main table; returns its URL."""
    from psycopg import sql as pgsql

    from . import APP_ROLE, prepare_app_database

    with psycopg.connect(lab.superuser_url(), autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(database)))
        conn.execute(pgsql.SQL("CREATE DATABASE {} OWNER {}").format(pgsql.Identifier(database),
                                                                    pgsql.Identifier(APP_ROLE)))
    with psycopg.connect(lab.superuser_url(database), autocommit=True) as conn:
        prepare_app_database(conn, with_cron=False)
    url = lab.urls()["DATABASE_URL"].rsplit("/", 1)[0] + f"/{database}"
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        for path in sorted((app / "sql" / "schema").glob("*.sql")):
            conn.execute(path.read_text().replace(":orders", str(rows)))  # type: ignore[arg-type]
        conn.execute("VACUUM ANALYZE")  # what autovacuum would have done by the time anyone advises
        counts = conn.execute("SELECT string_agg(format('%s %s', relname, to_char(n_live_tup, 'FM9,999,999')), ', '"
                              " ORDER BY n_live_tup DESC) FROM pg_stat_user_tables WHERE n_live_tup >= 100000"
                              ).fetchone()
    log(f"  loaded {app.name} in {time.monotonic() - started:.0f} s: {counts[0] if counts else ''}")
    return url


def measure_workload(conn: psycopg.Connection, spec: Spec, runs: int, budget_s: float, stage: str,
                     log) -> dict[str, Any]:
    """snapshot's p50/p95/p99 of every declared workload query whose object exists at this stage, logged."""
    from ..snapshot import measure_workload as measured

    result = measured(conn, spec, runs, budget_s)
    for name, figures in result.items():
        log(f"  {stage:<12} {name:<28} p95 {figures['p95_ms']:>10.2f} ms ({figures['runs']} runs)")
    return result


class Ingest(threading.Thread):
    """An application's writer: its INSERT every 50 ms until stopped, failures counted."""

    def __init__(self, url: str, statement: str):
        super().__init__(daemon=True)
        self.url, self.statement = url, statement
        self.stop = threading.Event()
        self.batches = self.failed = 0

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.wait(0.05):
                try:
                    conn.execute(self.statement)  # type: ignore[arg-type]
                    self.batches += 1
                except psycopg.Error:
                    self.failed += 1


def app_advise_comparison(app: Path, rows: int, runs: int, out_dir: Path, repo: Path, log=print) -> dict[str, Any]:
    """A test application of our own: its workload replayed on its bare schema, `advise` asked (its own choice,
    not the application's declared indexes), its proposal applied and measured, then rolled back and the
    application's hand-written phases applied and measured: p95 per query before → advised → hand-written, and
    advise's verdict for each."""
    import tempfile

    from .. import advise
    from ..spec import load

    spec = load(app / "phases.yml")
    lab = Lab(repo / ".lab" / f"bench-{app.name}")
    lab.up(echo=log)
    url = load_app(lab, app, app.name, rows, log)
    # an application that declares its ingest (sql/writer.sql) keeps writing while advise reads and indexes build
    writer = Ingest(url, (app / "sql" / "writer.sql").read_text()) if (app / "sql" / "writer.sql").is_file() else None
    if writer:
        writer.start()
    with psycopg.connect(lab.superuser_url(app.name), autocommit=True) as su:
        reset_statements(su, whole_cluster=True)
    with connect(url) as conn:
        before = measure_workload(conn, spec, min(runs, 30), 10, "before", log)  # the replay advise reads
        started = time.monotonic()
        advice = advise.advise(conn, spec, offer_declared=False, write_window_s=1.0)
        advise_s = time.monotonic() - started
    report: dict[str, Any] = {"app": app.name, "rows": rows, "advise_s": round(advise_s, 2),
                              "write_basis": advice.write_basis, "indexes": [
        {"name": c.name, "table": str(QualifiedName(c.schema, c.table)), "columns": list(c.columns),
         "include": list(c.include), "where": c.where} for c, *_ in advice.chosen],
        "left_out": [{"name": c.name, "why": why} for c, _, why in advice.rejected], "before": before}
    names = advice.declared
    report["verdicts"] = {names.get(s.queryid, str(s.queryid)): advice.verdicts.get(s.queryid, "")
                          for s, _, _ in advice.statements}
    report["estimates"] = {names.get(s.queryid, str(s.queryid)): [round(b, 1), round(a, 1)]
                           for s, b, a in advice.statements}
    if advice.chosen:
        advised_spec = load(advise.write_proposal(advice, Path(tempfile.mkdtemp(prefix="pgconverge-advised-"))))
        converge(url, advised_spec, "advised", log)
        with connect(url) as conn:
            conn.execute("VACUUM ANALYZE")
            report["advised"] = measure_workload(conn, spec, runs, 20, "advised", log)
        rollback_all(url, advised_spec)
    else:
        report["advised"] = before
    for phase in spec.phases:
        converge(url, spec, phase.id, log)
    with connect(url) as conn:
        conn.execute("VACUUM ANALYZE")
        report["hand_written"] = measure_workload(conn, spec, runs, 20, "hand-written", log)
    if writer:
        writer.stop.set()
        writer.join(30)
        report["writes"] = {"batches": writer.batches, "failed": writer.failed}
        log(f"  the writer: {writer.batches} batches written during the run, {writer.failed} failed")
    lab.down()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "advise.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "advise.md").write_text(app_advise_markdown(report))
    return report


# a query is no worse than before within this ratio plus this slack (what the proposal's gates allow)
NOT_SLOWER = (1.2, 0.5)


def app_advise_markdown(report: dict[str, Any]) -> str:
    ratio, slack = NOT_SLOWER
    lines = [f"### advise on {report['app']} ({report['rows']:,} rows in its main table): p95 ms per query", "",
             f"advise took {report['advise_s']} s and chose {len(report['indexes'])} indexes: "
             + "; ".join(f"{i['table']} ({', '.join(i['columns'])})"
                         + (f" INCLUDE ({', '.join(i['include'])})" if i.get("include") else "")
                         + (f" WHERE {i['where']}" if i.get("where") else "") for i in report["indexes"]), "",
             "| query | before | advised | hand-written | advised / hand-written | slower than before? | verdict |",
             "|---|---:|---:|---:|---:|---|---|"]
    slower = []
    for name, hand in report["hand_written"].items():
        before = report["before"].get(name, {}).get("p95_ms")
        advised = report["advised"].get(name, {}).get("p95_ms")
        versus = f"{advised / hand['p95_ms']:.2f}×" if advised is not None and hand["p95_ms"] else "—"
        worse = before is not None and advised is not None and advised > ratio * before + slack
        if worse:
            slower.append(name)
        lines.append(f"| {name} | {before if before is not None else '—'} | {advised if advised is not None else '—'}"
                     f" | {hand['p95_ms']} | {versus} | {'YES' if worse else 'no'} |"
                     f" {report['verdicts'].get(name, '(not a top statement)')} |")
    lines += ["", f"slower after advise than before (beyond {ratio}× + {slack} ms): {', '.join(slower) or 'none'}"]
    if report.get("writes"):
        lines += [f"the application's writer during the run: {report['writes']['batches']} batches,"
                  f" {report['writes']['failed']} failed; advise weighed upkeep from {report.get('write_basis')}"]
    if report.get("left_out"):
        lines += ["", "left out: " + "; ".join(f"{x['name']} ({x['why']})" for x in report["left_out"])]
    return "\n".join(lines) + "\n"


# the peer comparison's setting: 5 indexes and 1 extension, converged, then run again with nothing to do
PEER_TABLE = """
CREATE SCHEMA IF NOT EXISTS shop;
CREATE TABLE IF NOT EXISTS shop.orders (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
                                        total numeric(10, 2) NOT NULL, note text, placed_at timestamptz NOT NULL);
INSERT INTO shop.orders SELECT g, g % 5000, (ARRAY['new', 'paid', 'shipped'])[1 + g % 3], g % 700, 'order ' || g,
       now() - g * interval '1 min' FROM generate_series(1, 100000) g ON CONFLICT DO NOTHING;
"""
PEER_INDEXES = (("orders_customer", "customer_id"), ("orders_status", "status"), ("orders_placed", "placed_at"),
                ("orders_customer_placed", "customer_id, placed_at"), ("orders_total", "total"))


def peer_noop(repo: Path, out_dir: Path, runs: int = 7, log=print) -> dict[str, Any]:
    """A no-op converge of 5 indexes + 1 extension: pyinfra with pgconverge, and Ansible's community.postgresql
    (postgresql_idx, postgresql_ext) where `ansible-playbook` is found ($PGCONVERGE_ANSIBLE_PLAYBOOK, make
    peer-venv, PATH) — the median wall time of each over `runs` runs, both printed."""
    import shutil
    from urllib.parse import urlsplit

    lab = Lab(repo / ".lab" / "bench-peer")
    url = lab.up(echo=log)["DATABASE_URL"]
    with connect(url) as conn:
        conn.execute(PEER_TABLE)  # type: ignore[arg-type]
    project = (out_dir / "peer-project").resolve()
    shutil.rmtree(project, ignore_errors=True)
    (project / "sql").mkdir(parents=True)
    indexes = "".join(f"      - {{name: {name}, table: shop.orders, columns: [{columns}]}}\n"
                      for name, columns in PEER_INDEXES)
    (project / "phases.yml").write_text(
        "version: 1\nphases:\n  - id: peer\n    title: five indexes and an extension\n"
        "    extensions:\n      - name: pg_trgm\n    indexes:\n" + indexes)
    env = {**os.environ, "DATABASE_URL": url, "PGCONVERGE_PHASES": str(project / "phases.yml"),
           "PGCONVERGE_REPORTS_DIR": str(out_dir / "peer-reports")}

    pyinfra = [str(Path(sys.executable).parent / "pyinfra"), "inventory/lab.py", "deploys/phase.py", "-y",
               "--data", "phase=peer"]
    _timed(pyinfra, repo, env)  # converge once
    ours = [_timed(pyinfra, repo, env) for _ in range(runs)]
    report: dict[str, Any] = {"runs": runs, "pgconverge_s": [round(t, 3) for t in ours],
                              "pgconverge_median_s": round(statistics.median(ours), 3)}
    log(f"pgconverge no-op (pyinfra CLI): median {report['pgconverge_median_s']} s over {runs} runs")
    playbook_bin = os.environ.get("PGCONVERGE_ANSIBLE_PLAYBOOK") or next(
        (str(p) for p in (repo / ".venv-peer" / "bin" / "ansible-playbook",) if p.exists()), None) or \
        shutil.which("ansible-playbook")
    if playbook_bin is None:
        report["ansible"] = "ansible-playbook not found: make peer-venv (or set PGCONVERGE_ANSIBLE_PLAYBOOK)"
        log(report["ansible"])
        return report
    parts = urlsplit(url)
    login = {"login_host": parts.hostname, "port": parts.port, "login_user": parts.username,
             "login_password": "{{ lookup('env', 'PEER_PASSWORD') }}", "db": parts.path.lstrip("/")}
    tasks = [{"name": "pg_trgm", "community.postgresql.postgresql_ext": {"name": "pg_trgm", **login}}] + [
        {"name": name, "community.postgresql.postgresql_idx": {
            "idxname": name, "table": "orders", "schema": "shop", "columns": columns, "concurrent": True, **login}}
        for name, columns in PEER_INDEXES]
    import yaml

    (project / "peer.yml").write_text(yaml.safe_dump(
        [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}], sort_keys=False))
    ansible_env = {**os.environ, "PEER_PASSWORD": parts.password or "", "ANSIBLE_LOCALHOST_WARNING": "False",
                   "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
                   "ANSIBLE_PYTHON_INTERPRETER": str(Path(playbook_bin).parent / "python")}
    command = [playbook_bin, str(project / "peer.yml")]
    _timed(command, project, ansible_env)
    theirs = [_timed(command, project, ansible_env) for _ in range(runs)]
    report.update({"ansible_s": [round(t, 3) for t in theirs], "ansible_median_s": round(statistics.median(theirs), 3)})
    report["ratio"] = round(report["ansible_median_s"] / report["pgconverge_median_s"], 2)
    log(f"Ansible no-op (community.postgresql): median {report['ansible_median_s']} s over {runs} runs —"
        f" pgconverge is {report['ratio']}× faster")
    lab.down()
    return report
