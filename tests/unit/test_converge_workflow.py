"""The fleet workflow: valid for GitHub's workflow schema; canary, then wave 1's shards, the gate, wave 2's, the
report; each wave behind an environment (approvals); every shard runs what `pgconverge fleet shard` gives it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "converge.yml"


def test_the_workflow_validates_against_githubs_schema():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(checker), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_waves_in_order_behind_environments_with_a_gate_between():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert jobs["wave1"]["needs"] == "canary" and jobs["wave2"]["needs"] == "wave1-gate"
    assert jobs["wave1-gate"]["needs"] == "wave1"
    assert [jobs[j]["environment"] for j in ("canary", "wave1", "wave2")] == [
        "production-canary", "production-wave-1", "production-wave-2"]
    assert jobs["wave1"]["strategy"]["matrix"]["index"] == [0, 1, 2, 3]
    gate = " ".join(s.get("run", "") for s in jobs["wave1-gate"]["steps"])
    assert "fleet report" in gate and "--wave 1 --max-fail-percentage" in gate
    for job in ("canary", "wave1", "wave2"):
        run = " ".join(s.get("run", "") for s in jobs[job]["steps"])
        assert "pgconverge fleet shard" in run and "PGCONVERGE_SUMMARY_DIR=summaries" in run
    assert "$GITHUB_STEP_SUMMARY" in " ".join(s.get("run", "") for s in jobs["report"]["steps"])
