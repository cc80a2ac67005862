"""What a query reads, by its parse tree (pglast): the planner orders a new object after the new ones it reads."""

from __future__ import annotations

from typing import Any


def walk(node: Any):
    """Every node of a parse tree, depth first."""
    from pglast import ast  # pglast loads where a query is parsed, not with the deploy

    if isinstance(node, tuple | list):
        for item in node:
            yield from walk(item)
    elif isinstance(node, ast.Node):
        yield node
        for attribute in node:
            yield from walk(getattr(node, attribute))


def relations_read(query: str) -> frozenset[str]:
    """The relations a query names, as written (`name` or `schema.name`); nothing when it does not parse."""
    import pglast
    from pglast import ast

    try:
        statements = pglast.parse_sql(query)
    except pglast.parser.ParseError:
        return frozenset()
    return frozenset(f"{n.schemaname}.{n.relname}" if n.schemaname else str(n.relname)
                     for n in walk(statements) if isinstance(n, ast.RangeVar))
