"""What advise works with: statements of the workload, candidate indexes, and the advice with its evidence."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

# an index is worth its upkeep when it saves this share of the estimated cost that indexes can still lower …
MIN_SAVING = 0.10


# … or makes a top statement at least this much cheaper (cost after / before)
HALVES = 0.5


DECLARED_EDGE = 0.05


MAX_INDEXES = 12


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
    # (schema, table) → the primary key's and unique indexes' (name, key columns)
    unique_keys: dict[tuple[str, str], list[tuple[str, tuple[str, ...]]]] = field(default_factory=dict)
    # index name (as plans name it) → the top statements whose plans read it today
    index_users: dict[str, list[str]] = field(default_factory=dict)
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
    # statements a rollup serves: (statement, the rollup) — proposed as an opt-in phase
    rollups: list[tuple[int, Any]] = field(default_factory=list)


def repeated_key(candidate: Candidate, keys: list[tuple[str, tuple[str, ...]]]) -> str | None:
    """The primary key or unique index whose columns a candidate repeats as its leading columns: every row it finds
    that index finds alone — a near-duplicate, worth its upkeep only for a material saving."""
    leading = [c.split()[0] for c in candidate.columns]
    for name, columns in keys:
        if columns and len(leading) >= len(columns) and set(leading[:len(columns)]) == set(columns):
            return name
    return None


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
