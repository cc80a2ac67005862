"""Indexes: the catalog query, the comparison by pg_get_indexdef, build beside and swap, rollback."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql

from ..model import (
    USER_SCHEMAS,
    Action,
    Catalog,
    Desired,
    IndexFact,
    Lock,
    Step,
    canonical_index,
    comment_sql,
    is_managed,
    of_kind,
    render,
    retired_name,
    temp_name,
)
from ..names import QualifiedName
from ..spec import Builder, SchemaObject, digest, marker, short
from .kind import DeclaredProblem, Kind, PlanContext, Planned, RenderContext

INDEX_COLUMN = re.compile(
    r"^(?P<column>[a-z_][a-z0-9_$]{0,62})(?: (?P<order>ASC|DESC))?(?: NULLS (?P<nulls>FIRST|LAST))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class IndexColumn:
    column: str
    order: str | None = None
    nulls: str | None = None
    # an element beyond `column [ASC|DESC] [NULLS …]` (expression, operator class, collation), as written and
    # checked by pglast to be exactly one index element
    element: str | None = None

    def canonical(self) -> list:
        return [self.column, self.order, self.nulls] + ([self.element] if self.element else [])


@dataclass(frozen=True)
class IndexSpec(SchemaObject):
    name: str
    table: str
    columns: tuple[IndexColumn, ...]
    phase: str
    include: tuple[str, ...] = ()
    where: str | None = None
    unique: bool = False
    method: str = "btree"
    serves: str | None = None
    state: str = "present"
    # the index lives in its table's schema
    schema: str = "public"
    storage: tuple[tuple[str, str], ...] = ()
    nulls_not_distinct: bool = False
    allow_duplicate: bool = False
    project: str = ""

    @property
    def table_name(self) -> str:
        return self.table.rpartition(".")[2]

    @property
    def table_key(self) -> QualifiedName:
        return QualifiedName(self.schema, self.table_name)

    @property
    def definition_hash(self) -> str:
        definition: dict[str, Any] = {
            "table": self.table,
            "columns": [c.canonical() for c in self.columns],
            "include": list(self.include),
            "where": self.where,
            "unique": self.unique,
            "method": self.method,
        }
        # Added later: present only when used, so the hashes of existing indexes stay what they were.
        if self.storage:
            definition["with"] = [list(p) for p in self.storage]
        if self.nulls_not_distinct:
            definition["nulls_not_distinct"] = True
        return digest(definition)


def _index_element(b: Builder, text: str, at: tuple, method: str) -> IndexColumn:
    """One index element as a DBA writes it: a column or an expression, with collation, operator class, order."""
    match = INDEX_COLUMN.match(text)
    if match:
        return IndexColumn(match["column"], match["order"].upper() if match["order"] else None,
                           match["nulls"].upper() if match["nulls"] else None)
    statements = b.parse_sql(f"CREATE INDEX i ON t USING {method} ({text})", at, "index element")
    stmt: Any = statements[0].stmt if len(statements) == 1 else None
    if type(stmt).__name__ != "IndexStmt" or len(stmt.indexParams) != 1:
        raise b.fail(at, f"index element '{short(text, 40)}' must be one column or expression with optional"
                     " COLLATE, operator class, ASC|DESC, NULLS FIRST|LAST — remove ',' and ';'")
    if "SubLink" in repr(stmt.indexParams[0]):
        raise b.fail(at, f"index element '{short(text, 40)}' holds a subquery — PostgreSQL does not index those")
    element = stmt.indexParams[0]
    column = element.name or f"expr:{text}"
    return IndexColumn(column, None, None, element=text.strip())


def build_index(b: Builder, x: dict, at: tuple, phase: str) -> IndexSpec:
    name = b.identifier(x["name"], (*at, "name"), "index name")
    table = x["table"]
    schema, _ = b.table(table, (*at, "table"))
    b.unique_name("relation", QualifiedName(schema, name), (*at, "name"))
    method = x.get("method", "btree")
    columns = tuple(_index_element(b, text, (*at, "columns", i), method) for i, text in enumerate(x["columns"]))
    include = tuple(b.identifier(c, (*at, "include", i), "include column") for i, c in enumerate(x.get("include", [])))
    where = x.get("where")
    if where is not None:
        # Parsed as the WHERE of a query: anything that is not one boolean expression fails here.
        statements = b.parse_sql(f"SELECT 1 FROM t WHERE ({where})", (*at, "where"), "index predicate")
        if len(statements) != 1:
            raise b.fail((*at, "where"), "index predicate must be a single expression — remove ';'")
    storage = tuple(sorted((b.identifier(k, (*at, "with", k), "storage parameter"), str(v).lower())
                           for k, v in x.get("with", {}).items()))
    if x.get("include") and method not in ("btree", "gist", "spgist"):
        raise b.fail((*at, "include"), f"INCLUDE needs method btree, gist or spgist, not {method} — remove include")
    if x.get("unique") and method != "btree":
        raise b.fail((*at, "unique"), f"only btree indexes can be unique, not {method}")
    return IndexSpec(
        name=name, table=table, columns=columns, phase=phase, project=b.project, include=include, where=where,
        unique=x.get("unique", False), method=method, serves=x.get("serves"),
        state=x.get("state", "present"), schema=schema, storage=storage,
        nulls_not_distinct=x.get("nulls_not_distinct", False), allow_duplicate=x.get("allow_duplicate", False),
    )


def read_indexes(conn: psycopg.Connection) -> dict[str, IndexFact]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || ic.relname, tc.relname, i.indisvalid, pg_get_indexdef(i.indexrelid),
               obj_description(i.indexrelid, 'pg_class'), i.indexrelid::bigint, tn.nspname || '.' || tc.relname,
               (SELECT pn.nspname || '.' || pc.relname FROM pg_inherits h JOIN pg_class pc ON pc.oid = h.inhparent
                JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE h.inhrelid = i.indexrelid),
               ic.relkind = 'I'
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class tc ON tc.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = ic.relnamespace
        JOIN pg_namespace tn ON tn.oid = tc.relnamespace
        WHERE """ + USER_SCHEMAS,
    ).fetchall()
    return {QualifiedName.parse(r[0]): IndexFact(QualifiedName.parse(r[0]).name, r[1], r[2], r[3], r[4], r[5],
                                                  QualifiedName.parse(r[6]), r[7], r[8]) for r in rows}


def read_partitions(conn: psycopg.Connection) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Every partitioned table's direct partitions and its partition key (pg_get_partkeydef)."""
    keys: dict[str, str] = dict(conn.execute(
        "SELECT n.nspname || '.' || c.relname, pg_get_partkeydef(c.oid) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p' AND " + USER_SCHEMAS).fetchall())
    children: dict[str, list[str]] = {key: [] for key in keys}
    for parent, child in conn.execute(
            "SELECT pn.nspname || '.' || p.relname, n.nspname || '.' || c.relname FROM pg_inherits h"
            " JOIN pg_class p ON p.oid = h.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace"
            " JOIN pg_class c ON c.oid = h.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE p.relkind = 'p' AND c.relkind IN ('r', 'p') ORDER BY 1, 2").fetchall():
        children.setdefault(parent, []).append(child)
    return {key: tuple(value) for key, value in children.items()}, keys


def partition_tree(catalog: Catalog, table_key: str) -> list[tuple[str, str]]:
    """(partition, its parent) for every partition below the table, parents before their partitions."""
    tree = []
    for child in catalog.partitions.get(table_key, ()):
        tree.append((child, table_key))
        tree += partition_tree(catalog, child)
    return tree


def leaf_rows(catalog: Catalog, table_key: str) -> int:
    """A partitioned table has no rows of its own (reltuples -1): the sum over its leaf partitions."""
    if table_key not in catalog.partitions:
        return catalog.row_estimates.get(table_key, 0)
    return sum(leaf_rows(catalog, child) for child in catalog.partitions[table_key])


def partition_index_name(index: IndexSpec, partition: str) -> str:
    """Deterministic per partition; the definition's hash keeps a rebuild's names apart from the ones it replaces."""
    suffix = "_" + index.definition_hash[:8]
    return f"{partition.rpartition('.')[2]}_{index.name}"[: 63 - len(suffix)] + suffix


def identifier(key: str) -> sql.Identifier:
    return QualifiedName.parse(key).identifier


def create_index_sql(index: IndexSpec, name: str, concurrently: bool = True, on: str | None = None,
                     only: bool = False) -> str:
    """Concurrently on live tables; plainly inside a transaction (probe copies) and for HypoPG; `on` another table
    (a partition, schema.name) and ONLY (a partitioned table's own index, without its partitions')."""
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
    statement = sql.SQL("CREATE {unique}INDEX {concurrently}{name} ON {only}{table} USING {method} ({columns})").format(
        unique=sql.SQL("UNIQUE " if index.unique else ""),
        concurrently=sql.SQL("CONCURRENTLY " if concurrently else ""),
        name=sql.Identifier(name),
        only=sql.SQL("ONLY " if only else ""),
        table=identifier(on) if on else sql.Identifier(index.schema, index.table_name),
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


def _drop_step(catalog: Catalog, name: str, index: IndexSpec, why: str, phase: str | None = None) -> Step:
    """Concurrently where PostgreSQL can; a partitioned index only with short exclusive-lock tries (it has no
    concurrent drop: the lock covers the table and every partition, for a catalog change)."""
    fact = catalog.indexes.get(QualifiedName(index.schema, name))
    if fact is not None and fact.partitioned:
        return Step((render(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index.schema, name))),), why,
                    f"index {index.name}", Lock.ACCESS_EXCLUSIVE, phase or index.phase, table=index.table,
                    action=Action.DROP, lock_scope="the table and its partitions, catalog only, short tries")
    return Step((drop_index_sql(name, index.schema),), why, f"index {index.name}", Lock.SHARE_UPDATE_EXCLUSIVE,
                phase or index.phase, table=index.table, action=Action.DROP_CONCURRENTLY)


def _mark_step(index: IndexSpec, name: str, why: str) -> Step:
    want = marker(index.phase, index.definition_hash, index.project)
    return Step((comment_sql("INDEX", sql.Identifier(index.schema, name), want),),
                why, f"index {index.name}", Lock.SHARE_UPDATE_EXCLUSIVE, index.phase, table=index.table,
                action=Action.MARK)


def _build_index_steps(index: IndexSpec, name: str, schema: str, why: str, catalog: Catalog | None = None,
                       wanted: str | None = None) -> list[Step]:
    if catalog is not None and index.table_key in catalog.partitions:
        return _partitioned_build_steps(index, name, why, catalog, wanted)
    return [
        Step((create_index_sql(index, name),), why, f"index {index.name}", Lock.SHARE_UPDATE_EXCLUSIVE,
             index.phase, long_running=True, table=index.table, action=Action.BUILD_CONCURRENTLY,
             builds=render(sql.Identifier(schema, name))),
        _mark_step(index, name, f"mark {name} as managed ({marker(index.phase, index.definition_hash, index.project)})"),
    ]


def attach_sql(parent_index: str, child_index: str) -> str:
    return render(sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(identifier(parent_index),
                                                                       identifier(child_index)))


def _partitioned_build_steps(index: IndexSpec, name: str, why: str, catalog: Catalog,
                             wanted: str | None) -> list[Step]:
    """A partitioned table's index without blocking writes: its own index ON ONLY the table (catalog only), one
    built concurrently on each leaf partition and attached; partitioned partitions get an ON ONLY index of their own,
    attached to their parent's. Whatever is already there and matches is kept or attached, not built again."""
    label, schema = f"index {index.name}", index.schema
    top = QualifiedName(schema, name)
    steps: list[Step] = []
    if top not in catalog.indexes:
        steps.append(Step((create_index_sql(index, name, concurrently=False, only=True),), why, label, Lock.SHARE,
                          index.phase, table=index.table, action=Action.CREATE,
                          lock_scope=f"{index.table_name} only, no rows read; INVALID until every partition has it"))
    attached = {(f.parent, f.table_key): key for key, f in catalog.indexes.items() if f.parent}
    loose: dict[str, list[str]] = {}  # partition → its indexes attached to nothing
    for key, fact in catalog.indexes.items():
        if fact.parent is None and key != top:
            loose.setdefault(fact.table_key, []).append(key)
    level: dict[str, str] = {index.table_key: top}  # each partitioned table → its index at that level
    for partition, parent in partition_tree(catalog, index.table_key):
        parent_index = level[parent]
        partitioned = partition in catalog.partitions
        mine = attached.get((parent_index, partition))
        if mine:
            level[partition] = mine
            continue
        adoptable = next((key for key in loose.get(partition, ()) if wanted
                          and canonical_index(catalog.indexes[key].definition) == wanted
                          and catalog.indexes[key].partitioned == partitioned
                          and (catalog.indexes[key].valid or partitioned)), None)
        if adoptable:
            level[partition] = adoptable
            steps.append(Step((attach_sql(parent_index, adoptable),),
                              f"{adoptable} on partition {partition} already has the definition: attach it", label,
                              Lock.ACCESS_EXCLUSIVE, index.phase, table=partition, action=Action.ATTACH,
                              lock_scope="the partition's index and the parent index, not the tables"))
            continue
        child = partition_index_name(index, partition)
        child_key = QualifiedName.parse(partition).sibling(child)
        level[partition] = child_key
        attach = attach_sql(parent_index, child_key)
        if child_key in catalog.indexes:  # ours, left INVALID or unattached by an interrupted run
            steps.append(Step((render(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(identifier(child_key))),),
                              f"remove {child_key} left by an interrupted build", label, Lock.SHARE_UPDATE_EXCLUSIVE,
                              index.phase, table=partition, action=Action.DROP_CONCURRENTLY))
        if partitioned:
            steps.append(Step((create_index_sql(index, child, concurrently=False, on=partition, only=True), attach),
                              f"partition {partition} is partitioned itself: its own index, attached", label,
                              Lock.SHARE, index.phase, transactional=True, table=partition, action=Action.CREATE,
                              lock_scope=f"{partition} only, no rows read"))
            continue
        rows = catalog.row_estimates.get(partition, 0)
        steps.append(Step((create_index_sql(index, child, on=partition),),
                          f"partition {partition} (~{rows:,} rows), built concurrently", label,
                          Lock.SHARE_UPDATE_EXCLUSIVE, index.phase, long_running=True, table=partition,
                          action=Action.BUILD_CONCURRENTLY, builds=render(identifier(child_key))))
        steps.append(Step((attach,), f"attach {child} to {parent_index}", label, Lock.ACCESS_EXCLUSIVE, index.phase,
                          table=partition, action=Action.ATTACH,
                          lock_scope="the partition's new index and the parent index, not the tables"))
    steps.append(_mark_step(index, name, f"mark {name} as managed ({marker(index.phase, index.definition_hash, index.project)})"))
    return steps


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


def _rebuild_steps(index: IndexSpec, why: str, why_drop: str, catalog: Catalog,
                   wanted: str | None) -> list[Step]:
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
    retire = IndexFact(retired, index.table_name, True, "", partitioned=index.table_key in catalog.partitions)
    after_swap = replace(catalog, indexes={**catalog.indexes, QualifiedName(schema, retired): retire})
    return [*_build_index_steps(index, tmp, schema, why, catalog, wanted),
            Step(swap, "swap the new index in under the name, one short transaction", label,
                 Lock.SHARE_UPDATE_EXCLUSIVE, index.phase, transactional=True, table=index.table, action=Action.SWAP,
                 lock_scope="indexes only"),
            _drop_step(after_swap, retired, index, why_drop + (
                ", with short exclusive-lock tries (a partitioned index has no concurrent drop)" if retire.partitioned
                else " concurrently"))]


@of_kind("index")
def plan_index(index: IndexSpec, catalog: Catalog, desired: Desired | None = None) -> list[Step]:
    schema = index.schema
    wanted = (desired or Desired()).definitions.get("index", {}).get(index.key)
    fact = catalog.indexes.get(index.key)
    tmp = temp_name(index.name)
    tmp_fact = catalog.indexes.get(QualifiedName(schema, tmp))
    retired = retired_name(index.name)
    rows = leaf_rows(catalog, index.table_key)
    label = f"index {index.name}"
    steps: list[Step] = []
    if QualifiedName(schema, retired) in catalog.indexes:
        steps.append(_drop_step(catalog, retired, index, f"remove {retired} left by an interrupted swap"))

    if index.state == "absent":
        if fact:
            # naming an index the application made is an explicit order: no adopt-then-drop in two converges
            why = "declared absent" if is_managed(fact.comment) else \
                "declared absent: not created by pgconverge, named in phases.yml — dropped concurrently"
            steps.append(_drop_step(catalog, index.name, index, why))
        return steps

    if tmp_fact is not None:
        if fact is None and tmp_fact.valid and tmp_fact.comment == marker(index.phase, index.definition_hash, index.project):
            rename = render(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(schema, tmp), sql.Identifier(index.name)))
            return steps + [Step((rename,), f"finish an interrupted rebuild: {tmp} is built and current", label,
                                 Lock.SHARE_UPDATE_EXCLUSIVE, index.phase, table=index.table, action=Action.SWAP)]
        steps.append(_drop_step(catalog, tmp, index, f"remove {tmp} left by an interrupted rebuild"))

    want = marker(index.phase, index.definition_hash, index.project)
    partitioned = index.table_key in catalog.partitions
    if fact is None:
        same, redundant = index_duplicates(index, catalog, wanted) if wanted else ([], [])
        if same and not index.allow_duplicate:
            return steps  # plan_phase says why in a note
        also = f"; makes {', '.join(redundant)} redundant (a leading prefix of it)" if redundant else ""
        how = "one index per partition, each built concurrently" if partitioned else "built concurrently"
        built = _build_index_steps(index, index.name, schema, f"missing; serves {index.serves or 'declared use'}"
                                   f" (~{rows:,} rows, {how}){also}", catalog, wanted)
        # a new index is what on_gate_failure: revert removes again (a partitioned one with its partitions')
        undo = render(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, index.name))) if partitioned \
            else drop_index_sql(index.name, schema)
        steps += [replace(built[0], undo=undo), *built[1:]]
    elif fact.table != index.table_name:
        # blue/green: the declared table was renamed away and a new one took its name; our index stayed behind
        steps += _rebuild_steps(index, f"sits on table {fact.table}, declared on {index.table_name} (the table was"
                                f" renamed or swapped): build it on {index.table_name} (~{rows:,} rows)",
                                f"drop the one left on {fact.table}", catalog, wanted)
    elif fact.partitioned and (canonical_index(fact.definition) == wanted or (not wanted and fact.comment == want)):
        # the same definition: finish what is missing (a partition without the index leaves the parent INVALID)
        missing = _partitioned_build_steps(index, index.name, "", catalog, wanted)[:-1]
        if missing:
            steps += [replace(s, why=f"INVALID until every partition has it: {s.why}") for s in missing]
        if missing or fact.comment != want:
            steps.append(_mark_step(index, index.name, "adopt: the live definition equals the declared one"
                                    if not is_managed(fact.comment) else f"mark {index.name} as managed ({want})"))
    elif not fact.valid:
        steps.append(_drop_step(catalog, index.name, index, "INVALID (a concurrent build failed): drop it"))
        steps += _build_index_steps(index, index.name, schema, f"rebuild the INVALID index (~{rows:,} rows)",
                                    catalog, wanted)
    elif wanted and canonical_index(fact.definition) == wanted:
        if fact.comment != want:
            # The live index is exactly the declared one (made by hand from the runbook, or re-declared): mark it.
            steps.append(_mark_step(index, index.name, "adopt: the live definition equals the declared one, no build"
                                    if not is_managed(fact.comment) else
                                    f"re-mark: the live definition equals the declared one ({fact.comment} → {want})"))
    elif fact.comment != want or (wanted and canonical_index(fact.definition) != wanted):
        live = canonical_index(fact.definition)
        reason = (f"definition differs: live {live} ≠ declared {wanted}" if wanted
                  else f"definition changed ({fact.comment} → {want})" if is_managed(fact.comment)
                  else "exists without our marker, so its definition is unknown")
        steps += _rebuild_steps(index, f"{reason}: build the new one beside the old (~{rows:,} rows)",
                                "old definition replaced: drop it", catalog, wanted)
    return steps


def partition_note(index: IndexSpec, catalog: Catalog) -> str | None:
    """What a partition attached later costs: PostgreSQL builds the index on it under the ATTACH's locks."""
    if index.state != "present" or index.table_key not in catalog.partitions:
        return None
    return (f"index {index.name} on partitioned {index.table_key}: partitions created later get it from PostgreSQL"
            " itself; ATTACH PARTITION of a big existing table builds it while holding ACCESS EXCLUSIVE on that"
            f" table — build a matching index on the table concurrently first ({index.name}'s definition), then the"
            " attach only links it")


@of_kind("index")
def rollback_index(index: IndexSpec, catalog: Catalog, phase_id: str) -> list[Step]:
    """The index and what an interrupted rebuild left, where ours (or INVALID leftovers of our names); per-partition
    indexes an interrupted build left unattached."""
    steps = []
    for name in (index.name, temp_name(index.name), retired_name(index.name)):
        index_fact = catalog.indexes.get(QualifiedName(index.schema, name))
        if index_fact and (is_managed(index_fact.comment) or (name != index.name and not index_fact.valid)):
            steps.append(_drop_step(catalog, name, index, "rollback", phase_id))
    for partition, _ in partition_tree(catalog, index.table_key):
        key = QualifiedName.parse(partition).sibling(partition_index_name(index, partition))
        fact = catalog.indexes.get(key)
        if fact is not None and fact.parent is None:
            steps.append(Step((render(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(identifier(key))),),
                              f"rollback: {key} left unattached by an interrupted build", f"index {index.name}",
                              Lock.SHARE_UPDATE_EXCLUSIVE, phase_id, table=partition, action=Action.DROP_CONCURRENTLY))
    return steps


def build_on_probe(conn: psycopg.Connection, index: IndexSpec, number: int, partition_key: str | None = None) -> str:
    """Build the declared index on an empty temporary copy of its table (inside the caller's transaction, which
    rolls back): the server's own check of the definition, and its own print of it. A partitioned table's copy is
    partitioned the same way, so what the server refuses there (a unique index without the partition key) is
    refused here. Returns the probe index."""
    probe = f"pgconverge_probe_{number}"
    statement = sql.SQL("CREATE TEMP TABLE {} (LIKE {})").format(
        sql.Identifier(probe), sql.Identifier(index.schema, index.table_name))
    if partition_key:
        statement += sql.SQL(" PARTITION BY {}").format(sql.SQL(partition_key))  # the server's own print
    conn.execute(statement)
    conn.execute(create_index_sql(replace(index, schema="pg_temp", table=probe), f"{probe}_i",  # type: ignore[arg-type]
                                  concurrently=False))
    return f"pg_temp.{probe}_i"


def table_shapes(conn: psycopg.Connection, tables: list[str]) -> dict[str, str]:
    """What an index's rendering depends on, per table: its columns with their types and collations, its partition
    key, the search path (how names print). Databases of a fleet whose tables have the same shape render a declared
    index the same way."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname, string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)"
        " || ' ' || a.attcollation::text, ', ' ORDER BY a.attnum) || ' | ' || coalesce(pg_get_partkeydef(c.oid), '')"
        " || ' | ' || current_setting('search_path')"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE (n.nspname || '.' || c.relname) = ANY(%s) GROUP BY 1, c.oid", [tables]).fetchall()
    return dict(rows)


def render_index(conn: psycopg.Connection, index: IndexSpec, number: int, context: RenderContext) -> str | None:
    """Built on an empty copy of its table in the rolled-back probe, printed by pg_get_indexdef. A fleet renders
    once: a database whose table has the same shape reuses what another one rendered. An index still to be built
    that the server refuses is a problem of phases.yml (method vs column type, operator class, expression)."""
    if index.state != "present":
        return None
    catalog = context.catalog
    if context.shared is not None and "table shapes" not in context.memo:  # one query for every declared table
        context.memo["table shapes"] = table_shapes(conn, sorted(
            {str(i.table_key) for i in context.declared.get("index", ()) if i.state == "present"}))
        context.memo["server"] = conn.execute("SELECT current_setting('server_version_num')").fetchone()[0]  # type: ignore[index]
    shape = context.memo.get("table shapes", {}).get(str(index.table_key))
    shared = context.shared if shape is not None else None  # a table the catalog lacks is rendered, never kept
    # what the server's print depends on, as a string a file can keep (rendercache.py)
    reuse = json.dumps([str(index.key), index.definition_hash, shape, context.memo.get("server"), sorted(
        [name, fact.schema, fact.version] for name, fact in catalog.extensions.items())])
    if shared is not None and reuse in shared:
        canonical, problem = shared[reuse]
        if problem and index.key not in catalog.indexes:
            raise DeclaredProblem(problem)
        return canonical
    try:
        probe = build_on_probe(conn, index, number, catalog.partition_keys.get(index.table_key))
    except psycopg.errors.InsufficientPrivilege:
        raise  # no TEMP privilege here: compared by the marker, the apply is the check
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        problem = f"index {index.name} on {index.table}: {first} — fix it in phases.yml"
        if shared is not None:
            shared[reuse] = (None, problem)
        if index.key not in catalog.indexes:
            raise DeclaredProblem(problem) from None
        raise
    row = conn.execute("SELECT pg_get_indexdef(to_regclass(%s))", [probe]).fetchone()
    canonical = canonical_index(row[0]) if row and row[0] else None
    if shared is not None:
        shared[reuse] = (canonical, None)
    return canonical


def live_shapes(index: IndexSpec, empty: Catalog, applied: Catalog) -> list[Step]:
    """For export-sql: the index as if its table were partitioned (a leaf, and a partition partitioned itself),
    and its rollback."""
    table = index.table_key
    tree: dict[str, tuple[str, ...]] = {table: (table.sibling(f"{table.name}_p1"), table.sibling(f"{table.name}_p2")),
                                        table.sibling(f"{table.name}_p2"): (table.sibling(f"{table.name}_p2_a"),)}
    live = replace(applied, partitions=tree, indexes={index.key: IndexFact(
        index.name, index.table_name, True, "", marker(index.phase, index.definition_hash, index.project),
        partitioned=True)})
    return plan_index(index, replace(empty, partitions=tree)) + [
        replace(s, why=f"rollback: {s.why}") for s in rollback_index(index, live, index.phase)]


def _plan(index: IndexSpec, catalog: Catalog, context: PlanContext) -> Planned:
    steps = tuple(plan_index(index, catalog, context.desired))
    notes = [note] if steps and (note := partition_note(index, catalog)) else []
    wanted = context.desired.definitions.get("index", {}).get(index.key)
    if index.state == "present" and wanted and index.key not in catalog.indexes and not index.allow_duplicate:
        same, _ = index_duplicates(index, catalog, wanted)
        if same:
            notes.append(f"index {index.key} not built: {', '.join(same)} already has exactly this definition"
                         f" ({wanted}) — drop that one, or set allow_duplicate: true")
    return Planned(steps, notes=tuple(notes))


# an index on a materialized view of its phase is built after the view
INDEX = Kind(name="index", section="indexes", plan=_plan, rollback=rollback_index, owned=False, build=build_index,
             render=render_index, shapes=live_shapes,
             after=lambda index: frozenset({str(index.table_key)}), read=read_indexes, facts_field="indexes",
             stand_in=lambda index, mark: IndexFact(index.name, index.table_name, True, "", mark))
