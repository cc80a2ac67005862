"""The validated spec kept by content: a second load of an unchanged phases.yml skips validation; any change of the
file, of an SQL file it names, or a broken file is never served from the cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgconverge import spec, speccache

PHASES = """\
version: 1
phases:
  - id: phase1
    title: rollups
    materialized_views:
      - name: mv_daily
        sql: daily.sql
        unique_key: [id]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv(speccache.DIR_ENV, str(tmp_path / "cache"))
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "daily.sql").write_text("SELECT 1 AS id")
    (tmp_path / "phases.yml").write_text(PHASES)
    return tmp_path


def test_a_second_load_is_served_from_the_cache_without_jsonschema_or_pglast(project: Path) -> None:
    first = spec.load(project / "phases.yml")
    assert len(list((project / "cache").iterdir())) == 1
    probe = ("import sys; from pgconverge import spec; s = spec.load(sys.argv[1]);"
             " print(s.phases[0].materialized_views[0].query, 'jsonschema' in sys.modules, 'pglast' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(project / "phases.yml")], capture_output=True, text=True,
                         env={**os.environ, speccache.DIR_ENV: str(project / "cache")}, check=True).stdout
    assert out.split() == ["SELECT", "1", "AS", "id", "False", "False"]
    assert spec.load(project / "phases.yml") == first


def test_an_edited_sql_file_is_read_again(project: Path) -> None:
    spec.load(project / "phases.yml")
    (project / "sql" / "daily.sql").write_text("SELECT 2 AS id")
    assert spec.load(project / "phases.yml").phases[0].materialized_views[0].query.strip() == "SELECT 2 AS id"


def test_a_broken_file_fails_every_time_and_is_never_kept(project: Path) -> None:
    spec.load(project / "phases.yml")
    (project / "phases.yml").write_text(PHASES.replace("unique_key: [id]", "unique_key: [id]\n        bogus: 1"))
    for _ in range(2):
        with pytest.raises(spec.SpecError, match="unknown key 'bogus'"):
            spec.load(project / "phases.yml")
    assert len(list((project / "cache").iterdir())) == 1


def test_a_sql_file_with_a_parse_error_is_found_although_the_yaml_is_unchanged(project: Path) -> None:
    spec.load(project / "phases.yml")
    (project / "sql" / "daily.sql").write_text("SELECT FROM WHERE (")
    with pytest.raises(spec.SpecError, match="does not parse"):
        spec.load(project / "phases.yml")


def test_a_foreign_or_corrupt_entry_is_a_miss_and_off_means_off(project: Path, monkeypatch) -> None:
    spec.load(project / "phases.yml")
    (entry,) = (project / "cache").iterdir()
    entry.write_bytes(b"not a pickle")
    assert spec.load(project / "phases.yml").phases[0].id == "phase1"  # validated again, kept again
    (project / "cache").chmod(0o777)  # a folder others may write to: its pickles are never read
    assert speccache.fetch(entry.name) is None
    (project / "cache").chmod(0o700)
    monkeypatch.setenv(speccache.OFF_ENV, "off")
    assert speccache.fetch(entry.name) is None
