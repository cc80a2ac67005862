"""Plans with hypothetical indexes (HypoPG): each statement's estimated cost for sampled parameters, the plan
shapes that bet on an estimate, predicates the statistics misjudge, and each statement's verdict."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import pglast
import psycopg
from pglast import ast
from psycopg import sql
from psycopg.types.json import Jsonb

from ..evidence import nodes
from ..reads import walk
from .candidates import plannable, referenced_columns
from .model import MIN_SAVING, Candidate, Statement


def _plan_of(conn: psycopg.Connection, statement: Statement, values: tuple[Any, ...] | None = None
             ) -> dict[str, Any] | None:
    """The statement's plan with the hypothetical indexes of the moment (HypoPG's are seen): a custom plan for
    sampled parameter values (what the planner does for the application's first executions), else the generic one."""
    count = max((int(n) for n in re.findall(r"\$(\d+)", statement.query)), default=0)
    custom = bool(count and values and len(values) >= count)
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL plan_cache_mode = {'force_custom_plan' if custom else 'force_generic_plan'}")  # type: ignore[arg-type]
            conn.execute(f"PREPARE pgconverge_advise AS {plannable(statement.query)}")  # type: ignore[arg-type]
            arguments = [_literal(conn, v) for v in values[:count]] if custom and values else ["NULL"] * count
            row = conn.execute("EXPLAIN (FORMAT JSON) EXECUTE pgconverge_advise"  # type: ignore[arg-type]
                               + (f"({', '.join(arguments)})" if count else "")).fetchone()
            conn.execute("DEALLOCATE pgconverge_advise")
    except psycopg.Error:
        return None
    return row[0][0]["Plan"] if row else None


def typical_and_heaviest(conn: psycopg.Connection, statement: Statement, keep: int = 3) -> tuple[tuple[Any, ...], ...]:
    """Of the sampled sets, the typical one (the median by estimated cost) first, the heaviest second (the largest
    tenant, the longest range), then others: the first drives the choice, every set guards against regressions, the
    heaviest shows in the verdict."""
    pool = list(statement.values)
    if len(pool) <= 1:
        return tuple(pool)
    costed = [(float(plan["Total Cost"]) if (plan := _plan_of(conn, statement, values)) else 0.0, i)
              for i, values in enumerate(pool)]
    ranked = [pool[i] for _, i in sorted(costed)]
    typical, heaviest = ranked[len(ranked) // 2], ranked[-1]
    rest = [v for v in pool if v is not typical and v is not heaviest]
    return tuple([typical] + ([heaviest] if heaviest is not typical else []) + rest)[:keep]


def _literal(conn: psycopg.Connection, value: Any) -> str:
    # a jsonb value read by a parameter query comes back as a dict
    return sql.Literal(Jsonb(value) if isinstance(value, dict) else value).as_string(conn)


def _plans(conn: psycopg.Connection, statement: Statement, every_set: bool, tail: bool = False) -> list[dict[str, Any]]:
    """Its plan for the first sampled set (or the generic plan), for the typical and the heaviest (tail), or for
    every sampled set."""
    chosen = statement.values if every_set else statement.values[:2] if tail else statement.values[:1]
    sets: list[tuple[Any, ...] | None] = list(chosen) or [None]
    return [plan for values in sets if (plan := _plan_of(conn, statement, values)) is not None]


SMALL_TABLE_ROWS = 10_000
# rows the heaviest parameter set's plan reads through an index beyond which "already served" is not the verdict
HEAVY_ROWS = 50_000


def _rows_read(plan: dict[str, Any]) -> int:
    return sum(int(n.get("Plan Rows", 0)) for n in nodes(plan) if "Index Name" in n)


def verdict(conn: psycopg.Connection, statement: Statement, before: float, after: float,
            helped_by: list[str], sizes: dict[tuple[str, str], float]) -> str:
    """Why a top statement gets what it gets, in one line a DBA can check."""
    try:
        select = pglast.parse_sql(plannable(statement.query))[0].stmt
    except pglast.parser.ParseError:
        return "not costed: the statement does not parse as one SELECT"
    def leading_wildcard(pattern: Any) -> bool:
        """A pattern that starts with % (or one only known at run time): a btree cannot search for it."""
        if isinstance(pattern, ast.A_Const):
            return str(getattr(pattern.val, "sval", "")).startswith("%")
        return isinstance(pattern, ast.ParamRef) or any(
            isinstance(n, ast.A_Const) and getattr(n.val, "sval", None) == "%" for n in walk(pattern))

    substring = [n for n in walk(select) if isinstance(n, ast.A_Expr) and n.name
                 and n.name[0].sval in ("~~*", "~~") and leading_wildcard(n.rexpr)]
    pattern = ""
    if substring:
        column = next((".".join(str(f.sval) for f in (n.lexpr.fields or ()) if isinstance(f, ast.String))
                       for n in substring if isinstance(n.lexpr, ast.ColumnRef)), "<column>")
        pattern = (f"pattern search on {column} (LIKE/ILIKE '%…%'): no btree serves a leading wildcard — a trigram"
                   f" GIN index does: method: gin, columns: [\"{column.split('.')[-1]} gin_trgm_ops\"] with pg_trgm")
    if after < before:
        helped = f"helped: estimated cost {before:,.1f} → {after:,.1f} per call by {', '.join(helped_by) or 'the set'}"
        return f"{helped}; also a {pattern}" if pattern else helped
    if pattern:
        return pattern
    plans = _plans(conn, statement, every_set=True)
    first = list(nodes(plans[0])) if plans else []
    used = sorted({n["Index Name"] for n in first if "Index Name" in n})
    if used:
        typical = _rows_read(plans[0])
        heaviest = max(_rows_read(p) for p in plans)
        rows = f"~{typical:,} rows read by the plan" if heaviest <= typical else \
            f"typical ~{typical:,} rows, heaviest ~{heaviest:,} rows read by the plan"
        if heaviest >= HEAVY_ROWS:
            return (f"served, but heavy: {', '.join(used)} ({rows}) — the heaviest set reads too much for an index"
                    " to fix alone: a covering index (INCLUDE the columns it reads, for index-only scans), a rollup"
                    " (a materialized view of its per-key aggregates) or partitioning would")
        return f"already served by {', '.join(used)} ({rows})"
    aggregate = isinstance(select, ast.SelectStmt) and select.whereClause is None and (
        select.groupClause or any(isinstance(n, ast.FuncCall) for n in walk(select.targetList)))
    if aggregate:
        return ("a whole-table aggregate: no index makes it cheaper — a materialized view of this query, refreshed"
                " by pg_cron (materialized_views: with this SELECT), does")
    scanned = {n.get("Relation Name") for n in first if n.get("Node Type") == "Seq Scan"}
    small = [t for (_, t), rows in sizes.items() if t in scanned and rows < SMALL_TABLE_ROWS]
    if scanned and len(small) == len(scanned):
        return f"its tables are small ({', '.join(sorted(small))}: < {SMALL_TABLE_ROWS:,} rows): a scan is right"
    return (f"no candidate halved its estimated cost ({before:,.1f}) or saved ≥ {MIN_SAVING:.0%} of what indexes"
            " could still lower")


@dataclass
class Costing:
    """Every statement's estimated cost per call with a set of hypothetical indexes, and the plans behind it."""

    costs: dict[int, float]
    plans: dict[int, list[dict[str, Any]]]
    hypothetical: dict[str, Candidate]  # HypoPG's name of each hypothetical index → its candidate


def workload_cost(conn: psycopg.Connection, statements: list[Statement], hypothetical: list[Candidate],
                   every_set: bool = False, tail: bool = False) -> Costing:
    """Each statement's estimated cost per call with these hypothetical indexes: its mean over the sets costed (the
    first; with `tail` the typical and the heaviest, so the largest tenant weighs in the choice; or every set)."""
    conn.execute("SELECT hypopg_reset()")
    names: dict[str, Candidate] = {}
    for candidate in hypothetical:
        try:
            with conn.transaction():
                row = conn.execute("SELECT indexname FROM hypopg_create_index(%s)", [candidate.create_sql()]).fetchone()
                if row:
                    names[str(row[0])] = candidate
        except psycopg.Error:
            continue  # a candidate HypoPG cannot represent is costed as absent
    plans = {s.queryid: found for s in statements if (found := _plans(conn, s, every_set, tail))}
    conn.execute("SELECT hypopg_reset()")
    costs = {q: sum(float(p["Total Cost"]) for p in found) / len(found) for q, found in plans.items()}
    return Costing(costs, plans, names)


# a bitmap arm reading more than this share of its table is a low-selectivity index
LOW_SELECTIVITY = 0.05


def plan_hazards(plan: dict[str, Any], hypothetical: dict[str, Candidate], rows: dict[tuple[str, str], float],
                 referenced: set[str]) -> list[tuple[Candidate, str]]:
    """Where a plan bets on an estimate a new index invites: a partial index on columns the statement never
    mentions, read whole for its WHERE alone (all its entries, per loop, if the predicate's estimate is off), or a
    partial or low-selectivity index ANDed into a bitmap with another index."""
    found = []
    for node in nodes(plan):
        candidate = hypothetical.get(node.get("Index Name", ""))
        keys = {c.split()[0].strip('"') for c in candidate.columns} if candidate else set()
        if candidate and candidate.where and "Index Cond" not in node and not keys & referenced:
            found.append((candidate, f"its plan would read all of {candidate.name} (no index condition, only its WHERE"
                                     f" {candidate.where}) — it rests on that predicate's row estimate"))
        if node.get("Node Type") != "BitmapAnd":
            continue
        arms = [child.get("Index Name", "?") for child in node.get("Plans", [])]
        for child in node.get("Plans", []):
            candidate = hypothetical.get(child.get("Index Name", ""))
            share = float(child.get("Plan Rows", 0)) / max(rows.get((candidate.schema, candidate.table), 1.0), 1.0) \
                if candidate else 0.0
            if candidate and (candidate.where or share > LOW_SELECTIVITY):
                others = ", ".join(hypothetical[a].name if a in hypothetical else a for a in arms
                                   if a != child.get("Index Name"))
                kind = "partial" if candidate.where else f"{share:.0%} of the table"
                found.append((candidate, f"its plan would AND {candidate.name} ({kind}) with {others} in a bitmap"
                                         " — a combination the estimate favours and"
                                         f" a busy table may not"))
    return found


def statement_hazards(costing: Costing, statements: list[Statement],
                      rows: dict[tuple[str, str], float]) -> dict[int, list[tuple[Candidate, str]]]:
    """Each statement's risky plan shapes with the costing's hypothetical indexes."""
    found: dict[int, list[tuple[Candidate, str]]] = {}
    for statement in statements:
        referenced = referenced_columns(statement.query)
        hazards = [h for plan in costing.plans.get(statement.queryid, [])
                   for h in plan_hazards(plan, costing.hypothetical, rows, referenced)]
        if hazards:
            found[statement.queryid] = list(dict.fromkeys(hazards))
    return found


# a predicate's row estimate this many times off what a sample finds: the table's statistics are stale
MISESTIMATE = 10.0


# one sample per connection, table and predicate: the partial candidates of a table share their WHERE
@functools.lru_cache(maxsize=256)
def stale_predicate(conn: psycopg.Connection, schema: str, table: str, where: str, rows: float) -> str | None:
    return predicate_misestimate(conn, Candidate(schema, table, (), where=where), rows)


def predicate_misestimate(conn: psycopg.Connection, candidate: Candidate, rows: float) -> str | None:
    """A partial candidate's WHERE as the planner estimates it against what a sample of the table finds: HypoPG
    sizes the index, and the planner prices every plan that reads it, on that estimate."""
    table = sql.Identifier(candidate.schema, candidate.table)
    share = min(100.0, max(0.1, 100_000 / max(rows, 1.0) * 100))  # ~100k rows read
    try:
        with conn.transaction():
            plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} WHERE {}").format(
                table, sql.SQL(candidate.where))).fetchone()
            found = conn.execute(sql.SQL("SELECT count(*) AS pgconverge_sample FROM {} TABLESAMPLE SYSTEM ({})"
                                         " REPEATABLE (7) WHERE {}").format(
                table, sql.Literal(round(share, 3)), sql.SQL(candidate.where))).fetchone()
    except psycopg.Error:
        return None
    if not plan or not found:
        return None
    estimated, sampled = float(plan[0][0]["Plan"]["Plan Rows"]), float(found[0]) * 100 / share
    if max(estimated, sampled) < 1000 or max(estimated, sampled) < MISESTIMATE * max(min(estimated, sampled), 1.0):
        return None
    return (f"the planner estimates {estimated:,.0f} row(s) WHERE {candidate.where} on {candidate.schema}.{candidate.table},"
            f" a {share:g} % sample finds ~{sampled:,.0f}: its statistics are stale (ANALYZE it, then advise again)"
            " — a partial index priced on them is a bet every plan that reads it would take")
