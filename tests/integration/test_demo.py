"""`make demo`'s loop (scripts/demo.sh) end to end on a lab of its own: what the README promises a new user."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pgconverge.lab import Lab
from tests.conftest import REPO

pytestmark = pytest.mark.integration
BIN = str(Path(sys.executable).parent)


def test_demo_runs_the_runbook_loop_and_a_second_run_changes_nothing():
    base = Path(tempfile.mkdtemp(prefix="pgconverge-demo-"))
    base.chmod(0o755)  # the lab's postgres and the provisioned redis reach their folders
    lab_dir = base / ".lab"
    env = {**os.environ, "PGCONVERGE_LAB_DIR": str(lab_dir), "SCALE": "S", "KPI_RUNS": "3", "BIN": BIN,
           "DEMO_OUT": str(base / "out"), "PGCONVERGE_REPORTS_DIR": str(base / "reports"),
           "PGCONVERGE_BACKUP_DIR": str(base / "backups")}
    saved_crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    try:
        up = subprocess.run([f"{BIN}/pgconverge", "lab", "up"], env=env, capture_output=True, text=True, cwd=REPO)
        assert up.returncode == 0, up.stderr
        secrets = [line.split("=", 1)[1] for line in (lab_dir / "env").read_text().splitlines()
                   if "PASSWORD" in line]

        def demo() -> str:
            result = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                                    timeout=900, stdin=subprocess.DEVNULL)
            output = result.stdout + result.stderr
            assert result.returncode == 0, output[-4000:]
            assert not any(secret in output for secret in secrets)
            return output

        first = demo()
        assert "summary: 35 statements applied, 17/17 gates passed" in first
        assert "redis gate passed" in first and "backup gate passed" in first
        assert re.search(r"advise\.yml: \d+ indexes for \d+ statements", first)
        comparison = (base / "out" / "comparison.md").read_text()
        row = re.search(r"\| hot_leads \| ([\d.]+) \| ([\d.]+) \|", comparison)
        assert row, comparison
        assert "| hot_leads_mv | — |" in comparison  # phase 2's view did not exist at the baseline
        assert (base / "out" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
        assert "ENABLE_CACHE=true" in (lab_dir / "backend.env").read_text()
        assert list((base / "backups" / "nightly" / "lab" / "local").glob("lab-local-salesflow-*-nightly.dump"))
        second = demo()
        assert "summary: 0 statements applied, 9/9 gates passed, 8 timed gates not re-run (nothing changed)" in second
    finally:
        subprocess.run(["crontab", "-"], input=saved_crontab, text=True, check=False)
        Lab(lab_dir).destroy()
