"""What a not-slower gate judges, in order of trust: the plan, the work, the time.

Before a phase changes anything, each gated statement is read on a few parameter sets that cover the tail (the
heaviest the planner sees among a sample, the median, a few drawn at random); after the phase, the same sets again.
Identical plans that read nothing the phase changed mean the phase did not change how the statement reads. Where a
plan changed, `EXPLAIN (ANALYZE, BUFFERS)` counts the blocks each set reads, before and after: a busy CPU slows a
query down but does not make it read more blocks, so the verdict does not flap on load. Time is compared only where
a gate asks for it (`compare_by: time`), paired per set, interleaved, and judged by a bootstrap interval.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .spec import Caller

# blocks added to both sides of a work ratio (a few index descents): reading 2 blocks instead of 5 is no regression
WORK_SLACK_BLOCKS = 16
# parameter rows whose estimated cost ranks the sets: enough to find the heavy tenant of a skewed sample
CANDIDATES = 40
# parameter sets a gate judges: the two heaviest, the median, the rest drawn at random
SETS = 6
# time comparisons: rounds over every set, at least and at most, and the wall-clock budget per side
MIN_ROUNDS, MAX_ROUNDS, TIME_BUDGET_S = 5, 30, 10.0
BOOTSTRAP = 400


def used_params(query: str, params: dict[str, Any]) -> dict[str, Any]:
    """The values of a parameter row that the query names."""
    names = set(re.findall(r"%\((\w+)\)s", query))
    # a jsonb value read by a parameter query comes back as a dict: send it back as jsonb
    return {k: Jsonb(v) if isinstance(v, dict) else v for k, v in params.items() if k in names}


@contextmanager
def as_caller(conn: psycopg.Connection, caller: Caller | None, params: dict[str, Any]) -> Iterator[None]:
    """As an API request runs: its role and JWT claims for one transaction, so row-level security applies."""
    if caller is None:
        yield
        return
    with conn.transaction():
        conn.execute("SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                     [caller.role, caller.claims_for(params)])
        yield


def timed_call(conn: psycopg.Connection, query: str, params: dict[str, Any], caller: Caller | None = None) -> float:
    """Milliseconds of one execution (the role and claims around it are not counted)."""
    values = used_params(query, params)
    with as_caller(conn, caller, params):
        started = time.perf_counter()
        conn.execute(query, values).fetchall()  # type: ignore[arg-type]
        return (time.perf_counter() - started) * 1000


def plan_document(conn: psycopg.Connection, query: str, params: dict[str, Any], options: str,
                  caller: Caller | None = None) -> dict[str, Any]:
    with as_caller(conn, caller, params):
        row = conn.execute(f"EXPLAIN ({options}, FORMAT JSON) {query}",  # type: ignore[arg-type]
                           used_params(query, params)).fetchone()
    assert row is not None
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    result: dict[str, Any] = document[0]
    return result


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


# what makes two plans the same way of reading: node types and what they read, never costs or row counts
SHAPE_KEYS = ("Node Type", "Relation Name", "Index Name", "Join Type", "Strategy", "Parent Relationship",
              "Scan Direction", "Function Name", "CTE Name", "Subplan Name")


def shape(node: dict[str, Any]) -> tuple:
    """The plan tree without its numbers: two plans with the same shape read the same objects the same way."""
    own = tuple((key, node[key]) for key in SHAPE_KEYS if key in node)
    return own + (tuple(shape(child) for child in node.get("Plans", [])),)


def read_names(plan: dict[str, Any]) -> frozenset[str]:
    """The relations and indexes a plan reads (unqualified, as EXPLAIN names them)."""
    return frozenset(n[k] for n in nodes(plan) for k in ("Relation Name", "Index Name") if k in n)


def rows_read(plan: dict[str, Any]) -> int:
    """Rows the scans produced or threw away: what the statement had to look at."""
    total = 0.0
    for node in nodes(plan):
        if node["Node Type"].endswith("Scan"):
            seen = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) \
                + node.get("Rows Removed by Index Recheck", 0)
            total += seen * node.get("Actual Loops", 1)
    return int(total)


@dataclass(frozen=True)
class Reading:
    """One parameter set's evidence at one moment."""

    shape: tuple
    names: frozenset[str]
    blocks: int  # shared hit + read, temp read + written
    rows: int
    ms: float  # the execution time EXPLAIN ANALYZE measured (information: it moves with the load)


def read(conn: psycopg.Connection, query: str, params: dict[str, Any], caller: Caller | None = None) -> Reading:
    document = plan_document(conn, query, params, "ANALYZE, BUFFERS", caller)
    plan = document["Plan"]
    blocks = sum(int(plan.get(k, 0)) for k in ("Shared Hit Blocks", "Shared Read Blocks", "Temp Read Blocks",
                                                "Temp Written Blocks"))
    return Reading(shape(plan), read_names(plan), blocks, rows_read(plan), float(document.get("Execution Time", 0.0)))


def estimated_cost(conn: psycopg.Connection, query: str, params: dict[str, Any], caller: Caller | None = None) -> float:
    return float(plan_document(conn, query, params, "COSTS", caller)["Plan"]["Total Cost"])


def tail_sets(conn: psycopg.Connection, query: str, rows: list[dict[str, Any]], seed: str,
              count: int = SETS, caller: Caller | None = None) -> list[dict[str, Any]]:
    """Parameter sets that cover the tail: ranked by the planner's estimate (the largest tenant, the longest range
    are the costliest), the two heaviest and the median kept, the rest drawn at random. Seeded: the same data gives
    the same sets."""
    distinct = list({json.dumps(r, sort_keys=True, default=str): r for r in rows}.values())
    rng = random.Random(seed)
    candidates = distinct if len(distinct) <= CANDIDATES else rng.sample(distinct, CANDIDATES)
    if len(candidates) <= count:
        return candidates
    ranked = sorted(candidates, key=lambda r: estimated_cost(conn, query, r, caller), reverse=True)
    chosen = [ranked[0], ranked[1], ranked[len(ranked) // 2]]
    rest = [r for r in ranked if not any(r is c for c in chosen)]
    return chosen + rng.sample(rest, count - len(chosen))


@dataclass
class Baseline:
    """A gated statement before its phase: the sets, and each set's reading (and timings where time is judged)."""

    query: str
    sets: list[dict[str, Any]]
    readings: list[Reading]
    p95_ms: float | None = None  # the wall-clock p95 before, for information
    times: list[list[float]] = field(default_factory=list)  # per set, per round (compare_by: time)

    def heaviest(self) -> Reading:
        return max(self.readings, key=lambda r: r.blocks)


def take_baseline(conn: psycopg.Connection, query: str, rows: list[dict[str, Any]], seed: str,
                  timed: bool = False, caller: Caller | None = None) -> Baseline:
    sets = tail_sets(conn, query, rows, seed, caller=caller)
    baseline = Baseline(query, sets, [read(conn, query, s, caller) for s in sets])
    if timed:
        baseline.times = paired_times(conn, query, sets, caller=caller)
    return baseline


def paired_times(conn: psycopg.Connection, query: str, sets: list[dict[str, Any]],
                 rounds: int | None = None, caller: Caller | None = None) -> list[list[float]]:
    """Milliseconds per set, interleaved: round after round over every set, so a moment of load touches all sets
    alike. Rounds stop at MAX_ROUNDS or the budget, never before MIN_ROUNDS."""
    for params in sets:  # warm-up: cold caches are not what a gate judges
        timed_call(conn, query, params, caller)
    times: list[list[float]] = [[] for _ in sets]
    started = time.monotonic()
    target = rounds or MAX_ROUNDS
    for done in range(target):
        for i, params in enumerate(sets):
            times[i].append(timed_call(conn, query, params, caller))
        if rounds is None and done + 1 >= MIN_ROUNDS and time.monotonic() - started > TIME_BUDGET_S:
            break
    return times


@dataclass(frozen=True)
class Verdict:
    passed: bool
    evidence: str  # what the verdict rests on, in the gate's line


def plan_unchanged(before: Baseline, after: list[Reading], changed: set[str], opaque: bool) -> bool:
    """The phase did not change how the statement reads: the same plan on every set, reading nothing the phase
    rebuilt or replaced. `opaque`: the phase changed a function or a view, which a plan may not name."""
    if opaque:
        return False
    return all(b.shape == a.shape and not (a.names & changed) for b, a in zip(before.readings, after, strict=True))


def work_ratios(before: Iterable[Reading], after: Iterable[Reading]) -> list[float]:
    return [(a.blocks + WORK_SLACK_BLOCKS) / (b.blocks + WORK_SLACK_BLOCKS)
            for b, a in zip(before, after, strict=True)]


def judge_work(before: Baseline, after: list[Reading], ratio: float) -> Verdict:
    """Where a plan changed: the blocks each set reads, paired; the worst set decides (a tail regression is one)."""
    ratios = work_ratios(before.readings, after)
    worst_at = max(range(len(ratios)), key=lambda i: ratios[i])
    median = statistics.median(ratios)
    b, a = before.readings[worst_at], after[worst_at]
    total_b, total_a = sum(r.blocks for r in before.readings), sum(r.blocks for r in after)
    sets = f"{len(ratios)} parameter set{'s' if len(ratios) != 1 else ''}"
    evidence = (f"plan changed; work {total_b:,} → {total_a:,} blocks over {sets},"
                f" per-set ratio median {median:.2f} / worst {ratios[worst_at]:.2f}"
                f" (set {worst_at + 1}: {b.blocks:,} → {a.blocks:,} blocks, rows read {b.rows:,} → {a.rows:,})")
    return Verdict(ratios[worst_at] <= ratio, evidence)


def ratio_interval(before: list[list[float]], after: list[list[float]], slack_ms: float,
                   seed: str) -> tuple[float, float, float]:
    """The median over sets of each set's (after − slack)/before median time, with a 95 % bootstrap interval over
    rounds: a ratio ≤ r means after ≤ r × before + slack."""
    def estimate(b_rounds: list[list[float]], a_rounds: list[list[float]]) -> float:
        return statistics.median(max(statistics.median(a) - slack_ms, 0.0) / max(statistics.median(b), 1e-3)
                                 for b, a in zip(b_rounds, a_rounds, strict=True))
    rng = random.Random(seed)
    draws = sorted(estimate([rng.choices(b, k=len(b)) for b in before], [rng.choices(a, k=len(a)) for a in after])
                   for _ in range(BOOTSTRAP))
    return estimate(before, after), draws[int(0.025 * BOOTSTRAP)], draws[int(0.975 * BOOTSTRAP) - 1]


def judge_time(before: Baseline, after: list[list[float]], ratio: float, slack_ms: float, seed: str) -> Verdict:
    """Slower only when the whole interval lies above the ratio: a busy moment widens the interval, it does not fail
    the gate."""
    point, low, high = ratio_interval(before.times, after, slack_ms, seed)
    rounds = min(len(t) for t in after)
    evidence = (f"time ratio {point:.2f} (95 % interval {low:.2f}–{high:.2f}, {len(after)} parameter sets × {rounds}"
                " rounds, paired and interleaved)")
    return Verdict(low <= ratio, evidence)
