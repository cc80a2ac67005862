"""Partitioned tables as applications have them (a metering app's readings, by month, one month sub-partitioned by
region): an index declared on the parent is built without blocking writes — ON ONLY, concurrently per leaf, ATTACH —
is drift while a partition lacks it, and rolls back; a definition the server refuses on a partitioned table stops
the plan before anything runs."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from tests.conftest import run_pyinfra
from tests.integration.test_converge import ok

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE readings (meter_id int NOT NULL, read_at timestamptz NOT NULL, region text NOT NULL, kwh numeric)
    PARTITION BY RANGE (read_at);
CREATE TABLE readings_2026_01 PARTITION OF readings FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE readings_2026_02 PARTITION OF readings FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE TABLE readings_2026_03 PARTITION OF readings FOR VALUES FROM ('2026-03-01') TO ('2026-04-01')
    PARTITION BY LIST (region);
CREATE TABLE readings_2026_03_north PARTITION OF readings_2026_03 FOR VALUES IN ('north');
CREATE TABLE readings_2026_03_rest PARTITION OF readings_2026_03 DEFAULT;
INSERT INTO readings SELECT g % 2000, timestamptz '2026-01-01' + (g % 7776000) * interval '1 second',
    (ARRAY['north', 'south', 'east'])[1 + g % 3], g % 97 FROM generate_series(1, 120000) g;
ANALYZE readings;
"""

PHASES = """
version: 1
settings:
  lock_timeout: 3s
phases:
  - id: meters
    title: "A meter's readings, newest first"
    indexes:
      - name: readings_meter_time
        table: readings
        columns: [meter_id, read_at DESC]
        serves: meter history
    gates:
      - name: no_invalid_indexes
        kind: sql
        sql: gates/no_invalid.sql
        expect: no_rows
"""

LEAVES = ("readings_2026_01", "readings_2026_02", "readings_2026_03_north", "readings_2026_03_rest")


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def attached(url: str) -> dict[str, tuple]:
    """Every index of the readings tree: table → (index, valid, parent index)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT t.relname, c.relname, i.indisvalid, (SELECT inhparent::regclass::text FROM pg_inherits"
            " WHERE inhrelid = c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname LIKE 'readings%'").fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.fixture
def metering(fresh_db, tmp_path) -> tuple[str, Path]:
    execute(fresh_db, SCHEMA)
    (tmp_path / "sql" / "gates").mkdir(parents=True)
    (tmp_path / "sql" / "gates" / "no_invalid.sql").write_text(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid")
    (tmp_path / "phases.yml").write_text(PHASES)
    return fresh_db, tmp_path / "phases.yml"


def test_an_index_on_a_partitioned_table_is_built_per_partition_without_losing_a_write(metering):
    url, phases = metering
    dry = ok(run_pyinfra(url, "deploys/phase.py", "--data", "phase=meters", "--dry", phases=phases))
    assert 'CREATE INDEX "readings_meter_time" ON ONLY "public"."readings"' in dry
    assert 'ON ONLY "public"."readings_2026_03"' in dry  # the sub-partitioned month gets its own, attached
    for leaf in LEAVES:
        assert f'ON "public"."{leaf}" USING btree' in dry and "CREATE INDEX CONCURRENTLY" in dry
    assert dry.count("ATTACH PARTITION \"") == 5 and "partitions created later get it from PostgreSQL" in dry

    written, stop = [0], threading.Event()

    def writer() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO readings VALUES (1, '2026-03-15', 'north', 1)")
                written[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        ok(run_pyinfra(url, "deploys/phase.py", "--data", "phase=meters", "-y", phases=phases))
    finally:
        stop.set()
        thread.join()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (120000 + written[0],)
    assert written[0] > 0
    indexes = attached(url)
    assert indexes["readings"][:2] == ("readings_meter_time", True)
    for leaf in LEAVES:
        name, valid, parent = indexes[leaf]
        assert valid and parent in ("readings_meter_time", indexes["readings_2026_03"][0]), indexes
    again = ok(run_pyinfra(url, "deploys/phase.py", "--data", "phase=meters", "--dry", phases=phases))
    assert "meters: 0 steps to run (converged)" in again
    ok(run_pyinfra(url, "deploys/verify.py", "-y", phases=phases))

    # a partition added later gets the index from PostgreSQL itself: still converged
    execute(url, "CREATE TABLE readings_2026_04 PARTITION OF readings FOR VALUES FROM ('2026-04-01') TO ('2026-05-01')")
    assert "0 steps to run (converged)" in ok(run_pyinfra(url, "deploys/phase.py", "--data", "phase=meters", "--dry",
                                                          phases=phases))

    ok(run_pyinfra(url, "deploys/rollback.py", "--data", "phase=meters", "-y", phases=phases))
    assert not any(name.startswith("readings_") and "meter" in name for name, *_ in attached(url).values())
    ok(run_pyinfra(url, "deploys/phase.py", "--data", "phase=meters", "-y", phases=phases))
    assert attached(url)["readings"][1] is True


def test_a_partition_without_the_index_is_drift_and_the_rest_is_kept(metering):
    """As an interrupted build (or a hand-made start) leaves it: the parent index INVALID, one leaf missing."""
    url, phases = metering
    execute(url,
            "CREATE INDEX readings_meter_time ON ONLY readings (meter_id, read_at DESC)",
            "CREATE INDEX jan_by_meter ON readings_2026_01 (meter_id, read_at DESC)",
            "ALTER INDEX readings_meter_time ATTACH PARTITION jan_by_meter",
            "CREATE INDEX feb_by_meter ON readings_2026_02 (meter_id, read_at DESC)")  # built, never attached
    failed = run_pyinfra(url, "deploys/verify.py", "-y", phases=phases)
    assert failed.returncode != 0 and "readings_meter_time" in failed.stdout + failed.stderr
    out = ok(run_pyinfra(url, "deploys/phase.py", "--data", "phase=meters", "-y", phases=phases))
    assert "feb_by_meter" in out and "already has the definition: attach it" in out
    indexes = attached(url)
    assert indexes["readings_2026_01"][0] == "jan_by_meter" and indexes["readings_2026_02"][0] == "feb_by_meter"
    assert indexes["readings"][1] is True
    ok(run_pyinfra(url, "deploys/verify.py", "-y", phases=phases))


def test_a_unique_index_without_the_partition_key_stops_the_plan_before_anything_runs(metering):
    url, phases = metering
    phases.write_text(PHASES.replace("columns: [meter_id, read_at DESC]", "columns: [meter_id]\n        unique: true"))
    result = run_pyinfra(url, "deploys/phase.py", "--data", "phase=meters", "-y", phases=phases)
    combined = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in combined
    assert "must include all partitioning columns" in combined
    assert "readings" not in attached(url)


def test_a_failed_gate_reverts_a_partitioned_index_and_says_so_once(metering):
    """The parent's DROP takes its per-partition indexes with it: they are reverted, not 'not reverted'."""
    url, phases = metering
    before = attached(url)
    (phases.parent / "sql" / "gates" / "never.sql").write_text("SELECT 'a row the gate does not want'")
    phases.write_text(PHASES.replace("    indexes:", "    on_gate_failure: revert\n    indexes:")
                      + "      - name: never_passes\n        kind: sql\n        sql: gates/never.sql\n"
                        "        expect: no_rows\n")
    failed = run_pyinfra(url, "deploys/phase.py", "--data", "phase=meters", "-y", phases=phases)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "partition public.readings_2026_03_north" in out, out[-3000:]
    assert "gate never_passes (query None) failed" not in out
    assert "reverted: dropped index readings_meter_time" in out and "not reverted" not in out, out[-3000:]
    assert attached(url) == before
