"""Candidate indexes read from the statements' text (pglast): equality then range or ORDER BY columns, join keys,
covering columns, partial indexes over constant filters, expressions the WHERE compares."""

from __future__ import annotations

import re
from typing import Any

import pglast
from pglast import ast
from pglast.enums.parsenodes import A_Expr_Kind, SortByDir
from pglast.enums.primnodes import BoolExprType, NullTestType
from pglast.stream import RawStream
from psycopg import sql

from ..names import QualifiedName
from ..reads import walk
from ..spec import Spec
from .model import Candidate, Statement


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
    from ..kinds.index import create_index_sql

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
    selects = [node for node in walk(statement) if isinstance(node, ast.SelectStmt)]
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
    for join in (n for n in walk(select.fromClause) if isinstance(n, ast.JoinExpr)):
        for node in walk(join.quals):
            if isinstance(node, ast.A_Expr) and node.name and node.name[0].sval == "=" \
                    and isinstance(node.lexpr, ast.ColumnRef) and isinstance(node.rexpr, ast.ColumnRef):
                for side in (node.lexpr, node.rexpr):
                    found = owner(side)
                    if found:
                        equal.setdefault(found[0], []).append(found[1])
    for node in walk(select.whereClause):
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
        for ref in (n for n in walk(part) if isinstance(n, ast.ColumnRef)):
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
        # covering: one or two more key columns (btree deduplication works only without INCLUDE), else INCLUDE all
        # the statement reads (a dashboard's six columns) — an index-only scan reads no heap page for them
        if rest and len(rest) <= 2:
            shapes.append(Candidate(key[0], key[1], keys + tuple(rest)))
        elif rest and len(rest) <= MAX_INCLUDE:
            shapes.append(Candidate(key[0], key[1], keys, tuple(rest)))
        where = " AND ".join(dict.fromkeys(constant.get(key, [])))
        # each shape also as a partial index over the rows the constant filters keep, without the key columns the
        # predicate fixes to one value (every entry would hold the same)
        fixed = pinned.get(key, set())
        result += shapes + ([Candidate(c.schema, c.table, tuple(x for x in c.columns if x.split()[0] not in fixed)
                                       or c.columns, c.include, where) for c in shapes] if where else [])
    return result


# the most columns a covering candidate INCLUDEs: beyond it the index approaches the table's width
MAX_INCLUDE = 8

# functions an index expression may use that WHERE clauses apply to one column (immutable)
INDEXABLE_FUNCTIONS = frozenset({"lower", "upper", "btrim", "trim", "md5", "abs"})


def _expression_candidates(select: ast.SelectStmt, owner) -> list[Candidate]:
    """`lower(email) = lower($1)`: the expression the WHERE compares is what the index must hold."""
    found = []
    for node in walk(select.whereClause):
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
    tables = _table_map(n for n in walk(statement) if isinstance(n, ast.RangeVar))
    found: dict[int, tuple[str, str, str]] = {}
    for node in walk(statement):
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


def referenced_columns(query: str) -> set[str]:
    """The column names a statement mentions anywhere (unqualified)."""
    try:
        statement = pglast.parse_sql(query)[0].stmt
    except pglast.parser.ParseError:
        return set()
    return {name[1] for n in walk(statement) if isinstance(n, ast.ColumnRef) and (name := _column_name(n))}
