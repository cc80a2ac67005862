"""The proposal as a phases.yml (workload, indexes, not-slower gates, revert) with its evidence as comments, and
one proposal for a fleet of databases with the same schema."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..names import QualifiedName
from .model import MAX_INDEXES, MIN_SAVING, Advice, Candidate, one_line
from .rollups import Rollup, rewritten


def write_proposal(advice: Advice, directory: Path, phase_id: str = "advised") -> Path:
    """A phases.yml that validates on its own, with its sql/ beside it: the workload queries advise could sample
    parameters for, the phase with the indexes, and gates (no INVALID index, p95 of each improved statement).
    Nothing is written when there is nothing to advise."""
    if not advice.chosen:
        raise NothingToAdvise(f"nothing to advise: no index makes the {len(advice.statements)} top statements cheaper"
                              f" — nothing written to {directory}")
    for folder in ("workload/params", "gates"):
        (directory / "sql" / folder).mkdir(parents=True, exist_ok=True)
    (directory / "sql" / "gates" / "no_invalid_indexes.sql").write_text(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid\n")
    for queryid, name, query, params, _ in workload_entries(advice, phase_id):
        origin = "declared in phases.yml" if queryid in advice.declared_queries else "pg_stat_statements"
        (directory / "sql" / "workload" / f"{name}.sql").write_text(f"-- {origin}, queryid {queryid}\n{query}\n")
        if params:
            (directory / "sql" / "workload" / "params" / f"{name}.sql").write_text(params + "\n")
    path = directory / "phases.yml"
    path.write_text("version: 1\n" + to_yaml(advice, phase_id))
    return path


class NothingToAdvise(UserError):
    """No index would make the workload cheaper: no proposal is written."""


def review_redundant(redundant: list[tuple[str, str, int, str, str, str]], users: dict[str, list[str]]
                     ) -> tuple[list[tuple[str, str, int, str, str, str]], list[tuple[str, str, list[str]]]]:
    """The redundant indexes no top statement reads (offered for removal), and those some read (named with them,
    never offered)."""
    droppable = [r for r in redundant if not users.get(r[1])]
    read = [(r[1], r[5], users[r[1]]) for r in redundant if users.get(r[1])]
    return droppable, read


def workload_entries(advice: Advice, phase_id: str) -> list[tuple[int, str, str, str, str | None]]:
    """(queryid, name, SQL, parameter query, needs) of each workload query of the proposal: a declared one keeps its
    name, the others are numbered."""
    entries = []
    for number, (queryid, (query, params)) in enumerate(sorted(advice.workload.items()), 1):
        declared = advice.declared_queries.get(queryid)
        entries.append((queryid, *declared) if declared else (queryid, f"{phase_id}_{number}", query, params, None))
    return entries


def proposal(advice: Advice, phase_id: str = "advised") -> dict[str, Any]:
    """The workload: and phases: sections of a proposal, as data."""
    means = {s.queryid: s.mean_ms for s, _, _ in advice.statements}
    document: dict[str, Any] = {}
    entries = workload_entries(advice, phase_id)
    if entries:
        document["workload"] = [
            {"name": name, "sql": f"workload/{name}.sql",
             **({"params": f"workload/params/{name}.sql"} if params else {}), **({"needs": needs} if needs else {}),
             "description": ("declared in phases.yml" if queryid in advice.declared_queries
                             else "from pg_stat_statements") + f", queryid {queryid}"}
            for queryid, name, _, params, needs in entries]
    by_id = {s.queryid: (s, b) for s, b, _ in advice.statements}
    names = {queryid: name for queryid, name, *_ in entries} | {
        q: advice.declared.get(q) or f"queryid {q}" for q in by_id if q not in advice.workload}
    indexes = []
    for candidate, before, after, helped in advice.chosen:
        writes = advice.write_rates.get(QualifiedName(candidate.schema, candidate.table), 0.0)
        # each statement it made cheaper: its name, its estimated cost per call before → after, how often it runs
        served = [f"{names.get(q, q)} {b:,.1f} → {a:,.1f} per call, {by_id[q][0].calls_per_s:.2f} calls/s"
                  for q, b, a in helped if q in by_id]
        origin = f"declared in phases.yml as {candidate.declared}; " if candidate.declared else ""
        indexes.append({
            "name": candidate.name, "table": str(QualifiedName(candidate.schema, candidate.table)),
            "columns": list(candidate.columns),
            **({"include": list(candidate.include)} if candidate.include else {}),
            **({"where": candidate.where} if candidate.where else {}),
            "serves": fitted(origin, served,
                             f"workload cost {before:,.0f} → {after:,.0f} per second"
                             f" (calls/s × est. cost); the table takes {writes:.1f} writes/s ({advice.write_basis})"
                             + (f": upkeep ~{advice.maintenance[candidate.name]:,.0f}/s weighed in"
                                if candidate.name in advice.maintenance else ": upkeep not weighed (no measured window)")
                             + (f"; {advice.chosen_on[candidate.name]}" if candidate.name in advice.chosen_on else ""))})
    gates: list[dict[str, Any]] = [{"name": f"{phase_id}_no_invalid_indexes", "kind": "sql",
                                    "sql": "gates/no_invalid_indexes.sql", "expect": "no_rows"}]
    # every statement with sampleable parameters is protected, not only the ones an index targets: no worse than
    # before (1.2×, plus 0.5 ms so sub-millisecond noise cannot fail it); a failure reverts what the phase built
    gates += [{"name": f"{name}_not_slower", "kind": "latency", "query": name,
               "max_ratio_to_before": 1.2, "slack_ms": 0.5, "runs": 20}
              for queryid, name, *_ in entries if queryid in means]
    document["phases"] = [{"id": phase_id, "title": "Indexes advised from the real workload (HypoPG estimates)",
                           "on_gate_failure": "revert", "indexes": indexes, "gates": gates}]
    return document


def to_yaml(advice: Advice, phase_id: str = "advised") -> str:
    """The proposal as YAML (paste its sections into phases.yml), its evidence as comments below it."""
    lines = ["# pgconverge advise: indexes chosen from pg_stat_statements with HypoPG cost estimates.",
             "# pgconverge validate, then pyinfra … deploys/phase.py --data phase=" + phase_id,
             yaml.safe_dump(proposal(advice, phase_id), sort_keys=False, allow_unicode=True, width=120).rstrip()]
    if advice.fleet:
        lines += ["", "# The fleet's evidence, per database:"] + [f"#   {line}" for line in advice.fleet]
    lines += ["", "# Statements (queryid, calls, mean ms, estimated cost before → after):"]
    for s, b, a in advice.statements:
        lines.append(f"#   {s.queryid}: {s.calls} calls, {s.mean_ms:.2f} ms, {b:,.1f} → {a:,.1f}  {one_line(s.query)[:90]}")
        if s.queryid in advice.verdicts:
            lines.append(f"#     verdict: {advice.verdicts[s.queryid]}")
        if s.queryid in advice.ungated:
            lines.append(f"#     no gate: {advice.ungated[s.queryid]}")
    if advice.rejected:
        lines += ["", "# Left out although they saved the most at their turn (the application's plans come first):"]
        names = {queryid: name for queryid, name, *_ in workload_entries(advice, phase_id)}
        reasons: dict[str, list[str]] = {}
        for c, q, why in advice.rejected:
            reasons.setdefault(f"for {names.get(q, f'queryid {q}')}: {why}", []).append(
                f"{c.name} ({', '.join(c.columns)})" + (f" WHERE {c.where}" if c.where else ""))
        lines += [f"#   {', '.join(found)} — {why}" for why, found in reasons.items()]
    lines += rollup_lines(advice)
    droppable, read = review_redundant(advice.redundant, advice.index_users)
    if droppable:
        lines += ["", "# Redundant indexes, for review. pgconverge drops only what it manages: declare one as it is (it is",
                  "# adopted, no build), converge, then set state: absent and converge again."]
        lines += [f"#   - name: {name}  # {size:,} bytes, {why}\n#     table: {table}\n#     columns: [{columns}]\n"
                  "#     state: absent" for _, name, size, table, columns, why in droppable]
    if read:
        lines += ["", "# Redundant by their keys but read by top statements' plans today — keep them (dropping one moves",
                  "# those plans to the wider index, or off indexes):"]
        lines += [f"#   {name} ({why}): read by {', '.join(users)}" for name, why, users in read]
    if advice.unused:
        lines += ["", "# Unused since the statistics were reset (idx_scan = 0; review before removing):"]
        lines += [f"#   {name} ({size:,} bytes, stats since {since}) — state: absent to remove" for name, size, since
                  in advice.unused]
    return "\n".join(lines) + "\n"


# phases.yml's limit on an index's serves: (the schema's maxLength)
SERVES_LIMIT = 500


def fitted(origin: str, served: list[str], rest: str) -> str:
    """An index's serves: as many of the statements it made cheaper as fit beside the rest, then how many more (the
    comments below the proposal list them all)."""
    for shown in range(len(served), -1, -1):
        more = f"and {len(served) - shown} more; " if shown < len(served) else ""
        text = origin + "".join(f"{s}; " for s in served[:shown]) + more + rest
        if len(text) <= SERVES_LIMIT:
            return text
    return (origin + rest)[:SERVES_LIMIT - 1] + "…"


def merged_rollups(advice: Advice) -> list[tuple[Rollup, list[int]]]:
    """One view per shape (table, keys, bucket, filters), with every measure its statements aggregate."""
    found: dict[tuple, tuple[Rollup, list[int]]] = {}
    for queryid, rollup in advice.rollups:
        known, ids = found.get(rollup.shape, (rollup, []))
        measures = tuple(dict.fromkeys([*known.measures, *rollup.measures]))
        found[rollup.shape] = (replace(known, measures=measures), [*ids, queryid])
    return list(found.values())


def rollup_lines(advice: Advice) -> list[str]:
    """The opt-in rollup phase, commented out: the runbook's phase 2 for the statements a rollup serves."""
    rollups = merged_rollups(advice)
    if not rollups:
        return []
    names = {queryid: name for queryid, name, *_ in workload_entries(advice, "advised")}
    by_id = {s.queryid: s for s, _, _ in advice.statements}
    phase: dict[str, Any] = {"id": "rollups", "title": "Per-key rollups for the time-range aggregates (advised)",
                             "materialized_views": [], "cron_jobs": []}
    files, alternatives = [], []
    for rollup, ids in rollups:
        qualified = f"{rollup.schema}.{rollup.name}"
        phase["materialized_views"].append({"name": qualified, "sql": f"rollups/{rollup.name}.sql",
                                            "unique_key": rollup.unique_key})
        phase["cron_jobs"].append({"name": f"refresh-{rollup.name.replace('_', '-')}"[:63],
                                   "schedule": "*/15 * * * *",
                                   "command": f"REFRESH MATERIALIZED VIEW CONCURRENTLY {qualified}"})
        files += [f"sql/rollups/{rollup.name}.sql:", *(f"  {line}" for line in rollup.view_sql().splitlines())]
        alternatives += [f"{names.get(q, f'queryid {q}')}, from {qualified}: {rewritten(by_id[q].query, rollup)}"
                         for q in ids if q in by_id]
    text = yaml.safe_dump({"phases": [phase]}, sort_keys=False, allow_unicode=True, width=120).rstrip()
    return (["", "# Opt-in: rollups (the runbook's phase 2) for the statements that aggregate a time range per key.",
             "# Uncomment the phase into phases.yml, write its SQL below to sql/, and declare each rewritten statement",
             "# under workload: (needs: the view) — the application reads the view instead of the rows."]
            + [f"# {line}" for line in text.splitlines()[1:]]
            + ["#"] + [f"# {line}" for line in files]
            + ["#", "# The statements rewritten against them (a range edge inside a bucket counts the whole bucket):"]
            + [f"#   {line}" for line in alternatives])


def fleet_advice(advices: dict[str, Advice]) -> Advice:
    """One proposal for databases with the same schema: every index chosen on any of them, ranked by the workload
    cost it saves summed over the fleet (calls/s × estimated cost, each database's own pg_stat_statements), kept while
    it saves at least MIN_SAVING of the fleet's total; workload queries and gates from the database with the most
    work; the evidence per database as comments."""
    if not advices:
        return Advice()
    saving: dict[Candidate, float] = {}
    where: dict[Candidate, list[str]] = {}
    for host, advice in advices.items():
        for candidate, before, after, _ in advice.chosen:
            saving[candidate] = saving.get(candidate, 0.0) + before - after
            where.setdefault(candidate, []).append(host)
    total = sum(sum(b * s.calls_per_s for s, b, _ in a.statements) for a in advices.values()) or 1.0
    busiest = max(advices, key=lambda h: sum(b * s.calls_per_s for s, b, _ in advices[h].statements))
    merged = replace(advices[busiest], chosen=[], fleet=[], chosen_on={})
    remaining = total
    for candidate in sorted(saving, key=lambda c: -saving[c])[:MAX_INDEXES]:
        if saving[candidate] < MIN_SAVING * remaining:
            break
        merged.chosen.append((candidate, remaining, remaining - saving[candidate], ()))
        merged.chosen_on[candidate.name] = (f"chosen on {len(where[candidate])} of {len(advices)} databases"
                                            f" ({', '.join(where[candidate])})")
        remaining -= saving[candidate]
    for host, advice in sorted(advices.items()):
        work = sum(b * s.calls_per_s for s, b, _ in advice.statements)
        top = max(advice.statements, key=lambda t: t[1] * t[0].calls_per_s, default=None)
        merged.fleet.append(
            f"{host}: {len(advice.statements)} statements, {100 * work / total:.0f} % of the fleet's estimated"
            f" workload; its own choice: {', '.join(c.name for c, *_ in advice.chosen) or 'none'}"
            + (f"; heaviest: {one_line(top[0].query)[:70]} ({top[0].calls} calls, {top[0].mean_ms:.2f} ms)"
               if top else ""))
    merged.fleet.append(f"workload queries and gates below come from {busiest}, the database with the most work")
    return merged
