"""phases.yml validation: the shipped file is valid; every broken variant exits 2 with file:line:col."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgconverge import cli, spec
from pgconverge.kinds.index import IndexColumn

REPO = Path(__file__).resolve().parents[2]
LOCATION = re.compile(r"^.*phases\.yml:(\d+):(\d+): .+ — .+$")


def write(project: Path, text: str) -> Path:
    path = project / "phases.yml"
    path.write_text(text)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "sql" / "phase2").mkdir(parents=True)
    (tmp_path / "sql" / "phase2" / "mv.sql").write_text("SELECT 1 AS id")
    return tmp_path


MINIMAL = """\
version: 1
phases:
  - id: phase1
    title: indexes
    indexes:
      - name: idx_a
        table: leads
        columns: [user_id, created_at DESC]
"""


def validate(path: Path, capsys) -> tuple[int, str]:
    code = cli.main(["validate", str(path)])
    captured = capsys.readouterr()
    return code, (captured.err or captured.out).strip()


def test_shipped_phases_yml_is_valid(capsys):
    code, out = validate(REPO / "phases.yml", capsys)
    assert code == 0, out
    assert "3 phases, 2 extensions, 12 indexes, 3 materialized views, 5 functions, 3 grants, 3 cron jobs" in out


def test_minimal_spec_loads_into_frozen_dataclasses(project):
    loaded = spec.load(write(project, MINIMAL))
    index = loaded.phases[0].indexes[0]
    assert index.columns[1] == IndexColumn("created_at", "DESC", None)
    with pytest.raises(AttributeError):
        index.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (MINIMAL + "        colour: blue\n", 9, "unknown key 'colour'"),
        (MINIMAL + "      - name: idx_a\n        table: leads\n        columns: [id]\n", 9,
         "duplicate relation name 'public.idx_a'"),
        (MINIMAL + "    materialized_views:\n      - name: mv_a\n        sql: phase2/nope.sql\n        unique_key: [id]\n",
         11, "does not exist"),
        (MINIMAL + "    requires: [phase2]\n  - id: phase2\n    title: two\n    requires: [phase1]\n", 9,
         "a later phase (cycle)"),
        (MINIMAL + "    cron_jobs:\n      - name: refresh\n        schedule: '61 * * * *'\n        command: SELECT 1\n",
         11, "cron schedule '61 * * * *' is invalid"),
        (MINIMAL.replace("idx_a", "'x\"; DROP TABLE leads; --'"), 6, "is not a valid identifier"),
        (MINIMAL.replace("[user_id, created_at DESC]", "[user_id, created_at DESC; DROP TABLE leads]"), 8,
         "index element"),
        (MINIMAL + "        where: \"status = 'new'); DROP TABLE leads; --\"\n", 9, "index predicate"),
        (MINIMAL.replace("version: 1", "version: 2"), 1, "version"),
        ("base: &a [1]\nversion: 1\nphases: *a\n", 1, "anchors and aliases are not allowed"),
        (MINIMAL + "  - [unclosed\n", 10, "invalid YAML"),
    ],
    ids=["unknown-key", "duplicate-index", "missing-sql-file", "requires-cycle", "bad-cron", "injection-name",
         "injection-column", "injection-predicate", "wrong-version", "yaml-alias", "yaml-syntax"],
)
def test_rejections_name_file_line_and_exit_2(project, capsys, text, line, fragment):
    code, out = validate(write(project, text), capsys)
    assert code == 2
    assert fragment in out
    match = LOCATION.match(out)
    assert match, out
    assert int(match.group(1)) == line
    assert "\n" not in out and "Traceback" not in out


def test_yaml_on_key_is_a_key_not_true(project):
    text = MINIMAL + "    revokes:\n      - privileges: [ALL]\n        on: leads\n        from: [anon]\n"
    grant = spec.load(write(project, text)).phases[0].grants[0]
    assert (grant.on, grant.revoke, grant.roles) == ("leads", True, ("anon",))


def test_missing_file_is_one_line(tmp_path, capsys):
    code, out = validate(tmp_path / "phases.yml", capsys)
    assert code == 2 and "file not found" in out


def test_phase_selection_follows_requires():
    loaded = spec.load(REPO / "phases.yml")
    assert [p.id for p in loaded.phases_through("phase3")] == ["phase1", "phase2", "phase3"]
    assert [p.id for p in loaded.phases_through("phase1")] == ["phase1"]
    assert [p.id for p in loaded.phases_from("phase2")] == ["phase2", "phase3"]


def test_a_workload_only_phases_yml_validates_and_an_empty_one_says_what_to_add(tmp_path):
    (tmp_path / "sql" / "workload").mkdir(parents=True)
    (tmp_path / "sql" / "workload" / "open_orders.sql").write_text("SELECT count(*) FROM orders")
    (tmp_path / "phases.yml").write_text("version: 1\nworkload:\n  - name: open_orders\n")
    loaded = spec.load(tmp_path / "phases.yml")
    assert loaded.phases == () and [q.name for q in loaded.workload] == ["open_orders"]
    (tmp_path / "phases.yml").write_text("version: 1\n")
    with pytest.raises(spec.SpecError, match="declares neither phases nor a workload — add phases:"):
        spec.load(tmp_path / "phases.yml")


def test_a_view_takes_its_query_inline_as_params_do(tmp_path):
    (tmp_path / "sql").mkdir()
    (tmp_path / "phases.yml").write_text(
        "version: 1\nphases:\n  - id: boards\n    title: boards\n    views:\n      - name: open_orders\n"
        "        sql: \"SELECT id FROM orders WHERE closed_at IS NULL\"\n")
    view = spec.load(tmp_path / "phases.yml").phases[0].objects["views"][0]
    assert view.query == "SELECT id FROM orders WHERE closed_at IS NULL" and view.source == "its inline query"
    (tmp_path / "phases.yml").write_text((tmp_path / "phases.yml").read_text().replace("SELECT id", "DELETE"))
    with pytest.raises(spec.SpecError, match="phases.yml:7:14: the query of view open_orders"):
        spec.load(tmp_path / "phases.yml")
