"""The before/after report: the runbook's Vorher/Nachher table from two snapshots."""

from __future__ import annotations

from pgconverge import snapshot


def snap(taken_at: str, statements: dict[str, list], kpi: dict | None = None, redis: dict | None = None) -> dict:
    return {"taken_at": taken_at, "database": "app", "slow_query_share": 0.5, "statements": statements,
            "kpi": kpi or {}, "redis": redis, "cache_hit_percent": {"heap": 99.0, "index": 98.0},
            "tables": [{"table": "app.tickets", "total_bytes": 2 << 20, "seq_scan": 3, "idx_scan": 1}]}


def test_slow_share_counts_only_the_calls_made_between_the_snapshots():
    before = snap("t0", {"1": [10, 30_000.0], "2": [100, 100.0]})
    # statement 1 was slow before (3 s each) and is fast now; statement 3 is new and slow
    after = snap("t1", {"1": [110, 30_100.0], "2": [200, 200.0], "3": [10, 20_000.0]})
    assert snapshot.slow_share_between(before, after) == 10 / 210


def test_slow_share_is_unknown_across_a_statistics_reset():
    assert snapshot.slow_share_between(snap("t0", {"1": [10, 1.0]}), snap("t1", {"1": [2, 1.0]})) is None
    assert snapshot.slow_share_between({"taken_at": "t0"}, snap("t1", {})) is None


def test_comparison_has_the_runbook_table_its_targets_and_new_queries():
    before = snap("t0", {"1": [1, 5.0]}, {"dashboard": {"p95_ms": 200.0}}, {"hit_rate_percent": None})
    after = snap("t1", {"1": [2, 6.0]}, {"dashboard": {"p95_ms": 20.0}, "dashboard_mv": {"p95_ms": 1.0}},
                 {"hit_rate_percent": 81.5})
    text = snapshot.compare(before, after)
    assert "| dashboard | 200.0 | 20.0 | -90.0 % |" in text
    assert "| dashboard_mv | — | 1.0 | new |" in text
    assert "| slow queries (> 1 s) share of calls | 50.00% | 0.00% (calls in between) | < 5 % |" in text
    assert "| cache hit rate (Redis) | no traffic yet | 81.5 % | > 70 % |" in text
    assert "| app.tickets |" in text


def test_report_of_files_that_are_no_snapshots_is_one_line(tmp_path, capsys):
    from pgconverge import cli

    empty, text = tmp_path / "empty.json", tmp_path / "text.json"
    empty.write_text("{}")
    text.write_text("nope")
    for argv, message in ((["report", str(empty), str(text)], f"{empty}: not a pgconverge snapshot"),
                          (["report", str(text), str(empty)], f"{text}: not JSON (Expecting value, line 1)")):
        assert cli.main([*argv, "--output-dir", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_snapshots_beyond_the_retention_are_removed_oldest_first(tmp_path):
    for number in range(5):
        snapshot.write({"taken_at": "2026-11-29T10:00:00+00:00"}, tmp_path, "lab", "@db/a", f"label-{number}",
                       retention=3)
    kept = sorted(p.name for p in (tmp_path / "lab" / "db_a").glob("*.json"))
    assert kept == ["20261129T100000-label-2.json", "20261129T100000-label-3.json", "20261129T100000-label-4.json"]


def test_a_host_summary_is_incomplete_until_the_run_reaches_its_end(tmp_path):
    import json

    from pgconverge.session import Entry, HostSession

    here = HostSession("@db/t1", summary_path=tmp_path / "t1.json")
    here.record(Entry("applied", "p1", "index x: missing"))
    assert json.loads((tmp_path / "t1.json").read_text())["result"] == "incomplete"  # a killed run is no pass
    here.finished = True
    here.write_summary()
    assert json.loads((tmp_path / "t1.json").read_text())["result"] == "ok"
    here.fail("gate g failed")
    assert json.loads((tmp_path / "t1.json").read_text())["result"] == "failed"
