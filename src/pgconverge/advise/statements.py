"""What advise reads from the database: the top statements, parameter samples, table sizes and write rates,
redundant indexes. Read-only."""

from __future__ import annotations

import re
import time
from typing import Any

import psycopg
from psycopg import sql

from ..errors import UserError
from ..gates import parameter_rows
from ..names import QualifiedName
from .candidates import is_select, plannable
from .model import Statement

# catalog queries, our own (kpi, advise, gates read pg_* and hypopg) and pg_cron's
SKIP = re.compile(r"\b(pg_|information_schema|hypopg|cron\.|pgconverge)", re.IGNORECASE)


def require_hypopg(conn: psycopg.Connection) -> None:
    """HypoPG must be there; its schema (Supabase: extensions) is appended to this session's search_path."""
    row = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'hypopg'").fetchone()
    if row:
        conn.execute("SELECT set_config('search_path', current_setting('search_path') || ', ' || %s, false)", [row[0]])
        return
    major = conn.info.server_version // 10000
    raise UserError(f"HypoPG is not installed in this database — install it for PostgreSQL {major} (Debian:"
                    f" postgresql-{major}-hypopg) and run CREATE EXTENSION hypopg as a superuser (or advise against a"
                    " copy that has it); nothing was read")


def top_statements(conn: psycopg.Connection, min_calls: int, min_mean_ms: float, top: int) -> list[Statement]:
    row = conn.execute("SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n"
                       " ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'").fetchone()
    if not row:
        raise UserError("pg_stat_statements is not installed here — it is the baseline advise reads (phase 1)")
    # one row per statement (pg_stat_statements keeps one per role and nesting level)
    rows = conn.execute(sql.SQL(
        "SELECT queryid, min(query), sum(calls)::bigint, sum(total_exec_time) / sum(calls), sum(total_exec_time),"
        " sum(calls) / greatest(extract(epoch FROM now() - (SELECT stats_reset FROM {}.pg_stat_statements_info)), 1)"
        " FROM {}.pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " GROUP BY queryid HAVING sum(calls) >= %s AND sum(total_exec_time) / sum(calls) >= %s"
        " ORDER BY sum(total_exec_time) DESC LIMIT 200").format(sql.SQL(row[0]), sql.SQL(row[0])),
        [min_calls, min_mean_ms]).fetchall()
    statements = [Statement(r[0], plannable(r[1]), int(r[2]), float(r[3]), float(r[4]), float(r[5])) for r in rows
                  if is_select(plannable(r[1])) and not SKIP.search(r[1])]
    return statements[:top]


SAMPLED_SETS = 3
# parameter rows drawn to find a statement's typical and heaviest sets (each costed once, a plan without running)
SAMPLE_POOL = 20


def parameter_names(query: str) -> list[str]:
    """A workload query's %(name)s parameters in the order positional() numbers them."""
    return list(dict.fromkeys(re.findall(r"%\((\w+)\)s", query)))


def sampled_values(conn: psycopg.Connection, statement: Statement, query: str, params_sql: str,
                   declared: bool) -> tuple[tuple[Any, ...], ...]:
    """A few rows of the statement's parameter query as its $1, $2, … (a declared query's by the order its names
    first appear, advise's own query's columns are p1, p2, …); () when there is none or it reads nothing."""
    count = max((int(n) for n in re.findall(r"\$(\d+)", statement.query)), default=0)
    if not params_sql or not count:
        return ()
    order = parameter_names(query) if declared else [f"p{n}" for n in range(1, count + 1)]
    try:
        with conn.transaction():
            rows = parameter_rows(conn, params_sql, SAMPLE_POOL)
    except psycopg.Error:
        return ()
    # distinct by their text: a jsonb value comes back as a dict, which is not hashable
    sets = [tuple(row[k] for k in order) for row in rows if all(k in row for k in order)]
    return tuple({repr(values): values for values in sets}.values())


# rows that touch every index: inserts and updates that are not HOT (deletes leave entries for vacuum)
WRITES = ("SELECT s.schemaname, s.relname, (s.n_tup_ins + s.n_tup_upd - s.n_tup_hot_upd)::float8, clock_timestamp(),"
          " coalesce(d.stats_reset, pg_postmaster_start_time()) FROM pg_stat_user_tables s, pg_stat_database d"
          " WHERE d.datname = current_database()")


def table_rows(conn: psycopg.Connection) -> dict[tuple[str, str], float]:
    """Estimated rows per table; a partitioned table has none of its own (reltuples -1): its leaves' sum."""
    return {(r[0], r[1]): float(r[2]) for r in conn.execute(
        "SELECT n.nspname, c.relname, greatest(CASE WHEN c.relkind = 'p' THEN (SELECT sum(greatest(l.reltuples, 0))"
        " FROM pg_partition_tree(c.oid) t JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf) ELSE c.reltuples END, 1)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')").fetchall()}


def _with_partitioned(conn: psycopg.Connection, rates: dict[str, float]) -> dict[str, float]:
    """A partitioned table takes the writes of its leaves."""
    for schema, table, leaf_schema, leaf in conn.execute(
            "SELECT n.nspname, c.relname, ln.nspname, l.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace, pg_partition_tree(c.oid) t"
            " JOIN pg_class l ON l.oid = t.relid JOIN pg_namespace ln ON ln.oid = l.relnamespace"
            " WHERE c.relkind = 'p' AND t.isleaf").fetchall():
        key = QualifiedName(schema, table)
        rates[key] = rates.get(key, 0.0) + rates.get(QualifiedName(leaf_schema, leaf), 0.0)
    return rates


def write_rates(conn: psycopg.Connection, window_s: float) -> tuple[dict[str, float], str]:
    """Rows written per second per table: over a window of two readings of the table statistics (what the tables
    take now), or, without a window — or when the window saw no write at all (a quiet copy says nothing of the
    application's load) — averaged since the statistics were reset (a one-time bulk load counts too), with its age."""
    first = conn.execute(WRITES).fetchall()
    averaged: dict[str, float] = {QualifiedName(r[0], r[1]): r[2] / max((r[3] - r[4]).total_seconds(), 1.0)
                                  for r in first}
    age = max(((r[3] - r[4]).total_seconds() for r in first), default=0.0)
    since = f"averaged since the statistics reset {age / 3600:.1f} h ago"
    if window_s <= 0:
        return _with_partitioned(conn, averaged), since
    time.sleep(window_s)
    conn.execute("SELECT pg_stat_clear_snapshot()")  # read the counters afresh, not this transaction's copy
    second = {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(WRITES).fetchall()}
    rates: dict[str, float] = {}
    for schema, table, count, at, _ in first:
        later, later_at = second.get((schema, table), (count, at))
        rates[QualifiedName(schema, table)] = max(later - count, 0.0) / max((later_at - at).total_seconds(), 0.001)
    if not any(rates.values()):
        return _with_partitioned(conn, averaged), (f"no write in the {window_s:g} s window, so upkeep is not weighed;"
                                                   f" rates {since}")
    return _with_partitioned(conn, rates), f"measured over {window_s:g} s"


REDUNDANT = """
SELECT n.nspname, c.relname, pg_relation_size(c.oid), i.indrelid::regclass::text,
       substring(pg_get_indexdef(i.indexrelid) FROM 'USING btree \\((.*)\\)'),
       CASE WHEN i.indkey::text = o.indkey::text THEN 'duplicate of ' || oc.relname
            ELSE 'a leading prefix of ' || oc.relname END
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am a ON a.oid = c.relam
JOIN pg_index o ON o.indrelid = i.indrelid AND o.indexrelid <> i.indexrelid
JOIN pg_class oc ON oc.oid = o.indexrelid AND oc.relam = c.relam
WHERE a.amname = 'btree' AND NOT i.indisunique AND NOT i.indisprimary AND i.indpred IS NULL AND o.indpred IS NULL
  AND i.indexprs IS NULL AND o.indexprs IS NULL AND o.indisvalid
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND (o.indkey::text = i.indkey::text AND i.indexrelid > o.indexrelid
       OR o.indnkeyatts > i.indnkeyatts AND (o.indkey::text || ' ') LIKE (i.indkey::text || ' %%'))
ORDER BY 3 DESC
"""


UNIQUE_KEYS = """
SELECT n.nspname, c.relname, ci.relname,
       (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum WHERE k.ord <= i.indnkeyatts)
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ci ON ci.oid = i.indexrelid
WHERE i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


def unique_keys(conn: psycopg.Connection) -> dict[tuple[str, str], list[tuple[str, tuple[str, ...]]]]:
    """Per table, its primary key's and unique indexes' names and key columns."""
    found: dict[tuple[str, str], list[tuple[str, tuple[str, ...]]]] = {}
    for schema, table, index, columns in conn.execute(UNIQUE_KEYS).fetchall():  # type: ignore[arg-type]
        found.setdefault((schema, table), []).append((index, tuple(columns or ())))
    return found


def redundant_indexes(conn: psycopg.Connection) -> list[tuple[str, str, int, str, str, str]]:
    """Btree indexes another one makes redundant: the same keys, or its keys a leading prefix of the other's."""
    seen, result = set(), []
    for row in conn.execute(REDUNDANT).fetchall():  # type: ignore[arg-type]
        if (row[0], row[1]) not in seen:
            seen.add((row[0], row[1]))
            result.append(tuple(row))
    return result  # type: ignore[return-value]
