"""Indexes: the catalog query, the comparison by pg_get_indexdef, build beside and swap, rollback."""

from __future__ import annotations

import re
from dataclasses import replace

import psycopg
from psycopg import sql

from ..model import (
    USER_SCHEMAS,
    Catalog,
    Desired,
    IndexFact,
    Step,
    canonical_index,
    comment_sql,
    is_managed,
    render,
    retired_name,
    temp_name,
)
from ..spec import IndexSpec, marker


def read_indexes(conn: psycopg.Connection, schema: str) -> dict[str, IndexFact]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || ic.relname, tc.relname, i.indisvalid, pg_get_indexdef(i.indexrelid),
               obj_description(i.indexrelid, 'pg_class'), i.indexrelid::bigint
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class tc ON tc.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = ic.relnamespace
        WHERE """ + USER_SCHEMAS,
    ).fetchall()
    return {r[0]: IndexFact(r[0].split(".", 1)[1], r[1], r[2], r[3], r[4], r[5]) for r in rows}


def create_index_sql(index: IndexSpec, name: str, concurrently: bool = True) -> str:
    """Concurrently on live tables; plainly inside a transaction (probe copies) and for HypoPG."""
    columns: list[sql.Composable] = []
    for column in index.columns:
        if column.element:
            # checked by pglast to be exactly one index element when phases.yml was loaded
            columns.append(sql.SQL(column.element))
            continue
        part: sql.Composable = sql.Identifier(column.column)
        if column.order:
            part = sql.SQL("{} {}").format(part, sql.SQL(column.order))
        if column.nulls:
            part = sql.SQL("{} NULLS {}").format(part, sql.SQL(column.nulls))
        columns.append(part)
    statement = sql.SQL("CREATE {unique}INDEX {concurrently}{name} ON {table} USING {method} ({columns})").format(
        unique=sql.SQL("UNIQUE " if index.unique else ""),
        concurrently=sql.SQL("CONCURRENTLY " if concurrently else ""),
        name=sql.Identifier(name),
        table=sql.Identifier(index.schema, index.table_name),
        method=sql.SQL(index.method),  # validated: [a-z_][a-z0-9_]*
        columns=sql.SQL(", ").join(columns),
    )
    if index.include:
        statement += sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(map(sql.Identifier, index.include)))
    if index.nulls_not_distinct:
        statement += sql.SQL(" NULLS NOT DISTINCT")
    if index.storage:
        statement += sql.SQL(" WITH ({})").format(sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in index.storage))
    if index.where:
        # The predicate was parsed by pglast as exactly one expression when phases.yml was loaded.
        statement += sql.SQL(" WHERE {}").format(sql.SQL(index.where))
    return render(statement)


def drop_index_sql(name: str, schema: str) -> str:
    return render(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name)))


def _build_index_steps(index: IndexSpec, name: str, schema: str, why: str) -> list[Step]:
    want = marker(index.phase, index.definition_hash)
    return [
        Step((create_index_sql(index, name),), why, f"index {index.name}", "SHARE UPDATE EXCLUSIVE",
             index.phase, kind="build", table=index.table),
        Step((comment_sql("INDEX", sql.Identifier(schema, name), want),), f"mark {name} as managed ({want})",
             f"index {index.name}", "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table),
    ]


def index_duplicates(index: IndexSpec, catalog: Catalog, wanted: str) -> tuple[list[str], list[str]]:
    """Existing indexes on the same table (ours or not) with the declared definition, and those it makes redundant
    (same method and predicate, their columns a leading prefix of the declared ones)."""
    same, redundant = [], []
    method_and_columns = re.match(r"^(?:UNIQUE )?USING (\w+) \((.*?)\)(.*)$", wanted)
    for key, fact in sorted(catalog.indexes.items()):
        if key == index.key or fact.table != index.table_name or not key.startswith(f"{index.schema}."):
            continue
        live = canonical_index(fact.definition)
        if live is None or not fact.valid:
            continue
        if live == wanted:
            same.append(key)
            continue
        other = re.match(r"^USING (\w+) \((.*?)\)(.*)$", live)
        if method_and_columns and other and other.group(1) == method_and_columns.group(1) == "btree" \
                and other.group(3) == "" and method_and_columns.group(3) in ("", other.group(3)) \
                and method_and_columns.group(2).startswith(other.group(2) + ", "):
            redundant.append(key)
    return same, redundant


def _rebuild_steps(index: IndexSpec, why: str, why_drop: str) -> list[Step]:
    """Build beside the live index under a temporary name, swap the names in one transaction, drop the old one."""
    schema, tmp, retired = index.schema, temp_name(index.name), retired_name(index.name)
    label = f"index {index.name}"
    # Both renames commit together, so the name always resolves to a usable index.
    swap = (
        render(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(schema, index.name),
                                                             sql.Identifier(retired))),
        render(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(schema, tmp),
                                                             sql.Identifier(index.name))),
    )
    return [*_build_index_steps(index, tmp, schema, why),
            Step(swap, "swap the new index in under the name, one short transaction", label,
                 "SHARE UPDATE EXCLUSIVE (indexes only)", index.phase, transactional=True, table=index.table),
            Step((drop_index_sql(retired, schema),), why_drop, label, "SHARE UPDATE EXCLUSIVE", index.phase,
                 table=index.table)]


def plan_index(index: IndexSpec, catalog: Catalog, desired: Desired | None = None) -> list[Step]:
    schema = index.schema
    wanted = (desired or Desired()).indexes.get(index.key)
    fact = catalog.indexes.get(index.key)
    tmp = temp_name(index.name)
    tmp_fact = catalog.indexes.get(f"{schema}.{tmp}")
    retired = retired_name(index.name)
    want = marker(index.phase, index.definition_hash)
    rows = catalog.row_estimates.get(index.table_key, 0)
    label = f"index {index.name}"
    steps: list[Step] = []
    if f"{schema}.{retired}" in catalog.indexes:
        steps.append(Step((drop_index_sql(retired, schema),), f"remove {retired} left by an interrupted swap", label,
                          "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table))

    if index.state == "absent":
        if fact:
            # naming an index the application made is an explicit order: no adopt-then-drop in two converges
            why = "declared absent" if is_managed(fact.comment) else \
                "declared absent: not created by pgconverge, named in phases.yml — dropped concurrently"
            steps.append(Step((drop_index_sql(index.name, schema),), why, label, "SHARE UPDATE EXCLUSIVE",
                              index.phase, table=index.table))
        return steps

    if tmp_fact is not None:
        if fact is None and tmp_fact.valid and tmp_fact.comment == want:
            rename = render(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(schema, tmp), sql.Identifier(index.name)))
            return steps + [Step((rename,), f"finish an interrupted rebuild: {tmp} is built and current", label,
                                 "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table)]
        steps.append(Step((drop_index_sql(tmp, schema),), f"remove {tmp} left by an interrupted rebuild", label,
                          "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table))

    if fact is None:
        same, redundant = index_duplicates(index, catalog, wanted) if wanted else ([], [])
        if same and not index.allow_duplicate:
            return steps  # plan_phase says why in a note
        also = f"; makes {', '.join(redundant)} redundant (a leading prefix of it)" if redundant else ""
        steps += _build_index_steps(index, index.name, schema, f"missing; serves {index.serves or 'declared use'}"
                                    f" (~{rows:,} rows, built concurrently){also}")
    elif not fact.valid:
        steps.append(Step((drop_index_sql(index.name, schema),), "INVALID (a concurrent build failed): drop it",
                          label, "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table))
        steps += _build_index_steps(index, index.name, schema, f"rebuild the INVALID index (~{rows:,} rows)")
    elif fact.table != index.table_name:
        # blue/green: the declared table was renamed away and a new one took its name; our index stayed behind
        steps += _rebuild_steps(index, f"sits on table {fact.table}, declared on {index.table_name} (the table was"
                                f" renamed or swapped): build it on {index.table_name} (~{rows:,} rows)",
                                f"drop the one left on {fact.table} concurrently")
    elif wanted and canonical_index(fact.definition) == wanted:
        if fact.comment != want:
            # The live index is exactly the declared one (made by hand from the runbook, or re-declared): mark it.
            why = ("adopt: the live definition equals the declared one, no build" if not is_managed(fact.comment)
                   else f"re-mark: the live definition equals the declared one ({fact.comment} → {want})")
            steps.append(Step((comment_sql("INDEX", sql.Identifier(schema, index.name), want),), why, label,
                              "SHARE UPDATE EXCLUSIVE", index.phase, table=index.table))
    elif fact.comment != want or (wanted and canonical_index(fact.definition) != wanted):
        live = canonical_index(fact.definition)
        reason = (f"definition differs: live {live} ≠ declared {wanted}" if wanted
                  else f"definition changed ({fact.comment} → {want})" if is_managed(fact.comment)
                  else "exists without our marker, so its definition is unknown")
        steps += _rebuild_steps(index, f"{reason}: build the new one beside the old (~{rows:,} rows)",
                                "old definition replaced: drop it concurrently")
    return steps


def rollback_index(index: IndexSpec, catalog: Catalog, phase_id: str) -> list[Step]:
    """The index and what an interrupted rebuild left, where ours (or INVALID leftovers of our names)."""
    steps = []
    for name in (index.name, temp_name(index.name), retired_name(index.name)):
        index_fact = catalog.indexes.get(f"{index.schema}.{name}")
        if index_fact and (is_managed(index_fact.comment) or (name != index.name and not index_fact.valid)):
            steps.append(Step((drop_index_sql(name, index.schema),), "rollback", f"index {index.name}",
                              "SHARE UPDATE EXCLUSIVE", phase_id, table=index.table))
    return steps


def build_on_probe(conn: psycopg.Connection, index: IndexSpec, number: int) -> str:
    """Build the declared index on an empty temporary copy of its table (inside the caller's transaction, which
    rolls back): the server's own check of the definition, and its own print of it. Returns the probe index."""
    probe = f"pgconverge_probe_{number}"
    conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {})").format(
        sql.Identifier(probe), sql.Identifier(index.schema, index.table_name)))
    conn.execute(create_index_sql(replace(index, schema="pg_temp", table=probe), f"{probe}_i",  # type: ignore[arg-type]
                                  concurrently=False))
    return f"pg_temp.{probe}_i"
