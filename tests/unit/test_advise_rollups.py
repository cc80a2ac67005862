"""advise on time-range aggregates per key: covering candidates with what the statement reads, and the rollup a
materialized view would be (its SQL, its key, the statement rewritten against it) — parse trees only."""

from pgconverge.advise import candidates_of
from pgconverge.advise.rollups import rewritten, rollup_of

COLUMNS = {("telemetry", "events"): {"id", "tenant_id", "session_id", "user_id", "event_type", "name", "path",
                                     "duration_ms", "country", "created_at"}}
DAILY = ("SELECT date_trunc('day', e.created_at) AS day, count(*) AS events, avg(e.duration_ms) AS mean_ms"
         " FROM telemetry.events e WHERE e.tenant_id = $1 AND e.created_at >= $2 GROUP BY 1 ORDER BY 1")


def test_a_dashboard_reading_six_columns_gets_a_covering_candidate():
    found = candidates_of("SELECT id, user_id, event_type, name, path, duration_ms FROM telemetry.events"
                          " WHERE tenant_id = $1 AND created_at >= $2 ORDER BY created_at DESC LIMIT 100", COLUMNS)
    assert (("tenant_id", "created_at"), ("duration_ms", "event_type", "id", "name", "path", "user_id")) in [
        (c.columns, c.include) for c in found]


def test_a_per_day_aggregate_of_a_tenant_is_a_rollup_with_its_key_and_measures():
    rollup = rollup_of(DAILY, COLUMNS)
    assert rollup is not None
    assert (rollup.keys, rollup.unit, rollup.time_column) == (("tenant_id",), "day", "created_at")
    assert rollup.measures == (("count", "*"), ("sum", "duration_ms"))  # avg kept as sum and count
    assert rollup.name == "events_daily_by_tenant_id" and rollup.unique_key == ["tenant_id", "bucket"]
    assert rollup.view_sql() == (
        'SELECT "tenant_id",\n       date_trunc(\'day\', "created_at") AS bucket,\n       count(*) AS events,\n'
        '       sum("duration_ms") AS sum_duration_ms\nFROM "telemetry"."events"\nGROUP BY 1, 2')
    assert rewritten(DAILY, rollup) == (
        "SELECT bucket AS day, sum(events) AS events, CAST(sum(sum_duration_ms) AS numeric) / NULLIF(sum(events), 0)"
        " AS mean_ms FROM telemetry.events_daily_by_tenant_id WHERE tenant_id = $1"
        " AND bucket >= date_trunc('day', $2) GROUP BY 1 ORDER BY 1")


def test_constant_filters_stay_in_the_view_and_what_buckets_cannot_answer_is_no_rollup():
    custom = rollup_of("SELECT name, date_trunc('hour', created_at) AS h, count(*) FROM telemetry.events"
                       " WHERE tenant_id = $1 AND event_type = 'custom' AND created_at >= $2 GROUP BY name, h",
                       COLUMNS)
    assert custom is not None and custom.keys == ("tenant_id", "name") and custom.where == "\"event_type\" = 'custom'"
    assert "event_type" not in rewritten("SELECT name, date_trunc('hour', created_at) AS h, count(*) FROM"
                                         " telemetry.events WHERE tenant_id = $1 AND event_type = 'custom' AND"
                                         " created_at >= $2 GROUP BY name, h", custom)
    for query in (
        "SELECT name, count(*) FROM telemetry.events WHERE tenant_id = $1 GROUP BY name",  # no bucket, no range
        "SELECT date_trunc('day', created_at), count(DISTINCT user_id) FROM telemetry.events"
        " WHERE tenant_id = $1 AND created_at >= $2 GROUP BY 1",  # distinct users do not add up over buckets
        "SELECT date_trunc('day', created_at), count(*) FROM telemetry.events"
        " WHERE tenant_id = $1 AND duration_ms > $2 AND created_at >= $3 GROUP BY 1",  # a filter on rows
    ):
        assert rollup_of(query, COLUMNS) is None, query


def test_the_opt_in_rollup_phase_validates_once_uncommented(tmp_path):
    import re

    from pgconverge import spec
    from pgconverge.advise import Advice, Statement, to_yaml

    statement = Statement(7, DAILY, 40, 90.0, 3600.0, 1.0)
    hourly = Statement(8, DAILY.replace("'day'", "'hour'"), 40, 9.0, 360.0, 1.0)
    advice = Advice(statements=[(statement, 16_000.0, 16_000.0), (hourly, 2_000.0, 2_000.0)],
                    rollups=[(7, rollup_of(DAILY, COLUMNS)), (8, rollup_of(hourly.query, COLUMNS))])
    text = to_yaml(advice)
    block = text[text.index("# Opt-in: rollups"):]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# - id: rollups"))
    phase = "\n".join(line[2:] for line in lines[start:lines.index("#", start)])
    files = dict(re.findall(r"# sql/(rollups/\w+\.sql):\n((?:#   .*\n)+)", block))
    assert set(files) == {"rollups/events_daily_by_tenant_id.sql", "rollups/events_hourly_by_tenant_id.sql"}
    for name, body in files.items():
        (tmp_path / "sql" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sql" / name).write_text("\n".join(line[4:] for line in body.splitlines()))
    (tmp_path / "phases.yml").write_text("version: 1\nphases:\n" + phase + "\n")
    loaded = spec.load(tmp_path / "phases.yml")
    assert [v.unique_key for v in loaded.phase("rollups").materialized_views] == [("tenant_id", "bucket")] * 2
    assert [j.command for j in loaded.phase("rollups").cron_jobs] == [
        "REFRESH MATERIALIZED VIEW CONCURRENTLY telemetry.events_daily_by_tenant_id",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY telemetry.events_hourly_by_tenant_id"]
    assert "FROM telemetry.events_daily_by_tenant_id WHERE tenant_id = $1" in block
