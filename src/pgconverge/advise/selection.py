"""Which candidates join the proposal: greedy by estimated cost per second net of upkeep, never a statement
costlier, never a risky plan; the final set checked again and each index's effect attributed."""

from __future__ import annotations

import psycopg

from ..names import QualifiedName
from .costing import Costing, stale_predicate, statement_hazards, workload_cost
from .model import DECLARED_EDGE, HALVES, MAX_INDEXES, MIN_SAVING, Advice, Candidate, Statement, one_line, repeated_key

# estimated cost units a written row costs each index of its table (the descent and the leaf page, WAL)
WRITE_COST = 3.0


def per_second(costs: dict[int, float], statements: list[Statement]) -> float:
    """The workload's estimated cost per second: each statement's cost per call × its calls per second."""
    rate = {s.queryid: s.calls_per_s for s in statements}
    return sum(rate.get(q, 0.0) * c for q, c in costs.items())


def upkeep(candidate: Candidate, advice: Advice) -> float:
    """Estimated cost per second of keeping the index up to date: rows its table takes per second × WRITE_COST —
    only from a measured window: an average since the statistics reset counts a one-time bulk load too."""
    if not advice.write_basis.startswith("measured"):
        return 0.0
    cost = advice.write_rates.get(QualifiedName(candidate.schema, candidate.table), 0.0) * WRITE_COST
    advice.maintenance[candidate.name] = cost
    return cost


# the planner keeps paths within 1 % of each other as equally cheap (STD_FUZZ_FACTOR): one more index may move a
# statement's estimate inside that band without any plan becoming worse
PLANNER_FUZZ = 1.01


def costlier(before: float | None, after: float | None) -> bool:
    return before is not None and after is not None and after > before * PLANNER_FUZZ + 0.01


def objection(conn: psycopg.Connection, candidate: Candidate, current: Costing, trial: Costing, statements: list[Statement],
              rows: dict[tuple[str, str], float]) -> tuple[int, str] | None:
    """Why a candidate must not join the set: a predicate the planner misjudges, a statement it makes costlier, or
    a risky plan it invites."""
    if candidate.where:
        stale = stale_predicate(conn, candidate.schema, candidate.table, one_line(candidate.where).replace('"', ""),
                             rows.get((candidate.schema, candidate.table), 1.0))
        if stale:
            target = next((q for q, before in current.costs.items() if trial.costs.get(q, before) < before),
                          statements[0].queryid)
            return target, stale
    for statement in statements:
        before, after = current.costs.get(statement.queryid), trial.costs.get(statement.queryid)
        if costlier(before, after):
            return statement.queryid, f"it would make this statement's estimate costlier ({before:,.1f} → {after:,.1f})"
    for queryid, found in statement_hazards(trial, statements, rows).items():
        for suspect, why in found:
            if suspect == candidate:
                return queryid, why
    return None


def choose(conn: psycopg.Connection, statements: list[Statement], pool: list[Candidate], advice: Advice,
           rows: dict[tuple[str, str], float]) -> list[Candidate]:
    """Greedy: each round the candidate that lowers the workload's estimated cost per second most, net of its
    upkeep, among those that make no statement costlier and invite no risky plan and that save MIN_SAVING of what
    indexes can still make cheaper or halve a statement's cost; stop when none is left."""
    pool = list(pool)
    # the typical and the heaviest set of each statement: the largest tenant's cost weighs half of the choice
    current = workload_cost(conn, statements, [], tail=True)
    chosen: list[Candidate] = []
    while pool and len(chosen) < MAX_INDEXES:
        now = per_second(current.costs, statements)
        trials = []
        for candidate in pool:
            costing = workload_cost(conn, statements, [*chosen, candidate], tail=True)
            trials.append((per_second(costing.costs, statements) + upkeep(candidate, advice), candidate, costing))
        # what some candidate can still make cheaper: a whole-table aggregate no index serves does not dilute it
        improvable = per_second({q: c for q, c in current.costs.items()
                                 if any(t[2].costs.get(q, c) < 0.99 * c for t in trials)}, statements)
        picked = None
        # an index phases.yml already declares wins over advise's own when it saves within DECLARED_EDGE as much
        ranked = sorted(trials, key=lambda t: now - (now - t[0]) * (1 + DECLARED_EDGE) if t[1].declared else t[0])
        for score, candidate, costing in ranked:
            if score >= now:
                break  # its upkeep costs more than it saves
            # worth an index: a real share of what can still be lowered, or a statement at least twice as cheap
            halves = any(c <= HALVES * current.costs.get(q, c) for q, c in costing.costs.items())
            if now - score < MIN_SAVING * improvable and not halves:
                continue
            key = repeated_key(candidate, advice.unique_keys.get((candidate.schema, candidate.table), []))
            if key and not halves:
                helped = max(costing.costs, key=lambda q: current.costs.get(q, 0.0) - costing.costs[q], default=0)
                leave_out(advice, candidate, helped,
                          f"a near-duplicate of {key}: its leading columns are that key's, and it halves no"
                          " statement's cost")
                pool.remove(candidate)
                continue
            why = objection(conn, candidate, current, costing, statements, rows)
            if why is None:
                picked = (candidate, costing)
                break
            leave_out(advice, candidate, *why)
            pool.remove(candidate)
        if picked is None:
            break
        chosen.append(picked[0])
        pool.remove(picked[0])
        current = picked[1]
    return chosen


def leave_out(advice: Advice, candidate: Candidate, queryid: int, why: str) -> None:
    advice.rejected.append((candidate, queryid, why))
    advice.warnings.setdefault(queryid, {}).setdefault(why, []).append(candidate.name)


def settle(conn: psycopg.Connection, statements: list[Statement], chosen: list[Candidate], base: Costing,
           advice: Advice, rows: dict[tuple[str, str], float]) -> list[Candidate]:
    """The chosen set costed with every sampled parameter set against no new index at all: while a statement is
    costlier than before or its plan takes a risky shape, the index responsible (the latest chosen that undoes it)
    is left out."""
    chosen = list(chosen)
    while chosen:
        final = workload_cost(conn, statements, chosen, every_set=True)
        culprit = None
        for statement in statements:
            before, after = base.costs.get(statement.queryid), final.costs.get(statement.queryid)
            if not costlier(before, after):
                continue
            why = (f"with the whole set this statement's estimate is costlier than before ({before:,.1f} →"
                   f" {after:,.1f}) over its sampled parameters")
            suspect = next((c for c in reversed(chosen) if not costlier(before, workload_cost(
                conn, [statement], [x for x in chosen if x != c], every_set=True).costs.get(statement.queryid))),
                chosen[-1])
            culprit = (suspect, statement.queryid, why)
            break
        if culprit is None:
            hazards = statement_hazards(final, statements, rows)
            culprit = next(((c, q, why) for q, found in hazards.items() for c, why in found), None)
        if culprit is None:
            return chosen
        leave_out(advice, *culprit)
        chosen.remove(culprit[0])
    return chosen


def attribute(conn: psycopg.Connection, statements: list[Statement], chosen: list[Candidate], base: Costing,
              advice: Advice) -> Costing:
    """Each index in the order chosen, with every sampled parameter set: the workload's estimated cost per second
    before and after it, and the statements it made cheaper."""
    current = base
    for number, candidate in enumerate(chosen, 1):
        costing = workload_cost(conn, statements, chosen[:number], every_set=True)
        helped = tuple((q, current.costs[q], after) for q, after in costing.costs.items()
                       if q in current.costs and after < current.costs[q] - 0.01)
        advice.chosen.append((candidate, per_second(current.costs, statements), per_second(costing.costs, statements),
                              helped))
        current = costing
    return current
