"""Gates: read-only checks after a phase's objects. Each returns a GateResult with measured value and threshold."""

from __future__ import annotations

import datetime as dt
import random
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from . import evidence
from .errors import UserError
from .evidence import Baseline, Verdict, nodes
from .kinds.policy import read_policies, slow_policy_notes
from .model import marked_project
from .spec import GateSpec, Spec, WorkloadQuery, seconds

# a run starts a little after its due minute; count it as on time within this slack
MISSED_RUN_SLACK = dt.timedelta(seconds=90)
# rows of a parameter query that sampling draws from
SAMPLE_ROWS = 1000


@dataclass(frozen=True)
class GateResult:
    name: str
    kind: str
    passed: bool
    measured: str
    threshold: str
    query: str = ""  # the workload query the gate runs, named in its line

    def line(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        what = f"{self.kind}, query {self.query}" if self.query else self.kind
        return f"gate {self.name} ({what}) {verdict}: measured {self.measured}, threshold {self.threshold}"


# gates that time the workload's queries (the rest read the catalog or one plan)
TIMED = frozenset({"latency", "explain"})


def parameter_rows(conn: psycopg.Connection, params_sql: str, limit: int) -> list[dict[str, Any]]:
    """The first `limit` rows of a workload query's parameter SQL, as dicts."""
    with conn.cursor(row_factory=dict_row) as cursor:
        # the alias marks this sampling as ours in pg_stat_statements: it survives normalisation, a comment does not
        return cursor.execute(f"SELECT * FROM ({params_sql}) AS pgconverge_params"  # type: ignore[arg-type]
                              f" LIMIT {limit}").fetchall()


class ParamSampler:
    """Parameters for the workload's queries, drawn from the rows of each query's parameter SQL (seeded, so two
    runs draw the same sequence)."""

    def __init__(self, conn: psycopg.Connection, spec: Spec, seed: int = 7):
        self.conn = conn
        self.spec = spec
        self.seed = seed
        self.drawn: dict[str, list[dict[str, Any]]] = {}

    def rows(self, query: WorkloadQuery) -> list[dict[str, Any]]:
        if query.name not in self.drawn:
            rows: list[dict[str, Any]] = [{}]
            if query.params_sql:
                rows = parameter_rows(self.conn, query.params_sql, SAMPLE_ROWS)
                if not rows:
                    raise UserError(f"workload query {query.name}: its params SQL returned no rows —"
                                      " the table is empty or the sample finds nothing; gates and kpi need data")
            self.drawn[query.name] = rows
        return self.drawn[query.name]

    def stream(self, query: WorkloadQuery) -> Iterator[dict[str, Any]]:
        rows = self.rows(query)
        rng = random.Random(f"{self.seed}:{query.name}")
        while True:
            yield rng.choice(rows)


def explain(conn: psycopg.Connection, query: WorkloadQuery, params: dict[str, Any], analyze: bool = False,
            verbose: bool = False) -> dict[str, Any]:
    options = ("ANALYZE" if analyze else "COSTS") + (", VERBOSE" if verbose else "")
    return evidence.plan_document(conn, query.sql, params, options, query.caller)


def gate_sql(conn: psycopg.Connection, spec: Spec, gate: GateSpec) -> GateResult:
    text = (Path(spec.sql_dir) / gate.get("sql")).read_text()
    rows = conn.execute(text).fetchall()  # type: ignore[arg-type]
    expect = gate.get("expect")
    if expect == "no_rows":
        return GateResult(gate.name, "sql", not rows, f"{len(rows)} rows" + (f", first {rows[0]}" if rows else ""),
                          "no rows")
    value = rows[0][0] if rows else None
    if expect == "true":
        return GateResult(gate.name, "sql", value is True, repr(value), "true")
    return GateResult(gate.name, "sql", str(value) == str(gate.get("value")), repr(value), repr(gate.get("value")))


def partition_ancestors(conn: psycopg.Connection, names: set[str]) -> dict[str, set[str]]:
    """A plan names partitions and their indexes; phases.yml names the partitioned table and its index: each
    name with the names of the partitioned tables (or indexes) above it, one query for all of them."""
    found: dict[str, set[str]] = {name: {name} for name in names}
    if names:
        for name, ancestor in conn.execute(
                "SELECT c.relname, p.relname FROM pg_class c, pg_partition_ancestors(c.oid) a"
                " JOIN pg_class p ON p.oid = a.relid WHERE c.relname = ANY(%s)", [list(names)]).fetchall():
            found[name].add(ancestor)
    return found


def gate_plan(conn: psycopg.Connection, spec: Spec, gate: GateSpec, params: ParamSampler) -> GateResult:
    query = spec.query(gate.get("query"))
    plan = list(nodes(explain(conn, query, next(params.stream(query)))["Plan"]))
    used = {n["Index Name"] for n in plan if "Index Name" in n}
    scanned = {n.get("Relation Name", "?") for n in plan if n["Node Type"] == "Seq Scan"}
    above = partition_ancestors(conn, used | scanned)
    indexes = sorted({a for name in used for a in above[name]})
    seq_scans = sorted({a for name in scanned for a in above[name]})
    if gate.get("uses_index"):
        wanted = gate.get("uses_index")
        return GateResult(gate.name, "plan", wanted in indexes, f"indexes used: {', '.join(indexes) or 'none'}",
                          f"uses {wanted}")
    forbidden = sorted(set(gate.get("no_seq_scan_on")) & set(seq_scans))
    return GateResult(gate.name, "plan", not forbidden, f"seq scans on: {', '.join(seq_scans) or 'none'}",
                      f"no seq scan on {', '.join(gate.get('no_seq_scan_on'))}")


def percentile(samples: list[float], pct: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[pct - 1] if len(samples) > 1 else samples[0]


def time_within(conn: psycopg.Connection, query: WorkloadQuery, params: ParamSampler, runs: int,
                budget_s: float) -> list[float]:
    """`runs` timed calls, fewer (at least 3) when they would take longer than `budget_s`: a warmed-up probe call
    sets the count (the old way of a batch takes seconds per call before the indexes)."""
    probe = time_query(conn, query, params, 1, warmup=1)[0]
    count = max(3, min(runs, int(budget_s * 1000 / max(probe, 0.01))))
    return time_query(conn, query, params, count, warmup=0)


def percentiles(samples: list[float], digits: int) -> dict[str, float]:
    return {f"p{p}_ms": round(percentile(samples, p), digits) for p in (50, 95, 99)}


def time_query(conn: psycopg.Connection, query: WorkloadQuery, params: ParamSampler, runs: int,
               warmup: int = 3) -> list[float]:
    """Wall-clock milliseconds of `runs` calls, each of `per_call` executions with fresh parameters, after warm-up
    calls whose time is not counted (cold caches and plan caching are not what a gate should judge)."""
    source = params.stream(query)
    samples = []
    for run in range(warmup + runs):
        batch = [next(source) for _ in range(query.per_call)]
        elapsed = sum(evidence.timed_call(conn, query.sql, values, query.caller) for values in batch)
        if run >= warmup:
            samples.append(elapsed)
    return samples


def summary(samples: list[float]) -> str:
    return (f"p50 {percentile(samples, 50):.2f} / p95 {percentile(samples, 95):.2f} / p99 {percentile(samples, 99):.2f}"
            f" ms over {len(samples)} runs")


def bound_verdict(gate: GateSpec, p95: float) -> tuple[bool, str]:
    """The absolute bound a gate declares (p95_ms) keeps its timing: the user asked for milliseconds."""
    bound = gate.get("p95_ms")
    return bound is None or p95 <= bound, f"p95 ≤ {bound} ms" if bound is not None else ""


@dataclass(frozen=True)
class PhaseChanges:
    """What a phase changed, as a gate needs to know it: the relations and indexes it built, replaced or dropped
    (unqualified, as EXPLAIN names them), and whether it changed something a plan may not name (a function, a view)."""

    names: frozenset[str] = frozenset()
    opaque: bool = False


# steps that change no way of reading: a marker comment, a grant, a schedule
READ_NEUTRAL = frozenset({"mark", "grant", "schedule"})


def phase_changes(steps: list[Any]) -> PhaseChanges:
    """What the applied steps of a phase changed that a plan reads (pure: the steps from the run's journal)."""
    names: set[str] = set()
    opaque = False
    for step in steps:
        if str(step.action) in READ_NEUTRAL:
            continue
        opaque = opaque or step.target in ("function", "view")
        names.add(step.object.split()[-1].rsplit(".", 1)[-1])
        if step.builds:
            names.add(step.builds.rsplit(".", 1)[-1].strip('"'))
    return PhaseChanges(frozenset(names), opaque)


def take_baseline(conn: psycopg.Connection, gate: GateSpec, query: WorkloadQuery, params: ParamSampler) -> Baseline:
    """Before a phase: the gated statement on its tail-covering parameter sets, and its wall-clock p95 (shown)."""
    baseline = evidence.take_baseline(conn, query.sql, params.rows(query), f"{params.seed}:{query.name}",
                                      timed=gate.get("compare_by") == "time", caller=query.caller)
    baseline.p95_ms = percentile(time_query(conn, query, params, gate.get("runs", 30)), 95)
    return baseline


def compare_with_before(conn: psycopg.Connection, query: WorkloadQuery, gate: GateSpec, before: Baseline,
                        changes: PhaseChanges) -> tuple[Verdict, str]:
    """The ratio to before, judged by the plan, then the work; by time only where the gate says compare_by: time."""
    ratio = gate.get("max_ratio_to_before")
    after = [evidence.read(conn, query.sql, s, query.caller) for s in before.sets]
    if evidence.plan_unchanged(before, after, set(changes.names), changes.opaque):
        sets = f"{len(after)} parameter set{'s' if len(after) != 1 else ''}"
        return (Verdict(True, f"plan unchanged on {sets} — not affected by this phase"),
                f"≤ {ratio}× before")
    if gate.get("compare_by") == "time":
        slack = gate.get("slack_ms") or 0.0
        times = evidence.paired_times(conn, query.sql, before.sets, rounds=min(len(t) for t in before.times),
                                      caller=query.caller)
        plus = f" + {slack} ms" if slack else ""
        return (evidence.judge_time(before, times, ratio, slack, f"{gate.name}"),
                f"time ≤ {ratio}× before{plus}, slower only when the interval lies above it")
    return evidence.judge_work(before, after, ratio), f"work ≤ {ratio}× before on every parameter set"


def gate_latency(conn: psycopg.Connection, spec: Spec, gate: GateSpec, params: ParamSampler,
                 before: Baseline | None = None, changes: PhaseChanges | None = None) -> GateResult:
    query = spec.query(gate.get("query"))
    samples = time_query(conn, query, params, gate.get("runs", 30))
    passed, threshold = bound_verdict(gate, percentile(samples, 95))
    timing = summary(samples)
    if not passed:
        # One re-measurement before failing: a busy machine's one bad moment must not stop a deploy.
        again = time_query(conn, query, params, gate.get("runs", 30))
        if percentile(again, 95) < percentile(samples, 95):
            samples = again
        passed, threshold = bound_verdict(gate, percentile(samples, 95))
        timing = summary(samples) + " (best of 2 measurements)"
    ratio = gate.get("max_ratio_to_before")
    if ratio is None:
        return GateResult(gate.name, "latency", passed, timing, threshold)
    thresholds = [threshold] if threshold else []
    if before is None:
        thresholds.append(f"≤ {ratio}× before (no value from before the phase in this run: not compared)")
        return GateResult(gate.name, "latency", passed, timing, ", ".join(thresholds))
    verdict, rule = compare_with_before(conn, query, gate, before, changes or PhaseChanges())
    was = f", before p95 {before.p95_ms:.2f} ms" if before.p95_ms is not None else ""
    # the timing is evidence only where the user bounded it; next to a plan or work verdict it is information
    measured = f"{verdict.evidence}; timing {'' if threshold else 'for information '}{timing}{was}"
    return GateResult(gate.name, "latency", passed and verdict.passed, measured, ", ".join([*thresholds, rule]))


def gate_explain(conn: psycopg.Connection, spec: Spec, gate: GateSpec, params: ParamSampler) -> GateResult:
    query = spec.query(gate.get("query"))
    source = params.stream(query)
    times = [explain(conn, query, next(source), analyze=True)["Execution Time"] for _ in range(gate.get("runs", 5))]
    worst = max(times)
    return GateResult(gate.name, "explain", worst <= gate.get("max_ms"), f"max execution {worst:.2f} ms",
                      f"< {gate.get('max_ms')} ms")


def gate_freshness(conn: psycopg.Connection, spec: Spec, gate: GateSpec) -> GateResult:
    view = gate.get("materialized_view")
    # The jobs that refresh this view: their command calls a declared function whose body names the view.
    refreshers = {f.name for p in spec.phases for f in p.functions if view in f.body}
    jobs = [j.name for p in spec.phases for j in p.cron_jobs if any(r in j.command for r in refreshers)]
    row = conn.execute(
        "SELECT extract(epoch FROM now() - max(d.end_time)) FROM cron.job_run_details d"
        " JOIN cron.job j ON j.jobid = d.jobid WHERE d.status = 'succeeded' AND j.jobname = ANY(%s)",
        [jobs],
    ).fetchone()
    age = row[0] if row else None
    limit = seconds(gate.get("within"))
    measured = "never refreshed by cron" if age is None else f"last refresh {float(age):.0f} s ago"
    return GateResult(gate.name, "freshness", age is not None and float(age) <= limit, measured, f"≤ {limit:.0f} s")


def gate_cron_health(conn: psycopg.Connection, spec: Spec, gate: GateSpec) -> GateResult:
    """pg_cron really runs the managed jobs: launcher alive, each job active and not behind its schedule."""
    names = list(gate.get("jobs") or [j.name for p in spec.phases for j in p.cron_jobs if j.state == "present"])
    threshold = "pg_cron launcher running; each job active, last run succeeded, none missed"
    launcher = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'").fetchone()
    if not (launcher and launcher[0]):
        return GateResult(gate.name, "cron_health", False,
                          "no pg_cron launcher in pg_stat_activity: jobs are never run — add pg_cron to"
                          " shared_preload_libraries and restart PostgreSQL", threshold)
    rows = {r[0]: r[1:] for r in conn.execute(
        """
        SELECT j.jobname, j.schedule, j.active, last.status, last.start_time, ok.end_time, now(),
               CASE WHEN current_setting('track_commit_timestamp') = 'on'
                    THEN pg_xact_commit_timestamp(j.xmin) END
        FROM cron.job j
        LEFT JOIN LATERAL (SELECT status, start_time FROM cron.job_run_details r WHERE r.jobid = j.jobid
                           ORDER BY r.start_time DESC NULLS LAST LIMIT 1) last ON true
        LEFT JOIN LATERAL (SELECT max(end_time) AS end_time FROM cron.job_run_details r
                           WHERE r.jobid = j.jobid AND r.status = 'succeeded') ok ON true
        WHERE j.jobname = ANY(%s)
        """, [names]).fetchall()}
    problems, seen = [], []
    for name in names:
        if name not in rows:
            problems.append(f"{name}: not scheduled")
            continue
        schedule, active, status, started, succeeded, now, scheduled_at = rows[name]
        from croniter import croniter  # only where a cron gate runs

        due = croniter(schedule, now).get_prev(dt.datetime)
        if not active:
            problems.append(f"{name}: inactive")
        elif status == "failed":
            problems.append(f"{name}: last run at {started:%Y-%m-%d %H:%M} failed")
        elif succeeded is None and scheduled_at is not None and scheduled_at < due - MISSED_RUN_SLACK:
            problems.append(f"{name}: never ran, scheduled {scheduled_at:%Y-%m-%d %H:%M}, due {due:%H:%M}")
        elif succeeded is not None and succeeded < due - MISSED_RUN_SLACK and (started or succeeded) < due:
            problems.append(f"{name}: missed its run due {due:%Y-%m-%d %H:%M} (last success {succeeded:%H:%M})")
        else:
            seen.append(f"{name}: " + ("no run yet (first period)" if succeeded is None
                                       else f"last success {int((now - succeeded).total_seconds())} s ago"))
    return GateResult(gate.name, "cron_health", not problems, "; ".join(problems or seen) or "no jobs", threshold)


def gate_security(conn: psycopg.Connection, spec: Spec, gate: GateSpec) -> GateResult:
    """What Supabase's linter flags, on managed objects: API roles reading an MV (it bypasses RLS) or executing a
    function not granted to them, a mutable search_path, undeclared SECURITY DEFINER, duplicate indexes."""
    roles = [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                        [list(spec.settings.api_roles)]).fetchall()]
    # the objects of this phase and the ones before it: a later phase's objects are checked by its own gates
    ids = [p.id for p in spec.phases]
    phases = spec.phases[: ids.index(gate.phase) + 1] if gate.phase in ids else spec.phases
    views = [v.key for p in phases for v in p.materialized_views if v.state == "present"]
    functions = [f for p in phases for f in p.functions if f.state == "present"]
    granted = {(g.key, r) for p in spec.phases for g in p.grants if not g.revoke for r in g.roles}
    problems: list[str] = []
    for name, role in conn.execute(
        "SELECT v, r FROM unnest(%s::text[]) v, unnest(%s::text[]) r"
        " WHERE to_regclass(v) IS NOT NULL AND has_table_privilege(r, to_regclass(v), 'SELECT')",
        [views, roles],
    ).fetchall():
        problems.append(f"{role} can read materialized view {name}")
    for name, definer, config, executors in conn.execute(
        """
        SELECT n.nspname || '.' || p.proname, p.prosecdef, coalesce(p.proconfig, '{}'),
               array(SELECT r FROM unnest(%s::text[]) r WHERE has_function_privilege(r, p.oid, 'EXECUTE'))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname || '.' || p.proname = ANY(%s)
          AND coalesce(obj_description(p.oid, 'pg_proc') LIKE 'pgconverge:%%', false)  -- ours, not hand-made overloads
        """,
        [roles, [f.key for f in functions]],
    ).fetchall():
        if not any(c.startswith("search_path=") for c in config):
            problems.append(f"function {name} has no pinned search_path")
        if definer and name not in {f.key for f in functions if f.security_definer}:
            problems.append(f"function {name} is SECURITY DEFINER but not declared so")
        for role in executors:
            if (name, role) not in granted and (name, "PUBLIC") not in granted:
                problems.append(f"{role} can execute function {name}")
    notes: list[str] = []
    for names, ours in conn.execute(
        """
        SELECT string_agg(n.nspname || '.' || c.relname, ' = ' ORDER BY c.relname),
               bool_or(coalesce(obj_description(c.oid, 'pg_class') LIKE 'pgconverge:%%', false)) FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%s)
        GROUP BY i.indrelid, i.indkey::text, i.indclass::text, i.indoption::text, i.indcollation::text,
                 coalesce(pg_get_expr(i.indpred, i.indrelid), ''), coalesce(pg_get_expr(i.indexprs, i.indrelid), '')
        HAVING count(*) > 1
        """,
        [sorted({i.schema for p in spec.phases for i in p.indexes} | {spec.settings.schema})],
    ).fetchall():
        # the application's own duplicates are not ours to judge: a note (advise reports them), never a failure
        (problems if ours else notes).append(f"duplicate indexes {names}" + ("" if ours else " (not managed: note)"))
    # splinter's auth_rls_initplan and multiple_permissive_policies, on the tables whose policies we manage
    policies = read_policies(conn).values()
    mine = [f for f in policies if marked_project(f.comment) == spec.settings.project]
    tables = {f.table for f in mine}
    for note in slow_policy_notes([f for f in policies if f.table in tables]):
        (problems if any(f.name in note for f in mine) else notes).append(note.split(" — ")[0])
    return GateResult(gate.name, "security", not problems, "; ".join(problems + notes) or "no finding",
                      f"no managed MV readable or function executable by {', '.join(roles) or 'API roles (none here)'}"
                      " unless granted, pinned search_path, no duplicate index, managed policies: no per-row auth"
                      " call, one permissive policy per role and command")


# an auth call as EXPLAIN VERBOSE prints it (auth.uid() may be inlined into its current_setting())
AUTH_CALL = re.compile(r"\b(auth\.(?:uid|jwt|role|email)|current_setting)\s*\(")
CONDITIONS = ("Filter", "Index Cond", "Recheck Cond", "Join Filter", "Hash Cond", "Merge Cond", "TID Cond")


def auth_calls(node: dict[str, Any], in_initplan: bool = False) -> Iterator[tuple[str, bool]]:
    """(where, once) for every auth call in a plan: once when it sits in an InitPlan (evaluated once per
    statement), else per row of the node whose condition holds it."""
    once = in_initplan or node.get("Parent Relationship") == "InitPlan"
    texts = [node.get(k, "") for k in CONDITIONS] + (list(node.get("Output", [])) if once else [])
    for text in texts:
        for match in AUTH_CALL.finditer(text):
            where = node.get("Subplan Name") or f"{node['Node Type']}" + (
                f" on {node['Relation Name']}" if "Relation Name" in node else "")
            yield f"{match[1]}() in {where}", once
    for child in node.get("Plans", []):
        yield from auth_calls(child, once)


def gate_rls_initplan(conn: psycopg.Connection, spec: Spec, gate: GateSpec, params: ParamSampler) -> GateResult:
    """The fast form of a row-level security policy, proven by the plan of a request: every auth call is an
    InitPlan (once per statement), none is evaluated per row."""
    query = spec.query(gate.get("query"))
    if query.caller is None:
        return GateResult(gate.name, "rls_initplan", False, f"query {query.name} runs as the login, not as a request",
                          "declare as_role (and claims) on the workload query")
    calls = list(auth_calls(explain(conn, query, next(params.stream(query)), verbose=True)["Plan"]))
    per_row = sorted({where for where, once in calls if not once})
    once = sorted({where for where, once in calls if once})
    measured = (f"per row: {', '.join(per_row)}" if per_row else "") + ("; " if per_row and once else "") + (
        f"once (InitPlan): {', '.join(once)}" if once else "") or f"no auth call in the plan as {query.caller.role}"
    return GateResult(gate.name, "rls_initplan", bool(once) and not per_row, measured,
                      f"auth calls of {query.caller.role}'s policies evaluated once per statement, none per row")


def run_gate(conn: psycopg.Connection, spec: Spec, gate: GateSpec, params: ParamSampler,
             before: Baseline | None = None, changes: PhaseChanges | None = None) -> GateResult:
    return replace(_run_gate(conn, spec, gate, params, before, changes), query=gate.get("query") or "")


def _run_gate(conn: psycopg.Connection, spec: Spec, gate: GateSpec, params: ParamSampler,
              before: Baseline | None = None, changes: PhaseChanges | None = None) -> GateResult:
    try:
        if gate.kind == "sql":
            return gate_sql(conn, spec, gate)
        if gate.kind == "security":
            return gate_security(conn, spec, gate)
        if gate.kind == "freshness":
            return gate_freshness(conn, spec, gate)
        if gate.kind == "cron_health":
            return gate_cron_health(conn, spec, gate)
        if gate.kind == "plan":
            return gate_plan(conn, spec, gate, params)
        if gate.kind == "latency":
            return gate_latency(conn, spec, gate, params, before, changes)
        if gate.kind == "rls_initplan":
            return gate_rls_initplan(conn, spec, gate, params)
        return gate_explain(conn, spec, gate, params)
    except (psycopg.Error, UserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return GateResult(gate.name, gate.kind, False, f"error: {first}", "runs without error")
