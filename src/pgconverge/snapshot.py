"""Read-only snapshots of a database's health (the runbook's baseline and performance checks) and their comparison."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import psycopg

from .secrets import mask
from .spec import Spec

SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# a database with thousands of tables: the largest ones tell the story, the rest made each snapshot megabytes
TOP_RELATIONS = 200
# snapshots kept per host folder, like backups' retention
RETENTION = 50


def _rows(conn: psycopg.Connection, query: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cursor = conn.execute(query, params or [])  # type: ignore[arg-type]
    names = [c.name for c in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def measure_workload(conn: psycopg.Connection, spec: Spec, runs: int,
                     budget_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """p50/p95/p99 of every declared workload query that can run here (its `needs:` exist); this is also the
    replay that gives pg_stat_statements its baseline; fewer calls for one slower than `budget_s` in all."""
    from . import gates

    params = gates.ParamSampler(conn, spec)
    measured: dict[str, dict[str, Any]] = {}
    for query in spec.workload:
        if query.needs and not present(conn, query.needs):
            continue
        samples = gates.time_within(conn, query, params, runs, budget_s)
        measured[query.name] = {**gates.percentiles(samples, 2), "runs": len(samples)}
    return measured


def present(conn: psycopg.Connection, name: str) -> bool:
    """A relation or function of that (optionally schema-qualified) name exists."""
    # the column name marks it as ours in pg_stat_statements (PG 18 stores the text without a leading comment)
    row = conn.execute("SELECT coalesce(to_regclass(%s)::text, to_regproc(%s)::text) IS NOT NULL AS pgconverge_present",
                       [name, name]).fetchone()
    return bool(row and row[0])


def take(conn: psycopg.Connection, redis_url: str | None = None, spec: Spec | None = None,
         kpi_runs: int = 0) -> dict[str, Any]:
    snapshot: dict[str, Any] = {"taken_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    snapshot["database"] = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    if spec is not None and spec.workload and kpi_runs > 0:
        snapshot["kpi"] = measure_workload(conn, spec, kpi_runs)
    # pg_stat_statements lives wherever it was created (Supabase: schema extensions)
    row = conn.execute("SELECT quote_ident(n.nspname) || '.pg_stat_statements' FROM pg_extension e"
                       " JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'").fetchone()
    if row:
        pgss = row[0]
        statement = """
            SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 120) AS query, calls,
                   round(mean_exec_time::numeric, 3) AS mean_ms, round(total_exec_time::numeric, 1) AS total_ms
            FROM """ + pgss + """
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND query NOT ILIKE '%%pg_stat_statements%%'
            ORDER BY {} DESC LIMIT 10"""
        snapshot["top_by_mean"] = _rows(conn, statement.format("mean_exec_time"))
        snapshot["top_by_total"] = _rows(conn, statement.format("total_exec_time"))
        snapshot["slow_query_share"] = float(conn.execute(
            "SELECT coalesce(sum(calls) FILTER (WHERE mean_exec_time > 1000)::float / nullif(sum(calls), 0), 0)"
            f" FROM {pgss} WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"  # type: ignore[arg-type]
        ).fetchone()[0])  # type: ignore[index]
        # per statement totals, so that a later snapshot can judge only the calls made in between
        snapshot["statements"] = {str(r[0]): [int(r[1]), round(float(r[2]), 3)] for r in conn.execute(
            f"SELECT queryid, sum(calls), sum(total_exec_time) FROM {pgss}"  # type: ignore[arg-type]
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL"
            " GROUP BY queryid")}  # one queryid per role and nesting level
    snapshot["tables"] = _rows(conn, """
        SELECT CASE s.schemaname WHEN 'public' THEN s.relname ELSE s.schemaname || '.' || s.relname END AS table,
               pg_total_relation_size(s.relid) AS total_bytes,
               pg_indexes_size(s.relid) AS index_bytes, s.seq_scan, coalesce(s.idx_scan, 0) AS idx_scan,
               s.n_live_tup AS live_rows
        FROM pg_stat_user_tables s WHERE s.schemaname NOT IN ('cron', 'extensions')
        ORDER BY total_bytes DESC LIMIT %s""", [TOP_RELATIONS])
    snapshot["indexes"] = _rows(conn, """
        SELECT CASE schemaname WHEN 'public' THEN indexrelname ELSE schemaname || '.' || indexrelname END AS index,
               relname AS table, pg_relation_size(indexrelid) AS bytes, idx_scan
        FROM pg_stat_user_indexes WHERE schemaname NOT IN ('cron', 'extensions') ORDER BY bytes DESC LIMIT %s""",
        [TOP_RELATIONS])
    hit = conn.execute("""
        SELECT round(100.0 * sum(heap_blks_hit) / nullif(sum(heap_blks_hit + heap_blks_read), 0), 2),
               round(100.0 * sum(idx_blks_hit) / nullif(sum(idx_blks_hit + idx_blks_read), 0), 2)
        FROM pg_statio_user_tables""").fetchone()
    snapshot["cache_hit_percent"] = {"heap": float(hit[0] or 0), "index": float(hit[1] or 0)}  # type: ignore[index]
    cron = conn.execute("SELECT has_schema_privilege('cron', 'USAGE')"
                        " FROM pg_namespace WHERE nspname = 'cron'").fetchone()
    if cron and cron[0]:
        snapshot["cron_jobs"] = _rows(conn, """
            SELECT j.jobname, j.schedule, j.active, d.status AS last_status, d.end_time AS last_end,
                   extract(epoch FROM now() - d.end_time)::int AS seconds_since
            FROM cron.job j LEFT JOIN LATERAL (
                SELECT status, end_time FROM cron.job_run_details r WHERE r.jobid = j.jobid
                ORDER BY r.start_time DESC LIMIT 1) d ON true
            ORDER BY j.jobname""")
    if redis_url:
        snapshot["redis"] = redis_figures(redis_url)
    return json.loads(mask(json.dumps(snapshot, default=str)))


def redis_figures(url: str) -> dict[str, Any]:
    import redis

    try:
        info = redis.Redis.from_url(url, socket_timeout=3).info()
    except redis.RedisError as exc:
        return {"error": mask(str(exc))}
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    return {"used_memory": info.get("used_memory"), "maxmemory": info.get("maxmemory"),
            "hit_rate_percent": round(100 * hits / (hits + misses), 2) if hits + misses else None}


def write(snapshot: dict[str, Any], reports: Path, environment: str, host: str, label: str,
          retention: int = RETENTION) -> Path:
    """reports/<environment>/<host>/<stamp>-<label>.json; the oldest beyond `retention` are removed."""
    directory = reports / SAFE.sub("_", environment) / SAFE.sub("_", host.strip("@"))
    directory.mkdir(parents=True, exist_ok=True)
    stamp = snapshot["taken_at"].replace(":", "").replace("-", "")[:15]
    path = directory / f"{stamp}-{SAFE.sub('_', label)}.json"
    path.write_text(json.dumps(snapshot, indent=2))
    for old in sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)[max(retention, 1):]:
        old.unlink(missing_ok=True)
    return path


SLOW_MS = 1000.0  # the runbook's "slow query": more than 1 s


def slow_share_between(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """Share of the calls made between two snapshots whose statement averaged > 1 s in that window (None when
    the statistics were reset in between or one snapshot has none)."""
    before, after = a.get("statements"), b.get("statements")
    if before is None or after is None:
        return None
    calls = slow = 0
    for queryid, (n, total) in after.items():
        n0, total0 = before.get(queryid, (0, 0.0))
        if n < n0:
            return None  # reset in between: the window cannot be told
        if n > n0:
            calls += n - n0
            slow += (n - n0) if (total - total0) / (n - n0) > SLOW_MS else 0
    return slow / calls if calls else 0.0


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Markdown: the runbook's Vorher/Nachher table (workload p95 per query), its target KPIs, and the health
    figures of two snapshots."""
    lines = [f"## Before/after: {a['taken_at']} → {b['taken_at']} ({b['database']})", ""]
    kpi_a, kpi_b = a.get("kpi") or {}, b.get("kpi") or {}
    if kpi_b:
        lines += ["| workload query | before p95 ms | after p95 ms | change |", "|---|---:|---:|---:|"]
        for name, after in kpi_b.items():
            before = kpi_a.get(name)
            if before is None:
                lines.append(f"| {name} | — | {after['p95_ms']} | new |")
                continue
            change = (f"{100 * (after['p95_ms'] - before['p95_ms']) / before['p95_ms']:+.1f} %"
                      if before["p95_ms"] else "—")
            lines.append(f"| {name} | {before['p95_ms']} | {after['p95_ms']} | {change} |")
        lines.append("")
    window = slow_share_between(a, b)
    redis_after = (b.get("redis") or {}).get("hit_rate_percent")
    lines += ["| target (runbook) | before | after | target |", "|---|---:|---:|---:|"]
    slow_after = (f"{window:.2%} (calls in between)" if window is not None
                  else f"{b.get('slow_query_share', 0):.2%} (since stats reset)")
    lines.append(f"| slow queries (> 1 s) share of calls | {a.get('slow_query_share', 0):.2%} | {slow_after} | < 5 % |")
    redis_before = (a.get("redis") or {}).get("hit_rate_percent")
    lines.append(f"| cache hit rate (Redis) | {_percent(redis_before, a)} | {_percent(redis_after, b)} | > 70 % |")
    for kind in ("heap", "index"):
        lines.append(f"| {kind} buffer cache hit | {a['cache_hit_percent'][kind]} % | {b['cache_hit_percent'][kind]} % |"
                     " — |")
    lines += ["", "| table | size before | size after | index share of scans before | after |", "|---|---:|---:|---:|---:|"]
    before_tables = {t["table"]: t for t in a["tables"]}
    for t in b["tables"]:
        old = before_tables.get(t["table"], t)
        lines.append(f"| {t['table']} | {_mb(old['total_bytes'])} | {_mb(t['total_bytes'])} | "
                     f"{_index_share(old)} | {_index_share(t)} |")
    if b.get("cron_jobs"):
        lines += ["", "| cron job | schedule | last status | seconds since |", "|---|---|---|---:|"]
        lines += [f"| {j['jobname']} | {j['schedule']} | {j['last_status'] or 'never ran'} | {j['seconds_since'] or '—'} |"
                  for j in b["cron_jobs"]]
    return "\n".join(lines) + "\n"


def _percent(value: float | None, snapshot: dict[str, Any]) -> str:
    if value is not None:
        return f"{value} %"
    redis = snapshot.get("redis")
    return "no Redis measured" if redis is None else ("unreachable" if "error" in redis else "no traffic yet")


def _mb(size: int) -> str:
    return f"{size / 1048576:,.1f} MB"


def _index_share(table: dict[str, Any]) -> str:
    total = table["seq_scan"] + table["idx_scan"]
    return f"{100 * table['idx_scan'] / total:.1f} %" if total else "—"


def chart(a: dict[str, Any], b: dict[str, Any], path: Path) -> None:
    """Workload p95 before/after (log scale, when measured) beside table sizes before/after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kpi_a, kpi_b = a.get("kpi") or {}, b.get("kpi") or {}
    names = [n for n in kpi_b if n in kpi_a]
    fig, axes = plt.subplots(1, 2 if names else 1, figsize=(13 if names else 9, 4.8), squeeze=False)
    if names:
        ax = axes[0][0]
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [kpi_a[n]["p95_ms"] for n in names], 0.4, label="before")
        ax.bar([i + 0.2 for i in x], [kpi_b[n]["p95_ms"] for n in names], 0.4, label="after")
        ax.set_yscale("log")
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel("p95 ms (log)")
        ax.set_title("Workload p95: before and after")
        ax.legend()
    ax = axes[0][-1]
    tables = [t["table"] for t in b["tables"]]
    before = {t["table"]: t for t in a["tables"]}
    x = range(len(tables))
    ax.bar([i - 0.2 for i in x], [before.get(t, {}).get("total_bytes", 0) / 1048576 for t in tables], 0.4, label="before")
    ax.bar([i + 0.2 for i in x], [t["total_bytes"] / 1048576 for t in b["tables"]], 0.4, label="after")
    ax.set_xticks(list(x))
    ax.set_xticklabels(tables, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("table + indexes, MB")
    ax.set_title("Table sizes including indexes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
