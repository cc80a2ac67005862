"""The rollup advise proposes answers the statement it was made for: the view built from its SQL, the rewritten
statement read from it gives the original's rows (on a range that starts at a bucket's edge) — on a real server."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from pgconverge.advise.rollups import rewritten, rollup_of

pytestmark = pytest.mark.integration

TABLE = """
CREATE SCHEMA metrics;
CREATE TABLE metrics.events (id bigint PRIMARY KEY, project_id int NOT NULL, event_type text NOT NULL,
                             duration_ms int NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO metrics.events SELECT g, 1 + g % 5, (ARRAY['pageview', 'error'])[1 + (g % 7 = 0)::int], g % 900,
       timestamptz '2026-11-01' + g * interval '97 s' FROM generate_series(1, 20000) g;
"""
COLUMNS = {("metrics", "events"): {"id", "project_id", "event_type", "duration_ms", "created_at"}}


@pytest.mark.parametrize("query", [
    "SELECT date_trunc('day', created_at) AS day, count(*) AS n, avg(duration_ms) AS mean_ms, max(duration_ms)"
    " FROM metrics.events WHERE project_id = %(p)s AND created_at >= %(since)s GROUP BY 1 ORDER BY 1",
    "SELECT date_trunc('hour', e.created_at) AS hour, count(*) AS errors FROM metrics.events e"
    " WHERE e.project_id = %(p)s AND e.event_type = 'error' AND e.created_at >= %(since)s GROUP BY 1 ORDER BY 1",
])
def test_the_rewritten_statement_reads_the_same_rows_from_the_rollup(fresh_db, query):
    positional = query.replace("%(p)s", "$1").replace("%(since)s", "$2")
    rollup = rollup_of(positional, COLUMNS)
    assert rollup is not None
    params = {"p": 3, "since": dt.datetime(2026, 11, 5, tzinfo=dt.UTC)}  # a bucket's edge
    from_rollup = rewritten(positional, rollup).replace("$1", "%(p)s").replace("$2", "%(since)s")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(TABLE)  # type: ignore[arg-type]
        conn.execute(f"CREATE MATERIALIZED VIEW {rollup.schema}.{rollup.name} AS {rollup.view_sql()}")  # type: ignore[arg-type]
        original = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
        answered = conn.execute(from_rollup, params).fetchall()  # type: ignore[arg-type]
    assert len(original) > 10
    assert [tuple(round(v, 6) if not isinstance(v, dt.datetime) else v for v in r) for r in answered] == \
        [tuple(round(v, 6) if not isinstance(v, dt.datetime) else v for v in r) for r in original]
