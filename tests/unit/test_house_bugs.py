"""Bugs found by reading (the house issue), each reproduced here first: the pre-change backup of a phase that declares
only views in a schema, export-sql's rollback of a managed extension, a new MV reading a new view of its phase."""

from __future__ import annotations

from pathlib import Path

from pgconverge import plan, report, spec
from pgconverge.facts import Catalog
from pgconverge.operations import managed_schemas

REPORTING = """
version: 1
settings:
  schema: app
phases:
  - id: boards
    title: "Boards for the reporting team"
    extensions:
      - name: pg_trgm
        schema: extensions
    views:
      - name: reporting.open_board
        sql: open_board.sql
    materialized_views:
      - name: board_daily
        sql: board_daily.sql
        unique_key: [day]
"""


def load(tmp_path: Path) -> spec.Spec:
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "open_board.sql").write_text("SELECT id, created_at FROM app.tickets WHERE closed_at IS NULL")
    (tmp_path / "sql" / "board_daily.sql").write_text(
        "SELECT date_trunc('day', created_at) AS day, count(*) AS opened FROM reporting.open_board GROUP BY 1")
    (tmp_path / "phases.yml").write_text(REPORTING)
    return spec.load(tmp_path / "phases.yml")


def test_the_backup_before_a_change_holds_the_schema_of_a_phase_with_only_views_there(tmp_path):
    assert "reporting" in managed_schemas(load(tmp_path))


def test_export_sql_drops_the_managed_extension_on_rollback(tmp_path):
    assert 'DROP EXTENSION IF EXISTS "pg_trgm";' in report.every_statement(load(tmp_path))


def test_a_new_materialized_view_is_created_after_the_new_view_it_reads(tmp_path):
    loaded = load(tmp_path)
    steps = plan.plan(loaded, Catalog(database="app", schema="app"), ["boards"]).steps
    order = [s.object for s in steps]
    assert order.index("view open_board") < order.index("materialized view board_daily"), order
