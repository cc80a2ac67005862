"""The planner's one order for every kind: removals first, then each object after what it reads (views, MVs, the
MV an index is on, the object a grant is on), else the registry's kind order, then the declaration's; rollback the
reverse; a cycle is a refusal naming its objects. Catalogs are empty or hand-made: the plan is pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgconverge import plan, spec
from pgconverge.facts import Catalog, MatViewFact
from pgconverge.kinds import REGISTRY
from pgconverge.spec import marker

# a small booking app: a view of open bookings, a daily MV over it, a view of the MV for the API, an index on the
# MV, a grant on the view of the MV, a refresh job — declared in the worst order on purpose
BOOKINGS = """
version: 1
settings:
  schema: app
  api_roles: [anon]
phases:
  - id: boards
    title: booking boards
    cron_jobs:
      - name: refresh-daily
        schedule: "*/10 * * * *"
        command: REFRESH MATERIALIZED VIEW CONCURRENTLY app.daily_bookings
    grants:
      - on: daily_board
        privileges: [SELECT]
        to: [anon]
    views:
      - name: daily_board
        sql: daily_board.sql
      - name: open_bookings
        sql: open_bookings.sql
    indexes:
      - name: daily_bookings_room
        table: daily_bookings
        columns: [room_id]
    materialized_views:
      - name: daily_bookings
        sql: daily_bookings.sql
        unique_key: [day, room_id]
    extensions:
      - name: btree_gist
"""

SQL = {
    "open_bookings.sql": "SELECT id, room_id, starts_at FROM app.bookings WHERE cancelled_at IS NULL",
    "daily_bookings.sql": "SELECT date_trunc('day', starts_at) AS day, room_id, count(*) AS booked"
                          " FROM app.open_bookings GROUP BY 1, 2",
    "daily_board.sql": "SELECT day, room_id, booked FROM app.daily_bookings WHERE day > now() - interval '7 days'",
}


def project(tmp_path: Path, text: str = BOOKINGS, sql: dict[str, str] = SQL) -> spec.Spec:
    (tmp_path / "sql").mkdir(exist_ok=True)
    for name, body in sql.items():
        (tmp_path / "sql" / name).write_text(body)
    (tmp_path / "phases.yml").write_text(text)
    return spec.load(tmp_path / "phases.yml")


def objects(steps) -> list[str]:
    seen: list[str] = []
    for step in steps:
        seen += [step.object] if step.object not in seen else []
    return seen


def test_each_object_comes_after_what_it_reads_and_kinds_keep_the_registry_order(tmp_path):
    loaded = project(tmp_path)
    steps = plan.plan(loaded, Catalog(database="app", schema="app", roles=frozenset({"anon"})), ["boards"]).steps
    assert objects(steps) == [
        "extension btree_gist",  # first kind, nothing to wait for
        "view open_bookings",  # the MV reads it: before the MV, although views come after MVs by kind
        "materialized view daily_bookings",
        "index daily_bookings_room",  # on the MV of this phase: after it, although indexes come before MVs by kind
        "view daily_board",  # reads the MV; its grant went into its creating transaction
        "cron job refresh-daily",
    ]
    board = next(s for s in steps if s.object == "view daily_board")
    assert 'GRANT SELECT ON TABLE "app"."daily_board" TO "anon"' in board.statements


def test_the_order_is_stable_from_run_to_run_and_the_rollback_is_its_reverse(tmp_path):
    loaded = project(tmp_path)
    empty = Catalog(database="app", schema="app", roles=frozenset({"anon"}))
    first = [s.object for s in plan.plan(loaded, empty, ["boards"]).steps]
    assert all([s.object for s in plan.plan(loaded, empty, ["boards"]).steps] == first for _ in range(3))
    mark = marker("boards", "x")
    applied = Catalog(database="app", schema="app", current_user="owner",
                      matviews={"app.daily_bookings": MatViewFact("daily_bookings", "", mark)},
                      objects={"view": {k: kind.stand_in(o, mark) for kind in REGISTRY if kind.name == "view"
                                        for o in kind.declared(loaded.phases[0]) for k in [o.key]}})
    rollback = [s.object for s in plan.plan_rollback(loaded, applied, "boards").steps]
    assert rollback == ["view daily_board", "materialized view daily_bookings", "view open_bookings"]


def test_views_that_read_each_other_are_refused_by_name_and_nothing_is_planned_for_them(tmp_path):
    cycle = {"open_bookings.sql": "SELECT * FROM app.daily_board", "daily_bookings.sql": SQL["daily_bookings.sql"],
             "daily_board.sql": "SELECT * FROM app.open_bookings"}
    loaded = project(tmp_path, sql=cycle)
    result = plan.plan(loaded, Catalog(database="app", schema="app", roles=frozenset({"anon"})), ["boards"])
    (refusal,) = result.refusals
    assert "view app.daily_board" in refusal and "view app.open_bookings" in refusal and "cycle" in refusal
    assert "nothing was changed" in refusal
    assert "view open_bookings" not in [s.object for s in result.steps]


@pytest.mark.parametrize("kind", REGISTRY, ids=lambda k: k.name)
def test_every_kind_is_planned_by_the_registry_alone(kind):
    # a kind is its module: the planner names none of them (only the registry does)
    source = (Path(plan.__file__)).read_text()
    assert f"phase.{kind.section}" not in source and f"catalog.{kind.section}" not in source
