"""Read-only snapshots of a database's health (the runbook's baseline and performance checks) and their comparison."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import psycopg

from .secrets import mask

SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _rows(conn: psycopg.Connection, query: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cursor = conn.execute(query, params or [])  # type: ignore[arg-type]
    names = [c.name for c in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def take(conn: psycopg.Connection, redis_url: str | None = None) -> dict[str, Any]:
    snapshot: dict[str, Any] = {"taken_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    snapshot["database"] = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
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
    snapshot["tables"] = _rows(conn, """
        SELECT s.relname AS table, pg_total_relation_size(s.relid) AS total_bytes,
               pg_indexes_size(s.relid) AS index_bytes, s.seq_scan, coalesce(s.idx_scan, 0) AS idx_scan,
               s.n_live_tup AS live_rows
        FROM pg_stat_user_tables s WHERE s.schemaname = 'public' ORDER BY total_bytes DESC""")
    snapshot["indexes"] = _rows(conn, """
        SELECT indexrelname AS index, relname AS table, pg_relation_size(indexrelid) AS bytes, idx_scan
        FROM pg_stat_user_indexes WHERE schemaname = 'public' ORDER BY bytes DESC""")
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


def write(snapshot: dict[str, Any], reports: Path, environment: str, host: str, label: str) -> Path:
    directory = reports / SAFE.sub("_", environment) / SAFE.sub("_", host.strip("@"))
    directory.mkdir(parents=True, exist_ok=True)
    stamp = snapshot["taken_at"].replace(":", "").replace("-", "")[:15]
    path = directory / f"{stamp}-{SAFE.sub('_', label)}.json"
    path.write_text(json.dumps(snapshot, indent=2))
    return path


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Markdown: the runbook's Vorher/Nachher view of two snapshots."""
    lines = [f"## Snapshot comparison: {a['taken_at']} → {b['taken_at']} ({b['database']})", ""]
    lines += ["| measure | before | after |", "|---|---:|---:|"]
    lines.append(f"| slow queries (> 1 s) share | {a.get('slow_query_share', 0):.2%} | {b.get('slow_query_share', 0):.2%} |")
    for kind in ("heap", "index"):
        lines.append(f"| {kind} cache hit | {a['cache_hit_percent'][kind]} % | {b['cache_hit_percent'][kind]} % |")
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


def _mb(size: int) -> str:
    return f"{size / 1048576:,.1f} MB"


def _index_share(table: dict[str, Any]) -> str:
    total = table["seq_scan"] + table["idx_scan"]
    return f"{100 * table['idx_scan'] / total:.1f} %" if total else "—"


def chart(a: dict[str, Any], b: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = [t["table"] for t in b["tables"]]
    before = {t["table"]: t for t in a["tables"]}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = range(len(tables))
    ax.bar([i - 0.2 for i in x], [before.get(t, {}).get("total_bytes", 0) / 1048576 for t in tables], 0.4, label="before")
    ax.bar([i + 0.2 for i in x], [t["total_bytes"] / 1048576 for t in b["tables"]], 0.4, label="after")
    ax.set_xticks(list(x))
    ax.set_xticklabels(tables, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("table + indexes, MB")
    ax.set_title("Table sizes including indexes: before and after")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
