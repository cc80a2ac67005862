"""policies: in phases.yml: one-line errors for what PostgreSQL would refuse, and validate's notes for policies
written the slow way, each with the rewrite to declare (no server)."""

from __future__ import annotations

import pytest

from pgconverge import cli, spec
from pgconverge.kinds.policy import per_row_calls, wrapped

PHASE = """
version: 1
phases:
  - id: rls
    title: policies
    policies:
      - table: documents
        name: owners read
        command: {command}
        roles: [authenticated]
        {clause}: "{expression}"
"""


def _write(tmp_path, **values):
    (tmp_path / "phases.yml").write_text(PHASE.format(**values))
    return tmp_path / "phases.yml"


def test_validate_names_a_per_row_auth_call_with_its_rewrite(tmp_path, capsys):
    path = _write(tmp_path, command="SELECT", clause="using", expression="owner_id = auth.uid() AND NOT archived")
    assert cli.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 phases" in out and "1 policy," in out
    assert ("note: phase rls: policy owners read on public.documents calls auth.uid() for every row in using —"
            " declare using: \"owner_id = (select auth.uid()) AND NOT archived\"") in out


@pytest.mark.parametrize("command, clause, expression, message", [
    ("SELECT", "with_check", "true", "a SELECT policy has no WITH CHECK"),
    ("INSERT", "using", "true", "an INSERT policy has no USING"),
    ("SELECT", "using", "owner_id = ; drop", "does not parse"),
])
def test_what_postgresql_would_refuse_is_one_line(tmp_path, command, clause, expression, message):
    path = _write(tmp_path, command=command, clause=clause, expression=expression)
    with pytest.raises(spec.SpecError, match=message) as raised:
        spec.load(path)
    assert "phases.yml:" in str(raised.value) and "\n" not in str(raised.value)


def test_only_a_call_alone_in_a_scalar_subquery_runs_once():
    assert per_row_calls("owner_id = (select auth.uid())") == []
    assert per_row_calls("org_id IN (SELECT org_id FROM members WHERE id = auth.uid())") == ["auth.uid"]
    assert per_row_calls("team = current_setting('app.team', true)") == ["current_setting"]
    assert wrapped("a = auth.uid() OR b = auth.jwt() ->> 'x'", ["auth.jwt", "auth.uid"]) == \
        "a = (select auth.uid()) OR b = (select auth.jwt()) ->> 'x'"
