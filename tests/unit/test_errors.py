"""What a user can act on is a UserError, one line; anything else is a bug and shows as one (a traceback)."""

from __future__ import annotations

import pytest

from pgconverge import cli
from pgconverge.errors import UserError
from pgconverge.model import CatalogUnreadable


def test_a_users_mistake_is_one_line_and_exit_1(tmp_path, capsys):
    assert cli.main(["plan", str(tmp_path / "missing.py"), "deploys/all.py"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pgconverge: ") and "no such inventory file" in err[-1]
    assert issubclass(CatalogUnreadable, UserError)


def test_a_programs_key_error_is_not_dressed_as_a_users_mistake(monkeypatch):
    def broken(args):
        return {}["missing"]

    monkeypatch.setattr(cli, "cmd_validate", broken)
    with pytest.raises(KeyError):
        cli.main(["validate", "phases.yml"])


def test_every_error_a_user_can_act_on_is_a_user_error():
    from pgconverge.backup import BackupFailed
    from pgconverge.clienttools import NoMatchingClient
    from pgconverge.lab import LabError
    from pgconverge.pacing import PausedTooLong
    from pgconverge.spec import SpecError

    assert all(issubclass(error, UserError)
               for error in (BackupFailed, LabError, SpecError, NoMatchingClient, PausedTooLong))
