"""`pgconverge advise`: the slowest statements of the real workload (pg_stat_statements), candidate indexes read
from their text (pglast: candidates.py), costed as hypothetical indexes (HypoPG) for sampled parameters
(costing.py), chosen greedily by estimated cost per second net of upkeep, never a statement costlier nor a risky
plan (selection.py) → a phases.yml with not-slower gates and the evidence (proposal.py). Read-only on the target:
plans, hypothetical indexes and samples only."""

from __future__ import annotations

from dataclasses import replace

import psycopg

from ..evidence import nodes
from ..spec import Spec
from .candidates import candidates_of, declared_candidates, declared_statements, fingerprint, plannable, workload_files
from .costing import SMALL_TABLE_ROWS, plan_hazards, typical_and_heaviest, verdict, workload_cost
from .model import Advice, Candidate, Statement, one_line
from .proposal import NothingToAdvise, fleet_advice, proposal, to_yaml, write_proposal
from .rollups import rollup_of
from .selection import attribute, choose, settle
from .statements import (
    redundant_indexes,
    require_hypopg,
    sampled_values,
    table_rows,
    top_statements,
    unique_keys,
    write_rates,
)

__all__ = ["Advice", "Candidate", "NothingToAdvise", "Statement", "advise", "candidates_of", "declared_statements",
           "fingerprint", "fleet_advice", "one_line", "plan_hazards", "plannable", "proposal", "table_rows", "to_yaml",
           "write_proposal", "write_rates"]


def advise(conn: psycopg.Connection, spec: Spec | None, min_calls: int = 5, min_mean_ms: float = 0.0,
           top: int = 20, offer_declared: bool = True, write_window_s: float = 0.0) -> Advice:
    """`offer_declared`: phases.yml's own indexes compete with advise's candidates (the bench turns it off to
    compare advise's choice with them). `write_window_s`: how long to watch the tables' writes."""
    require_hypopg(conn)
    advice = Advice()
    declared = declared_statements(spec)
    statements: list[Statement] = []
    seen: dict[str, int] = {}  # declared name → its index in statements
    for statement in top_statements(conn, min_calls, min_mean_ms, top):
        name, text = declared.get(fingerprint(statement.query) or "", ("", statement.query))
        if name in seen:
            # the same declared query under another queryid (other parameter types, another role): one statement
            first = statements[seen[name]]
            calls = first.calls + statement.calls
            statements[seen[name]] = replace(first, calls=calls, total_ms=first.total_ms + statement.total_ms,
                                             mean_ms=(first.total_ms + statement.total_ms) / max(calls, 1),
                                             calls_per_s=first.calls_per_s + statement.calls_per_s)
            continue
        statements.append(replace(statement, query=text))
        if name:
            seen[name] = len(statements) - 1
            advice.declared[statement.queryid] = name
    columns: dict[tuple[str, str], set[str]] = {}
    for schema, table, column in conn.execute(
            "SELECT n.nspname, c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND a.attnum > 0"
            " AND NOT a.attisdropped AND n.nspname NOT IN ('pg_catalog', 'information_schema')").fetchall():
        columns.setdefault((schema, table), set()).add(column)
    sizes = table_rows(conn)
    for statement in statements:
        declared_name = advice.declared.get(statement.queryid)
        if declared_name and spec is not None:
            # the declared workload is the source of truth: its name, its SQL, its own parameter query
            query = spec.query(declared_name)
            advice.declared_queries[statement.queryid] = (declared_name, query.sql, query.params_sql or "",
                                                          query.needs)
            advice.workload[statement.queryid] = (query.sql, query.params_sql or "")
            continue
        # every top statement gets a workload query and a gate, not only the ones an index targets
        files = workload_files(statement, columns, sizes)
        if files:
            advice.workload[statement.queryid] = files
        else:
            # pg_stat_statements keeps no parameter values: only those compared with a column can be sampled
            advice.ungated[statement.queryid] = ("a parameter is compared with no column (LIMIT, interval, an"
                                                 " expression): declare the query under workload: with its values")
    statements = [replace(s, values=sampled_values(conn, s, *advice.workload.get(s.queryid, ("", "")),
                                                   declared=s.queryid in advice.declared_queries))
                  for s in statements]
    # the tail too: the typical set first, the heaviest second (costed as plans, nothing runs)
    statements = [replace(s, values=typical_and_heaviest(conn, s)) for s in statements]
    advice.unique_keys = unique_keys(conn)
    # what the tables take now weighs each candidate's upkeep against what it saves
    advice.write_rates, advice.write_basis = write_rates(conn, write_window_s)
    pool = list(dict.fromkeys(c for s in statements for c in candidates_of(s.query, columns)))
    if offer_declared:
        existing = {f"{r[0]}.{r[1]}" for r in conn.execute(
            "SELECT schemaname, indexname FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")}
        pool += declared_candidates(spec, existing)
    base = workload_cost(conn, statements, [], every_set=True)
    statements = [s for s in statements if s.queryid in base.costs]
    chosen = choose(conn, statements, pool, advice, sizes)
    chosen = settle(conn, statements, chosen, base, advice, sizes)
    final = attribute(conn, statements, chosen, base, advice)
    advice.statements = [(s, base.costs[s.queryid], final.costs.get(s.queryid, base.costs[s.queryid]))
                         for s in statements]
    helped_by: dict[int, list[str]] = {}
    for candidate, _, _, helped in advice.chosen:
        for queryid, _, _ in helped:
            helped_by.setdefault(queryid, []).append(candidate.name)
    for statement, before, after in advice.statements:
        advice.verdicts[statement.queryid] = verdict(conn, statement, before, after,
                                                     helped_by.get(statement.queryid, []), sizes)
        for why, names in advice.warnings.get(statement.queryid, {}).items():
            advice.verdicts[statement.queryid] += f"; left out {', '.join(names)}: {why}"
        rollup = rollup_of(statement.query, columns)
        if rollup is not None and sizes.get((rollup.schema, rollup.table), 0) >= SMALL_TABLE_ROWS:
            advice.rollups.append((statement.queryid, rollup))
            advice.verdicts[statement.queryid] += (
                f"; rollup: it aggregates a time range per {', '.join(rollup.keys) or 'bucket'} — a materialized view"
                f" per ({', '.join(rollup.keys)}, {rollup.unit}) answers it from buckets, not rows (the opt-in phase"
                f" below: {rollup.schema}.{rollup.name})")
    advice.unused = [(r[0], r[1], str(r[2])) for r in conn.execute(
        "SELECT s.schemaname || '.' || s.indexrelname, pg_relation_size(s.indexrelid),"
        " coalesce(d.stats_reset, pg_postmaster_start_time()) FROM pg_stat_user_indexes s"
        " JOIN pg_index i ON i.indexrelid = s.indexrelid, pg_stat_database d"
        " WHERE d.datname = current_database() AND s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary"
        " ORDER BY 2 DESC LIMIT 20").fetchall()]
    advice.redundant = redundant_indexes(conn)
    for queryid, plans in base.plans.items():  # no hypothetical index here: what the statements read today
        user = advice.declared.get(queryid) or f"queryid {queryid}"
        for index in sorted({n["Index Name"] for plan in plans for n in nodes(plan) if "Index Name" in n}):
            advice.index_users.setdefault(index, []).append(user)
    return advice

