"""A fleet of 12 databases in two clusters rolled out in waves with the real pyinfra CLI: a canary first, a wave
that fails above max_fail_percentage stops the rollout, a failing canary stops everything after it, shards cover a
wave exactly once and run as parallel processes whose summaries one report merges."""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from psycopg import sql

from pgconverge import cli, fleet
from pgconverge.lab import APP_ROLE
from tests.conftest import PYINFRA, REPO, TEMPLATE, app_url, cluster_with_template

pytestmark = pytest.mark.integration

PHASES = """
version: 1
phases:
  - id: fleet
    title: "Leads by owner and status, on every tenant"
    backup: false
    indexes:
      - name: idx_leads_owner_status
        table: leads
        columns: [user_id, status]
    gates:
      - name: tenant_answers
        kind: sql
        sql: gates/tenant.sql
        expect: "true"
"""
HOSTS = [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)]
WAVE = {"a0": 0, **{h: 1 for h in ("a1", "a2", "a3", "a4", "a5", "b0")}, **{h: 2 for h in HOSTS[7:]}}


@pytest.fixture(scope="module")
def second_cluster():
    yield from cluster_with_template("pgconverge-fleet-", "fleet_template", 7)


@pytest.fixture
def tenants(servers, second_cluster, tmp_path, monkeypatch):
    """12 tenant databases, six per cluster, an inventory naming each with its wave, a phases.yml for them."""
    clusters = {"a": (servers, TEMPLATE), "b": (second_cluster, "fleet_template")}
    made = []
    for host in HOSTS:
        lab, template = clusters[host[0]]
        name = f"tenant_{host}_{tmp_path.name[-12:].replace('-', '_')}".lower()
        with psycopg.connect(lab.superuser_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(template), sql.Identifier(APP_ROLE)))
        made.append((lab, name))
        monkeypatch.setenv(f"TENANT_{host.upper()}_URL", app_url(lab, name))
    inventory = tmp_path / "fleet.py"
    inventory.write_text("tenants = [\n" + "".join(
        f'    ("@db/{h}", {{"database_url_env": "TENANT_{h.upper()}_URL", "environment": "lab",'
        f' "rollout_wave": {WAVE[h]}}}),\n' for h in HOSTS) + "]\n")
    (tmp_path / "sql" / "gates").mkdir(parents=True)
    (tmp_path / "sql" / "gates" / "tenant.sql").write_text("SELECT count(*) > 0 FROM leads")
    (tmp_path / "phases.yml").write_text(PHASES)
    monkeypatch.setenv("PGCONVERGE_PHASES", str(tmp_path / "phases.yml"))
    monkeypatch.setenv("PGCONVERGE_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("PGCONVERGE_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.chdir(REPO)
    yield inventory, tmp_path
    for lab, name in made:
        with psycopg.connect(lab.superuser_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def built(host: str) -> bool:
    import os

    with psycopg.connect(os.environ[f"TENANT_{host.upper()}_URL"]) as conn:
        return conn.execute("SELECT to_regclass('idx_leads_owner_status') IS NOT NULL").fetchone()[0]


def test_a_wave_above_max_fail_percentage_stops_the_rollout(tenants, capsys):
    inventory, folder = tenants
    import os

    with psycopg.connect(os.environ["TENANT_A3_URL"], autocommit=True) as conn:
        conn.execute("ALTER TABLE leads RENAME TO leads_archived")  # broken on purpose: wave 1's a3
    code = cli.main(["fleet", "rollout", "--inventory", str(inventory), "deploys/all.py",
                     "--summary-dir", str(folder / "summaries"), "--max-fail-percentage", "10",
                     "--output", str(folder / "report.md")])
    report = capsys.readouterr().out
    assert code == 1
    assert "wave 1: 1 of 6 failed (17 %), more than max_fail_percentage 10 %: no later wave started" in report
    assert "| 1 | @db/a3 | failed |" in report and 'relation "public.leads" does not exist' in report
    assert all(built(h) for h in HOSTS if WAVE[h] <= 1 and h != "a3")
    assert not any(built(h) for h in HOSTS if WAVE[h] == 2)
    assert all(f"| 2 | @db/{h} | not run |" in report for h in HOSTS if WAVE[h] == 2)
    assert (folder / "report.md").read_text() == report
    # the gate between waves in CI judges one wave's summaries the same way
    gate = ["fleet", "report", str(folder / "summaries"), "--inventory", str(inventory), "--wave", "1"]
    assert cli.main([*gate, "--max-fail-percentage", "10"]) == 1
    assert "wave 1: 1 of 6 failed or did not report (17 %)" in capsys.readouterr().out
    assert cli.main([*gate, "--max-fail-percentage", "20"]) == 0


def test_a_failing_canary_stops_everything_after_it(tenants, capsys):
    inventory, folder = tenants
    import os

    with psycopg.connect(os.environ["TENANT_A0_URL"], autocommit=True) as conn:
        conn.execute("TRUNCATE leads CASCADE")  # the canary's gate (count(*) > 0) fails there
    code = cli.main(["fleet", "rollout", "--inventory", str(inventory), "deploys/all.py",
                     "--summary-dir", str(folder / "summaries"), "--max-fail-percentage", "50"])
    report = capsys.readouterr().out
    assert code == 1 and "the canary failed (@db/a0): no later wave started" in report
    assert "gate tenant_answers (sql) FAILED" in report
    assert not any(built(h) for h in HOSTS if WAVE[h] > 0)


def test_shards_cover_a_wave_once_and_run_in_parallel_into_one_report(tenants, capsys):
    inventory, folder = tenants
    members = fleet.waves(inventory)
    wave1 = sorted(f"@db/{h}" for h in HOSTS if WAVE[h] == 1)
    shards = [fleet.shard(members, 1, 4, i) for i in range(4)]
    assert sorted(h for s in shards for h in s) == wave1 and len({h for s in shards for h in s}) == len(wave1)
    assert cli.main(["fleet", "shard", "--inventory", str(inventory), "--wave", "1", "--shards", "4", "--index",
                     "0"]) == 0
    assert capsys.readouterr().out.split() == [a for h in shards[0] for a in ("--limit", h)]
    import os

    processes = [subprocess.Popen(
        [PYINFRA, str(inventory), "deploys/all.py", "-y", *[a for h in shard for a in ("--limit", h)]],
        env={**os.environ, "PGCONVERGE_SUMMARY_DIR": str(folder / "shards" / str(i))}, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        for i, shard in enumerate(shards)]
    assert [p.wait(timeout=300) for p in processes] == [0, 0, 0, 0]
    code = cli.main(["fleet", "report", str(folder / "shards"), "--inventory", str(inventory)])
    report = capsys.readouterr().out
    assert code == 1  # the hosts of waves 0 and 2 did not run
    assert "6 of 12 databases ran; 0 failed." in report
    assert all(f"| 1 | {h} | ok | 2 | 1/1 | 0 |" in report for h in wave1)
