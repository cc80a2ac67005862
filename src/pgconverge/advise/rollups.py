"""Rollups: a statement that aggregates a time range per key (GROUP BY a date_trunc bucket, counts, sums) is what a
materialized view of per-key, per-bucket aggregates serves — the runbook's phase 2, proposed as an opt-in phase: the
view's SQL, its unique key, a refresh job and the statement rewritten against it. Pure: parse trees only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pglast
from pglast import ast
from pglast.enums.parsenodes import A_Expr_Kind
from pglast.stream import RawStream

from ..reads import walk
from .candidates import _conjuncts, _constant_filter, _owner, _range_vars, _table_map, plannable

# the aggregates a rollup keeps and how the rewritten query combines its rows again
COMBINE = {"count": "sum", "sum": "sum", "min": "min", "max": "max"}
UNITS = ("minute", "hour", "day", "week", "month")


@dataclass(frozen=True)
class Rollup:
    schema: str
    table: str
    keys: tuple[str, ...]  # the equality columns and the other GROUP BY columns
    unit: str  # date_trunc's unit
    time_column: str
    measures: tuple[tuple[str, str], ...]  # (aggregate, column or "*")
    where: str = ""  # the statement's filters on constants, kept in the view

    @property
    def name(self) -> str:
        every = {"day": "daily"}.get(self.unit, f"{self.unit}ly")
        return f"{self.table.lower()}_{every}_by_{'_'.join(self.keys)}"[:63]

    @property
    def shape(self) -> tuple:
        """What makes two statements' rollups one view: the table, keys, bucket and filters (measures merge)."""
        return (self.schema, self.table, self.keys, self.unit, self.time_column, self.where)

    def columns(self) -> list[tuple[str, str]]:
        """(the view's column, what it holds)."""
        found = [(k, f'"{k}"') for k in self.keys] + [("bucket", f"date_trunc('{self.unit}', \"{self.time_column}\")")]
        for function, column in self.measures:
            name = f"{function}_{column}" if column != "*" else "events" if function == "count" else function
            found.append((re.sub(r"\W+", "_", name), f"{function}({column if column == '*' else chr(34) + column + chr(34)})"))
        return list(dict.fromkeys(found))

    def view_sql(self) -> str:
        select = ",\n       ".join(f"{what} AS {name}" if what != f'"{name}"' else what for name, what in self.columns())
        where = f"\nWHERE {self.where}" if self.where else ""
        group = ", ".join(str(i + 1) for i in range(len(self.keys) + 1))
        return f'SELECT {select}\nFROM "{self.schema}"."{self.table}"{where}\nGROUP BY {group}'

    @property
    def unique_key(self) -> list[str]:
        return [*self.keys, "bucket"]


def rollup_of(query: str, columns: dict[tuple[str, str], set[str]]) -> Rollup | None:
    """The rollup that serves a statement: one table, a date_trunc bucket of a column its WHERE bounds by a range,
    only count/sum/min/max (avg as sum and count) over plain columns; None for anything else."""
    try:
        parsed = pglast.parse_sql(plannable(query))
    except pglast.parser.ParseError:
        return None
    select = parsed[0].stmt if len(parsed) == 1 else None
    if not isinstance(select, ast.SelectStmt) or not select.groupClause or select.fromClause is None:
        return None
    ranges = list(_range_vars(select.fromClause))
    if len(ranges) != 1 or any(isinstance(n, ast.JoinExpr | ast.RangeSubselect) for n in select.fromClause):
        return None
    tables = _table_map(ranges)

    def owner(ref: Any) -> tuple[tuple[str, str], str] | None:
        return _owner(tables, columns, ref)

    bucket: tuple[str, str] | None = None
    keys: list[str] = []
    aliases = {t.name: t.val for t in select.targetList or () if t.name}
    for item in select.groupClause:
        if isinstance(item, ast.A_Const) and select.targetList:  # GROUP BY 1: the target it names
            index = getattr(item.val, "ival", 0) - 1
            item = select.targetList[index].val if 0 <= index < len(select.targetList) else item
        elif isinstance(item, ast.ColumnRef) and _bare(item) in aliases and owner(item) is None:  # GROUP BY day
            item = aliases[_bare(item)]
        found = owner(item) if isinstance(item, ast.ColumnRef) else None
        if found:
            keys.append(found[1])
            continue
        truncated = _date_trunc(item, owner)
        if truncated is None or bucket is not None:
            return None
        bucket = truncated
    if bucket is None:
        return None
    unit, time_column = bucket
    measures: list[tuple[str, str]] = []
    for target in select.targetList or ():
        for call in (n for n in walk(target.val) if isinstance(n, ast.FuncCall)):
            name = call.funcname[-1].sval if call.funcname else ""
            if name == "date_trunc":
                continue
            if call.agg_filter is not None or call.agg_distinct or call.over is not None:
                return None  # FILTER, DISTINCT and windows do not combine from buckets
            if name not in (*COMBINE, "avg"):
                return None
            read = owner(call.args[0]) if call.args and len(call.args) == 1 else None
            argument = "*" if call.agg_star else (read[1] if read else None)
            if argument is None:
                return None
            measures += [("sum", argument), ("count", "*")] if name == "avg" else [(name, argument)]
    if not measures:
        return None
    equal, ranged, constant = [], [], []
    for term in _conjuncts(select.whereClause):
        predicate = _constant_filter(term, owner)
        if predicate:
            constant.append(predicate[1])
            continue
        found = owner(term.lexpr) if isinstance(term, ast.A_Expr) and isinstance(term.lexpr, ast.ColumnRef) else None
        operator = term.name[0].sval if isinstance(term, ast.A_Expr) and term.name else ""
        if found and operator == "=":
            equal.append(found[1])
        elif found and operator in ("<", ">", "<=", ">=") and found[1] == time_column:
            ranged.append(found[1])
        else:
            return None  # a filter the buckets cannot answer
    if not ranged:
        return None
    (schema, table), = set(tables.values())
    return Rollup(schema, table, tuple(dict.fromkeys([*equal, *keys])), unit, time_column,
                  tuple(dict.fromkeys(measures)), " AND ".join(constant))


def _date_trunc(node: Any, owner) -> tuple[str, str] | None:
    """`date_trunc('day', created_at)` → ("day", "created_at")."""
    if not (isinstance(node, ast.FuncCall) and node.funcname and node.funcname[-1].sval == "date_trunc"
            and node.args and len(node.args) == 2 and isinstance(node.args[0], ast.A_Const)):
        return None
    unit = str(getattr(node.args[0].val, "sval", "")).lower()
    found = owner(node.args[1]) if isinstance(node.args[1], ast.ColumnRef) else None
    return (unit, found[1]) if unit in UNITS and found else None


def rewritten(query: str, rollup: Rollup) -> str:
    """The statement read from the rollup: buckets instead of rows (a range edge inside a bucket counts the whole
    bucket), each aggregate combined from the buckets' (count → sum of counts, avg → sum / count)."""
    select: Any = pglast.parse_sql(plannable(query))[0].stmt
    names = dict((what, name) for name, what in rollup.columns())

    def column(name: str) -> ast.ColumnRef:
        return ast.ColumnRef(fields=(ast.String(sval=name),))

    def call(function: str, *args: Any) -> ast.FuncCall:
        return ast.FuncCall(funcname=(ast.String(sval=function),), args=args)

    def measure(function: str, argument: str) -> ast.ColumnRef:
        what = f"{function}({argument if argument == '*' else chr(34) + argument + chr(34)})"
        return column(names[what])

    def replace(node: Any) -> Any:
        if isinstance(node, tuple | list):
            return tuple(replace(n) for n in node)
        if not isinstance(node, ast.Node):
            return node
        if isinstance(node, ast.FuncCall) and node.funcname:
            name = node.funcname[-1].sval
            if name == "date_trunc" and node.args and len(node.args) == 2:
                return column("bucket")
            argument = "*" if node.agg_star else (_bare(node.args[0]) if node.args else None)
            if name in COMBINE and argument is not None:
                return call(COMBINE[name], measure(name, argument))
            if name == "avg" and argument is not None:
                return ast.A_Expr(kind=A_Expr_Kind.AEXPR_OP, name=(ast.String(sval="/"),),
                                  lexpr=ast.TypeCast(arg=call("sum", measure("sum", argument)),
                                                     typeName=ast.TypeName(names=(ast.String(sval="numeric"),))),
                                  rexpr=ast.A_Expr(kind=A_Expr_Kind.AEXPR_NULLIF, name=(ast.String(sval="="),),
                                                   lexpr=call("sum", measure("count", "*")),
                                                   rexpr=ast.A_Const(val=ast.Integer(ival=0))))
        if isinstance(node, ast.A_Expr) and isinstance(node.lexpr, ast.ColumnRef) and \
                _bare(node.lexpr) == rollup.time_column:  # the range on rows becomes one on buckets
            node.lexpr = column("bucket")
            node.rexpr = call("date_trunc", ast.A_Const(val=ast.String(sval=rollup.unit)), replace(node.rexpr))
            return node
        if isinstance(node, ast.ColumnRef) and node.fields and len(node.fields) == 2:  # e.tenant_id → tenant_id
            return ast.ColumnRef(fields=node.fields[-1:])
        for attribute in node:
            value = getattr(node, attribute)
            if isinstance(value, ast.Node | tuple | list):
                setattr(node, attribute, replace(value))
        return node

    select.targetList = replace(select.targetList)
    select.whereClause = _without_constants(replace(select.whereClause), rollup)
    select.groupClause = replace(select.groupClause)
    select.sortClause = replace(select.sortClause)
    select.fromClause = (ast.RangeVar(schemaname=rollup.schema, relname=rollup.name, inh=True, relpersistence="p"),)
    return RawStream()(select)


def _bare(node: Any) -> str | None:
    fields = node.fields if isinstance(node, ast.ColumnRef) else None
    return fields[-1].sval if fields and isinstance(fields[-1], ast.String) else None


def _without_constants(where: Any, rollup: Rollup) -> Any:
    """The filters on constants are the view's own WHERE: the rewritten statement leaves them out."""
    if not rollup.where or where is None:
        return where
    kept = [t for t in _conjuncts(where) if RawStream()(t).replace('"', "") not in rollup.where.replace('"', "")]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else ast.BoolExpr(boolop=0, args=tuple(kept))
