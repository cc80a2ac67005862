"""`pgconverge advise`: the slowest statements of the real workload (pg_stat_statements), candidate indexes read
from their text (pglast), costed as hypothetical indexes (HypoPG) and chosen greedily across the workload weighted
by calls → a phases.yml fragment with the evidence. Read-only on the target: plans and hypothetical indexes only."""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pglast
import psycopg
import yaml
from pglast import ast
from pglast.enums.parsenodes import A_Expr_Kind, SortByDir
from pglast.enums.primnodes import BoolExprType, NullTestType
from pglast.stream import RawStream
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .errors import UserError
from .names import QualifiedName
from .spec import Spec

# an index is worth its upkeep when it saves this share of the estimated cost that indexes can still lower …
MIN_SAVING = 0.10
# … or makes a top statement at least this much cheaper (cost after / before)
HALVES = 0.5
DECLARED_EDGE = 0.05
MAX_INDEXES = 12
# catalog queries, our own (kpi, advise, gates read pg_* and hypopg) and pg_cron's
SKIP = re.compile(r"\b(pg_|information_schema|hypopg|cron\.|pgconverge)", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    queryid: int
    query: str
    calls: int
    mean_ms: float
    total_ms: float
    calls_per_s: float = 0.0  # since pg_stat_statements was last reset
    # a few sampled sets of $1, $2, … from the data it reads: costed as custom plans; () → the generic plan
    values: tuple[tuple[Any, ...], ...] = ()


@dataclass(frozen=True)
class Candidate:
    schema: str
    table: str
    columns: tuple[str, ...]  # each "column" or "column DESC"
    include: tuple[str, ...] = ()
    where: str = ""  # a partial index's predicate: the statement's filters on constants
    declared: str = ""  # the name phases.yml gives it, when it is one of its indexes
    definition: str = ""  # then its own CREATE INDEX (elements as written: expressions, operator classes)

    @property
    def name(self) -> str:
        if self.declared:
            return self.declared
        parts = ([re.sub(r"\W+", "_", c.split()[0]).strip("_") for c in self.columns]
                 + (["incl"] if self.include else []) + (["part"] if self.where else []))
        return ("idx_" + "_".join([self.table.lower(), *parts]))[:63]

    def create_sql(self) -> str:
        if self.definition:
            return self.definition
        columns = sql.SQL(", ").join(
            sql.SQL("{}{}").format(sql.Identifier(c.split()[0]), sql.SQL(" DESC" if c.endswith(" DESC") else ""))
            for c in self.columns)
        statement = sql.SQL("CREATE INDEX ON {} ({})").format(sql.Identifier(self.schema, self.table), columns)
        if self.include:
            statement += sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(map(sql.Identifier, self.include)))
        if self.where:
            statement += sql.SQL(" WHERE {}").format(sql.SQL(self.where))
        return statement.as_string(None)


@dataclass
class Advice:
    # candidate, workload cost before and after it, the statements it made cheaper (queryid, cost before, after)
    chosen: list[tuple[Candidate, float, float, tuple[tuple[int, float, float], ...]]] = field(default_factory=list)
    statements: list[tuple[Statement, float, float]] = field(default_factory=list)  # statement, before, after
    # statement → (workload query, parameter query) for those whose parameters can be sampled from the data
    workload: dict[int, tuple[str, str]] = field(default_factory=dict)
    write_rates: dict[str, float] = field(default_factory=dict)
    write_basis: str = ""
    unused: list[tuple[str, int, str]] = field(default_factory=list)
    # schema, index, bytes, table, columns, why
    redundant: list[tuple[str, str, int, str, str, str]] = field(default_factory=list)
    # statements made cheaper that get no workload query and gate, and why
    ungated: dict[int, str] = field(default_factory=dict)
    declared: dict[int, str] = field(default_factory=dict)  # statement → the declared workload query it is
    # fleet advice: where each index was chosen, and one line of evidence per database
    chosen_on: dict[str, str] = field(default_factory=dict)
    fleet: list[str] = field(default_factory=list)
    verdicts: dict[int, str] = field(default_factory=dict)  # every top statement: helped, or why not
    # candidates that saved the most but were left out, and why (a statement costlier, a risky plan)
    rejected: list[tuple[Candidate, int, str]] = field(default_factory=list)  # candidate, statement, why
    # statement → why → the left-out candidates it applies to
    warnings: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    maintenance: dict[str, float] = field(default_factory=dict)  # candidate → est. write cost per second
    # statement → the declared workload query (its name, SQL, parameter query, needs): the proposal reuses it as is
    declared_queries: dict[int, tuple[str, str, str, str | None]] = field(default_factory=dict)


def require_hypopg(conn: psycopg.Connection) -> None:
    """HypoPG must be there; its schema (Supabase: extensions) is appended to this session's search_path."""
    row = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'hypopg'").fetchone()
    if row:
        conn.execute("SELECT set_config('search_path', current_setting('search_path') || ', ' || %s, false)", [row[0]])
        return
    raise UserError("HypoPG is not installed in this database — install postgresql-15-hypopg and run CREATE"
                      " EXTENSION hypopg as a superuser (or advise against a copy that has it); nothing was read")


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


def positional(query: str) -> str:
    """A workload query's %(name)s parameters as $1, $2, … (first occurrence first), %% as %."""
    numbers: dict[str, int] = {}

    def number(match: re.Match) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    return re.sub(r"%\((\w+)\)s", number, query).replace("%%", "%")


def fingerprint(query: str) -> str | None:
    """pg_query's fingerprint: the same for a statement whatever its constants and parameters."""
    try:
        return str(pglast.parser.fingerprint(query))
    except pglast.parser.ParseError:
        return None


def declared_statements(spec: Spec | None) -> dict[str, tuple[str, str]]:
    """fingerprint → (name, SQL) of the declared workload query: pg_stat_statements has replaced the constants a
    partial index needs (`p_score >= $2`); the declared text still has them (`p_score >= 70`)."""
    found: dict[str, tuple[str, str]] = {}
    for query in spec.workload if spec else ():
        text = positional(query.sql)
        key = fingerprint(text)
        if key and is_select(text):
            found.setdefault(key, (query.name, text))
    return found




def declared_candidates(spec: Spec | None, existing: set[str]) -> list[Candidate]:
    """The indexes phases.yml declares and the database lacks, as candidates beside advise's own: the proposal
    then says which of them the workload needs."""
    from .kinds.index import create_index_sql

    found = []
    for phase in spec.phases if spec else ():
        for index in phase.indexes:
            # plain btree (what HypoPG simulates and the proposal can restate); unique ones are constraints
            if index.state != "present" or index.method != "btree" or index.unique or index.storage:
                continue
            if QualifiedName(index.schema, index.name) in existing:
                continue
            elements = tuple(c.element or " ".join(filter(None, [c.column, c.order, c.nulls and f"NULLS {c.nulls}"]))
                             for c in index.columns)
            found.append(Candidate(index.schema, index.table_name, elements, index.include, index.where or "",
                                   declared=index.name,
                                   definition=create_index_sql(index, index.name, concurrently=False)))
    return found


def is_select(query: str) -> bool:
    """A query (not utility, not a write) that a plan can be asked for; comments and all."""
    try:
        parsed = pglast.parse_sql(query)
    except pglast.parser.ParseError:
        return False
    return len(parsed) == 1 and isinstance(parsed[0].stmt, ast.SelectStmt)


def _walk(node: Any):
    if isinstance(node, tuple | list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, ast.Node):
        yield node
        for attribute in node:
            yield from _walk(getattr(node, attribute))


def _column_name(ref: ast.ColumnRef) -> tuple[str | None, str] | None:
    names = [str(f.sval) for f in ref.fields or () if isinstance(f, ast.String)]
    if not names:
        return None
    return (names[-2] if len(names) > 1 else None), names[-1]


def _table_map(range_vars) -> dict[str, tuple[str, str]]:
    """alias (or name) → (schema, table); unqualified names are taken as public."""
    tables: dict[str, tuple[str, str]] = {}
    for node in range_vars:
        key = (str(node.schemaname or "public"), str(node.relname))
        tables[str(node.alias.aliasname) if node.alias else key[1]] = key
        tables.setdefault(key[1], key)
    return tables


def _owner(tables: dict[str, tuple[str, str]], columns: dict[tuple[str, str], set[str]],
           ref: Any) -> tuple[tuple[str, str], str] | None:
    """The one table a column reference belongs to, or None when it is ambiguous or not a column."""
    name = _column_name(ref) if isinstance(ref, ast.ColumnRef) else None
    if name is None:
        return None
    alias, column = name
    keys = [tables[alias]] if alias in tables else [k for k in set(tables.values()) if column in columns.get(k, ())]
    return (keys[0], column) if len(keys) == 1 and column in columns.get(keys[0], ()) else None


def candidates_of(query: str, columns: dict[tuple[str, str], set[str]]) -> list[Candidate]:
    """Candidates of every SELECT in the statement, subqueries included (pglast)."""
    try:
        statement = pglast.parse_sql(query)[0].stmt
    except pglast.parser.ParseError:
        return []
    selects = [node for node in _walk(statement) if isinstance(node, ast.SelectStmt)]
    return list(dict.fromkeys(c for select in selects for c in _select_candidates(select, columns)))


def _range_vars(node: Any):
    """The tables of one FROM list: plain ones and those of joins, not those inside subqueries."""
    if isinstance(node, tuple | list):
        for item in node:
            yield from _range_vars(item)
    elif isinstance(node, ast.RangeVar):
        yield node
    elif isinstance(node, ast.JoinExpr):
        yield from _range_vars(node.larg)
        yield from _range_vars(node.rarg)


def _select_candidates(select: ast.SelectStmt, columns: dict[tuple[str, str], set[str]]) -> list[Candidate]:
    """Equality columns first, then one range column, or up to two ORDER BY or GROUP BY columns, per table; the
    same with the other columns the SELECT reads when they are few (an index-only scan); each shape also as a
    partial index over the statement's filters on constants."""
    tables = _table_map(_range_vars(select.fromClause))
    if not tables:
        return []

    def owner(ref: Any) -> tuple[tuple[str, str], str] | None:
        return _owner(tables, columns, ref)

    equal: dict[tuple[str, str], list[str]] = {}
    ranged: dict[tuple[str, str], list[str]] = {}
    ordered: dict[tuple[str, str], list[str]] = {}
    # join keys: `JOIN b ON b.a_id = a.id` — both sides are equality columns (the referencing side is the one a
    # nested loop or merge join needs an index on)
    for join in (n for n in _walk(select.fromClause) if isinstance(n, ast.JoinExpr)):
        for node in _walk(join.quals):
            if isinstance(node, ast.A_Expr) and node.name and node.name[0].sval == "=" \
                    and isinstance(node.lexpr, ast.ColumnRef) and isinstance(node.rexpr, ast.ColumnRef):
                for side in (node.lexpr, node.rexpr):
                    found = owner(side)
                    if found:
                        equal.setdefault(found[0], []).append(found[1])
    for node in _walk(select.whereClause):
        if isinstance(node, ast.A_Expr) and isinstance(node.lexpr, ast.ColumnRef):
            found = owner(node.lexpr)
            operator = node.name[0].sval if node.name else ""
            if found and (operator == "=" or node.kind == A_Expr_Kind.AEXPR_IN):
                equal.setdefault(found[0], []).append(found[1])
            elif found and operator in ("<", ">", "<=", ">="):
                ranged.setdefault(found[0], []).append(found[1])
    for sort in select.sortClause or ():
        if isinstance(sort.node, ast.ColumnRef):
            found = owner(sort.node)
            if found:
                desc = " DESC" if sort.sortby_dir == SortByDir.SORTBY_DESC else ""
                ordered.setdefault(found[0], []).append(found[1] + desc)
    grouped: dict[tuple[str, str], list[str]] = {}
    for ref in select.groupClause or ():
        found = owner(ref)
        if found:
            grouped.setdefault(found[0], []).append(found[1])
    constant: dict[tuple[str, str], list[str]] = {}
    pinned: dict[tuple[str, str], set[str]] = {}  # columns the constant filters fix to one value
    for conjunct in _conjuncts(select.whereClause):
        predicate = _constant_filter(conjunct, owner)
        if predicate:
            constant.setdefault(predicate[0], []).append(predicate[1])
            subject = owner(conjunct.lexpr) if isinstance(conjunct, ast.A_Expr) else None
            if subject and conjunct.name[0].sval == "=" and conjunct.kind == A_Expr_Kind.AEXPR_OP:
                pinned.setdefault(predicate[0], set()).add(subject[1])
    read: dict[tuple[str, str], set[str]] = {}
    for part in (select.targetList, select.whereClause, select.groupClause, select.sortClause,
                 select.distinctClause):
        for ref in (n for n in _walk(part) if isinstance(n, ast.ColumnRef)):
            found = owner(ref)
            if found:
                read.setdefault(found[0], set()).add(found[1])
    result = _expression_candidates(select, owner)
    for key in sorted(set(equal) | set(ranged) | set(ordered) | set(grouped)):  # sorted: the same pool every run
        eq = list(dict.fromkeys(equal.get(key, [])))
        # then one range column, or the ORDER BY, or the GROUP BY (rows arrive grouped: no sort, no hash)
        tail = ([c for c in ranged.get(key, []) if c not in eq][:1]
                or [c for c in ordered.get(key, []) if c.split()[0] not in eq][:2]
                or [c for c in grouped.get(key, []) if c not in eq][:2])
        if not eq + tail:
            continue
        keys = tuple(eq + tail)
        shapes = [Candidate(key[0], key[1], keys)]
        if eq and tail:
            shapes.append(Candidate(key[0], key[1], tuple(eq)))
        rest = sorted(read.get(key, set()) - {c.split()[0] for c in keys})
        # covering: one or two more key columns (btree deduplication works only without INCLUDE), else INCLUDE
        if rest and len(rest) <= 2:
            shapes.append(Candidate(key[0], key[1], keys + tuple(rest)))
        elif rest and len(rest) <= 4:
            shapes.append(Candidate(key[0], key[1], keys, tuple(rest)))
        where = " AND ".join(dict.fromkeys(constant.get(key, [])))
        # each shape also as a partial index over the rows the constant filters keep, without the key columns the
        # predicate fixes to one value (every entry would hold the same)
        fixed = pinned.get(key, set())
        result += shapes + ([Candidate(c.schema, c.table, tuple(x for x in c.columns if x.split()[0] not in fixed)
                                       or c.columns, c.include, where) for c in shapes] if where else [])
    return result


# functions an index expression may use that WHERE clauses apply to one column (immutable)
INDEXABLE_FUNCTIONS = frozenset({"lower", "upper", "btrim", "trim", "md5", "abs"})


def _expression_candidates(select: ast.SelectStmt, owner) -> list[Candidate]:
    """`lower(email) = lower($1)`: the expression the WHERE compares is what the index must hold."""
    found = []
    for node in _walk(select.whereClause):
        if not (isinstance(node, ast.A_Expr) and node.name and node.name[0].sval == "="
                and isinstance(node.lexpr, ast.FuncCall)):
            continue
        name = node.lexpr.funcname[-1].sval if node.lexpr.funcname else ""
        refs = [a for a in (node.lexpr.args or ()) if isinstance(a, ast.ColumnRef)]
        if name not in INDEXABLE_FUNCTIONS or len(refs) != 1 or len(node.lexpr.args or ()) != 1:
            continue
        column = owner(refs[0])
        if column is None:
            continue
        (schema, table), bare = column
        plain = re.fullmatch(r"[a-z_][a-z0-9_]*", bare)  # as a DBA writes it: quoted only when it must be
        element = f"{name}({bare if plain else sql.Identifier(bare).as_string(None)})"
        definition = sql.SQL("CREATE INDEX ON {} ({})").format(sql.Identifier(schema, table), sql.SQL(element))
        found.append(Candidate(schema, table, (element,), definition=definition.as_string(None)))
    return found


def _conjuncts(where: Any) -> list[Any]:
    """The top-level AND terms of a WHERE clause."""
    if isinstance(where, ast.BoolExpr) and where.boolop == BoolExprType.AND_EXPR:
        return [term for arg in where.args or () for term in _conjuncts(arg)]
    return [where] if where is not None else []


def _constant(node: Any) -> bool:
    return isinstance(node, ast.A_Const) or (isinstance(node, ast.TypeCast) and isinstance(node.arg, ast.A_Const))


def _constant_filter(term: Any, owner) -> tuple[tuple[str, str], str] | None:
    """`column <op> constant`, `column IN (constants)` or `column IS [NOT] NULL` as an index predicate of the
    column's table (unqualified, quoted); None for anything else (parameters, expressions, other tables)."""
    subject = term.arg if isinstance(term, ast.NullTest) else term.lexpr if isinstance(term, ast.A_Expr) else None
    found = owner(subject) if subject is not None else None
    if not found:
        return None
    column = sql.Identifier(found[1]).as_string(None)
    if isinstance(term, ast.NullTest):
        return found[0], f"{column} IS {'NOT ' if term.nulltesttype == NullTestType.IS_NOT_NULL else ''}NULL"
    operator = term.name[0].sval if term.name else ""
    right: Any = term.rexpr
    if term.kind == A_Expr_Kind.AEXPR_OP and operator in ("=", "<>", "<", ">", "<=", ">=") and _constant(right):
        return found[0], f"{column} {operator} {RawStream()(right)}"
    if term.kind == A_Expr_Kind.AEXPR_IN and isinstance(right, tuple) and all(_constant(v) for v in right):
        return found[0], f"{column} IN ({', '.join(RawStream()(v) for v in right)})"
    return None


def parameter_columns(query: str, columns: dict[tuple[str, str], set[str]]) -> dict[int, tuple[str, str, str]] | None:
    """$n → (schema, table, column) it is compared with; None when a parameter is compared with no column (then
    its values cannot be sampled from the data)."""
    try:
        statement = pglast.parse_sql(query)[0].stmt
    except pglast.parser.ParseError:
        return None
    tables = _table_map(n for n in _walk(statement) if isinstance(n, ast.RangeVar))
    found: dict[int, tuple[str, str, str]] = {}
    for node in _walk(statement):
        if not isinstance(node, ast.A_Expr):
            continue
        owned = _owner(tables, columns, node.lexpr)
        if owned is None:
            continue
        (schema, table), column = owned
        # only a parameter compared as it is (or cast): inside an expression it is no value of the column
        operands = node.rexpr if isinstance(node.rexpr, tuple | list) else (node.rexpr,)
        for operand in operands:
            param = operand.arg if isinstance(operand, ast.TypeCast) else operand
            if isinstance(param, ast.ParamRef):
                found[int(param.number or 0)] = (schema, table, column)
    numbers = {int(n) for n in re.findall(r"\$(\d+)", query)}
    return found if numbers <= set(found) else None


def workload_files(statement: Statement, columns: dict[tuple[str, str], set[str]],
                   rows: dict[tuple[str, str], float]) -> tuple[str, str] | None:
    """The statement as a workload query (%(pN)s) and a parameter query sampling each value from its column."""
    mapping = parameter_columns(statement.query, columns)
    if mapping is None:
        return None
    query = re.sub(r"\$(\d+)", lambda m: f"%(p{m.group(1)})s", statement.query.replace("%", "%%"))
    if not mapping:
        return query, ""
    by_table: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for number, (schema, table, column) in sorted(mapping.items()):
        by_table.setdefault((schema, table), []).append((number, column))
    parts = []
    for (schema, table), wanted in by_table.items():
        share = min(100.0, max(0.1, 100_000 / max(rows.get((schema, table), 1.0), 1.0) * 100))  # ~100k rows read
        parts.append(sql.SQL("(SELECT {} FROM {} TABLESAMPLE SYSTEM ({}) REPEATABLE (7) WHERE {} LIMIT {})").format(
            sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.Identifier(c), sql.Identifier(f"p{n}")) for n, c in wanted),
            sql.Identifier(schema, table), sql.Literal(round(share, 3)),
            sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for _, c in wanted),
            sql.Literal(1000 if len(by_table) == 1 else 30)).as_string(None))
    return query, "SELECT * FROM " + " CROSS JOIN ".join(f"{p} AS t{i}" for i, p in enumerate(parts))


TYPED_LITERAL = re.compile(r"\b(interval|date|timestamptz|timestamp|time|numeric|uuid|jsonb?)\s+\$(\d+)", re.IGNORECASE)


def plannable(query: str) -> str:
    """pg_stat_statements replaces `interval '14 days'` by `interval $2`, which is no SQL: make it `$2::interval`."""
    return TYPED_LITERAL.sub(lambda m: f"${m.group(2)}::{m.group(1)}", query)


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


def _literal(conn: psycopg.Connection, value: Any) -> str:
    # a jsonb value read by a parameter query comes back as a dict
    return sql.Literal(Jsonb(value) if isinstance(value, dict) else value).as_string(conn)


def _plans(conn: psycopg.Connection, statement: Statement, every_set: bool) -> list[dict[str, Any]]:
    """Its plan for the first sampled set (or the generic plan), or for every sampled set."""
    sets: list[tuple[Any, ...] | None] = list(statement.values if every_set else statement.values[:1]) or [None]
    return [plan for values in sets if (plan := _plan_of(conn, statement, values)) is not None]


def _nodes(plan: dict[str, Any]):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


SMALL_TABLE_ROWS = 10_000


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
            isinstance(n, ast.A_Const) and getattr(n.val, "sval", None) == "%" for n in _walk(pattern))

    substring = [n for n in _walk(select) if isinstance(n, ast.A_Expr) and n.name
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
    plans = _plans(conn, statement, every_set=False)
    nodes = list(_nodes(plans[0])) if plans else []
    used = sorted({n["Index Name"] for n in nodes if "Index Name" in n})
    if used:
        rows = sum(int(n.get("Plan Rows", 0)) for n in nodes if "Index Name" in n)
        return f"already served by {', '.join(used)} (~{rows:,} rows read by the plan)"
    aggregate = isinstance(select, ast.SelectStmt) and select.whereClause is None and (
        select.groupClause or any(isinstance(n, ast.FuncCall) for n in _walk(select.targetList)))
    if aggregate:
        return ("a whole-table aggregate: no index makes it cheaper — a materialized view of this query, refreshed"
                " by pg_cron (materialized_views: with this SELECT), does")
    scanned = {n.get("Relation Name") for n in nodes if n.get("Node Type") == "Seq Scan"}
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


def _workload_cost(conn: psycopg.Connection, statements: list[Statement], hypothetical: list[Candidate],
                   every_set: bool = False) -> Costing:
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
    plans = {s.queryid: found for s in statements if (found := _plans(conn, s, every_set))}
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
    for node in _nodes(plan):
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


# estimated cost units a written row costs each index of its table (the descent and the leaf page, WAL)
WRITE_COST = 3.0


SAMPLED_SETS = 3


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
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
            # the comment keeps this sampling out of what advise reads from pg_stat_statements
            rows = cursor.execute(f"/* pgconverge */ SELECT * FROM ({params_sql}) AS params"  # type: ignore[arg-type]
                                  f" LIMIT {SAMPLED_SETS}").fetchall()
    except psycopg.Error:
        return ()
    return tuple(tuple(row[k] for k in order) for row in rows if all(k in row for k in order))


def referenced_columns(query: str) -> set[str]:
    """The column names a statement mentions anywhere (unqualified)."""
    try:
        statement = pglast.parse_sql(query)[0].stmt
    except pglast.parser.ParseError:
        return set()
    return {name[1] for n in _walk(statement) if isinstance(n, ast.ColumnRef) and (name := _column_name(n))}


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


def costlier(before: float | None, after: float | None) -> bool:
    return before is not None and after is not None and after > before * 1.001 + 0.01


def objection(conn: psycopg.Connection, candidate: Candidate, current: Costing, trial: Costing, statements: list[Statement],
              rows: dict[tuple[str, str], float]) -> tuple[int, str] | None:
    """Why a candidate must not join the set: a predicate the planner misjudges, a statement it makes costlier, or
    a risky plan it invites."""
    if candidate.where:
        stale = _misestimate(conn, candidate.schema, candidate.table, one_line(candidate.where).replace('"', ""),
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


# a predicate's row estimate this many times off what a sample finds: the table's statistics are stale
MISESTIMATE = 10.0


@functools.lru_cache(maxsize=256)
def _misestimate(conn: psycopg.Connection, schema: str, table: str, where: str, rows: float) -> str | None:
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
            found = conn.execute(sql.SQL("/* pgconverge */ SELECT count(*) FROM {} TABLESAMPLE SYSTEM ({})"
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


def choose(conn: psycopg.Connection, statements: list[Statement], pool: list[Candidate], advice: Advice,
           rows: dict[tuple[str, str], float]) -> list[Candidate]:
    """Greedy: each round the candidate that lowers the workload's estimated cost per second most, net of its
    upkeep, among those that make no statement costlier and invite no risky plan and that save MIN_SAVING of what
    indexes can still make cheaper or halve a statement's cost; stop when none is left."""
    pool = list(pool)
    current = _workload_cost(conn, statements, [])
    chosen: list[Candidate] = []
    while pool and len(chosen) < MAX_INDEXES:
        now = per_second(current.costs, statements)
        trials = []
        for candidate in pool:
            costing = _workload_cost(conn, statements, [*chosen, candidate])
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
        final = _workload_cost(conn, statements, chosen, every_set=True)
        culprit = None
        for statement in statements:
            before, after = base.costs.get(statement.queryid), final.costs.get(statement.queryid)
            if not costlier(before, after):
                continue
            why = (f"with the whole set this statement's estimate is costlier than before ({before:,.1f} →"
                   f" {after:,.1f}) over its sampled parameters")
            suspect = next((c for c in reversed(chosen) if not costlier(before, _workload_cost(
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
        costing = _workload_cost(conn, statements, chosen[:number], every_set=True)
        helped = tuple((q, current.costs[q], after) for q, after in costing.costs.items()
                       if q in current.costs and after < current.costs[q] - 0.01)
        advice.chosen.append((candidate, per_second(current.costs, statements), per_second(costing.costs, statements),
                              helped))
        current = costing
    return current


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
    take now), or, without a window, averaged since the statistics were reset (a one-time bulk load counts too)."""
    first = conn.execute(WRITES).fetchall()
    if window_s <= 0:
        averaged: dict[str, float] = {QualifiedName(r[0], r[1]): r[2] / max((r[3] - r[4]).total_seconds(), 1.0)
                                      for r in first}
        return _with_partitioned(conn, averaged), "averaged since the statistics reset"
    time.sleep(window_s)
    conn.execute("SELECT pg_stat_clear_snapshot()")  # read the counters afresh, not this transaction's copy
    second = {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(WRITES).fetchall()}
    rates: dict[str, float] = {}
    for schema, table, count, at, _ in first:
        later, later_at = second.get((schema, table), (count, at))
        rates[QualifiedName(schema, table)] = max(later - count, 0.0) / max((later_at - at).total_seconds(), 0.001)
    return _with_partitioned(conn, rates), f"measured over {window_s:g} s"


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
    # what the tables take now weighs each candidate's upkeep against what it saves
    advice.write_rates, advice.write_basis = write_rates(conn, write_window_s)
    pool = list(dict.fromkeys(c for s in statements for c in candidates_of(s.query, columns)))
    if offer_declared:
        existing = {f"{r[0]}.{r[1]}" for r in conn.execute(
            "SELECT schemaname, indexname FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")}
        pool += declared_candidates(spec, existing)
    base = _workload_cost(conn, statements, [], every_set=True)
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
    advice.unused = [(r[0], r[1], str(r[2])) for r in conn.execute(
        "SELECT s.schemaname || '.' || s.indexrelname, pg_relation_size(s.indexrelid),"
        " coalesce(d.stats_reset, pg_postmaster_start_time()) FROM pg_stat_user_indexes s"
        " JOIN pg_index i ON i.indexrelid = s.indexrelid, pg_stat_database d"
        " WHERE d.datname = current_database() AND s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary"
        " ORDER BY 2 DESC LIMIT 20").fetchall()]
    advice.redundant = redundant_indexes(conn)
    return advice


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


def redundant_indexes(conn: psycopg.Connection) -> list[tuple[str, str, int, str, str, str]]:
    """Btree indexes another one makes redundant: the same keys, or its keys a leading prefix of the other's."""
    seen, result = set(), []
    for row in conn.execute(REDUNDANT).fetchall():  # type: ignore[arg-type]
        if (row[0], row[1]) not in seen:
            seen.add((row[0], row[1]))
            result.append(tuple(row))
    return result  # type: ignore[return-value]


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


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
        served = "; ".join(f"{names.get(q, q)} {b:,.1f} → {a:,.1f} per call, {by_id[q][0].calls_per_s:.2f} calls/s"
                           for q, b, a in helped if q in by_id)
        origin = f"declared in phases.yml as {candidate.declared}; " if candidate.declared else ""
        indexes.append({
            "name": candidate.name, "table": str(QualifiedName(candidate.schema, candidate.table)),
            "columns": list(candidate.columns),
            **({"include": list(candidate.include)} if candidate.include else {}),
            **({"where": candidate.where} if candidate.where else {}),
            "serves": f"{origin}{served + '; ' if served else ''}workload cost {before:,.0f} → {after:,.0f} per second"
                      f" (calls/s × est. cost); the table takes {writes:.1f} writes/s ({advice.write_basis})"
                      + (f": upkeep ~{advice.maintenance[candidate.name]:,.0f}/s weighed in"
                         if candidate.name in advice.maintenance else ": upkeep not weighed (no measured window)")
                      + (f"; {advice.chosen_on[candidate.name]}" if candidate.name in advice.chosen_on else "")})
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
    if advice.redundant:
        lines += ["", "# Redundant indexes, for review. pgconverge drops only what it manages: declare one as it is (it is",
                  "# adopted, no build), converge, then set state: absent and converge again."]
        lines += [f"#   - name: {name}  # {size:,} bytes, {why}\n#     table: {table}\n#     columns: [{columns}]\n"
                  "#     state: absent" for _, name, size, table, columns, why in advice.redundant]
    if advice.unused:
        lines += ["", "# Unused since the statistics were reset (idx_scan = 0; review before removing):"]
        lines += [f"#   {name} ({size:,} bytes, stats since {since}) — state: absent to remove" for name, size, since
                  in advice.unused]
    return "\n".join(lines) + "\n"


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
