"""Fault matrix: kill -9 the real pyinfra run at each step of the phases, then prove the next run converges,
no INVALID index remains, and no row of any table was lost or changed.

Reduced matrix: part of `make test` (tests/integration/test_faults.py). Full matrix (every step of every phase and
the backups): `make faults`, i.e. `python -m tests.fault_matrix`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
TABLES = ("users", "leads", "message_templates", "message_events", "crm_notes", "rlhf_feedback_sessions")


@dataclass(frozen=True)
class FaultPoint:
    label: str
    pattern: str  # a prefix of the statement to wait for in pg_stat_activity
    application: str = "pgconverge"
    # for steps inside a transaction (pg_stat_activity then shows COMMIT): true once the step has committed
    committed: str | None = None


def committed_condition(step) -> str | None:
    kind, name = step.object.rsplit(" ", 1)
    if not step.transactional:
        return None
    if kind == "function":
        return f"SELECT obj_description(to_regproc('{name}'), 'pg_proc') IS NOT NULL"
    if kind == "extension":
        return f"SELECT obj_description(oid, 'pg_extension') LIKE 'pgconverge:%' FROM pg_extension WHERE extname = '{name}'"
    return f"SELECT to_regclass('{name}') IS NOT NULL"


@dataclass
class Outcome:
    point: FaultPoint
    injected: bool
    converged: bool
    rows_changed: list[str]
    detail: str = ""


def checksums(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '')"
                                f" FROM {t} AS x").fetchone()[0] for t in TABLES}


def points_from_plan(url: str) -> list[FaultPoint]:
    """Every step of deploys/all.py on this database, plus each phase's backup."""
    from pgconverge import facts, plan, spec
    from pgconverge.execute import connect

    loaded = spec.load(REPO / "phases.yml")
    with connect(url) as conn:
        steps = plan.plan(loaded, facts.read(conn), [p.id for p in loaded.phases]).steps
    points = [FaultPoint(f"{s.phase} {s.object}: {s.statements[0][:50]}", s.statements[0][:60],
                         committed=committed_condition(s)) for s in steps]
    return [FaultPoint("backup of phase1 (pg_dump)", "", "pg_dump"), *points]


def _env(url: str, scratch: Path, delay: float) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "PGCONVERGE_STEP_DELAY": str(delay),
            "PGCONVERGE_BACKUP_DIR": str(scratch / "backups"), "PGCONVERGE_REPORTS_DIR": str(scratch / "reports")}


def _converge(url: str, scratch: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PYINFRA, "inventory/lab.py", "deploys/all.py", "-y"], cwd=REPO, env=_env(url, scratch, 0),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)


def inject(url: str, point: FaultPoint, scratch: Path, delay: float = 0.3) -> Outcome:
    """Run all phases, kill -9 the runner once `point` shows in pg_stat_activity, then rerun and check."""
    before = checksums(url)
    runner = subprocess.Popen([PYINFRA, "inventory/lab.py", "deploys/all.py", "-y"], cwd=REPO,
                              env=_env(url, scratch, delay), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    injected = False
    with psycopg.connect(url, autocommit=True) as probe:
        while runner.poll() is None:
            if point.committed:
                row = probe.execute(point.committed).fetchone()  # type: ignore[arg-type]
                seen = bool(row and row[0])
            else:
                seen = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND starts_with(query, %s)"
                    " AND pid <> pg_backend_pid()", [point.application, point.pattern]).fetchone()[0]
            if seen:
                os.killpg(runner.pid, signal.SIGKILL)
                injected = True
                break
            time.sleep(0.002)
    runner.wait()
    time.sleep(2.5)  # client_connection_check_interval lets orphaned backends notice the dead client
    rerun = _converge(url, scratch)
    with psycopg.connect(url) as conn:
        invalid = conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0]
    dry = subprocess.run([PYINFRA, "inventory/lab.py", "deploys/all.py", "--dry"], cwd=REPO, env=_env(url, scratch, 0),
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    converged = rerun.returncode == 0 and invalid == 0 and (dry.stdout + dry.stderr).count("(converged)") == 3
    after = checksums(url)
    changed = [t for t in TABLES if before[t] != after[t]]
    detail = "" if converged else (rerun.stdout + rerun.stderr)[-1500:]
    return Outcome(point, injected, converged, changed, detail)


def rollback_everything(url: str) -> None:
    from pgconverge import facts, plan, spec
    from pgconverge.execute import connect, run_step

    loaded = spec.load(REPO / "phases.yml")
    with connect(url) as conn:
        for step in plan.plan_rollback(loaded, facts.read(conn), loaded.phases[0].id).steps:
            run_step(conn, url, step, loaded.settings, lambda _: None)


def summary(outcomes: list[Outcome]) -> str:
    injected = sum(o.injected for o in outcomes)
    converged = sum(o.converged for o in outcomes if o.injected)
    lost = sum(len(o.rows_changed) for o in outcomes)
    return f"fault matrix: {len(outcomes)} points, injected {injected}, converged {converged}/{injected}, " \
           f"tables with lost or changed rows {lost}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="S")
    parser.add_argument("--delay", type=float, default=0.3)
    args = parser.parse_args()
    import tempfile

    from pgconverge.lab import Lab, seed

    base = Path(tempfile.mkdtemp(prefix="pgconverge-faults-"))
    base.chmod(0o755)
    lab = Lab(base / "lab")
    try:
        url = lab.up(echo=lambda _: None)["DATABASE_URL"]
        seed.seed(url, args.scale, 42, echo=lambda _: None)
        outcomes = []
        for point in points_from_plan(url):
            outcome = inject(url, point, base, args.delay)
            outcomes.append(outcome)
            print(f"{'injected' if outcome.injected else 'missed  '} {'converged' if outcome.converged else 'FAILED'}"
                  f" rows-changed={len(outcome.rows_changed)}  {point.label}", flush=True)
            if outcome.detail:
                print(outcome.detail)
            rollback_everything(url)
        print(summary(outcomes))
        ok = all(o.converged and not o.rows_changed for o in outcomes) and all(o.injected for o in outcomes)
        return 0 if ok else 1
    finally:
        lab.destroy()


if __name__ == "__main__":
    sys.exit(main())
