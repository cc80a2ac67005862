"""Declared indexes as the server printed them, kept between runs in one JSON file: read back whole, the newest kept,
an unreadable file is an empty cache, off means off."""

from __future__ import annotations

from pgconverge import rendercache, speccache


def test_renders_are_kept_between_runs_and_a_broken_file_is_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(speccache.DIR_ENV, str(tmp_path / "cache" / "specs"))
    assert rendercache.load() == {}
    key = '["public.idx_a", "h1", "id bigint 0 |  | public", "150011", []]'
    rendercache.keep({key: ("USING btree (id)", None)})
    assert rendercache.load() == {key: ["USING btree (id)", None]}
    monkeypatch.setattr(rendercache, "KEPT", 2)
    rendercache.keep({"a": [None, "x"], "b": [None, "y"], "c": ["z", None]})
    assert list(rendercache.load()) == ["b", "c"]  # the newest
    rendercache.path().write_text("{not json")
    assert rendercache.load() == {}
    monkeypatch.setenv(speccache.OFF_ENV, "off")
    rendercache.keep({"d": ["w", None]})
    assert rendercache.load() == {}
