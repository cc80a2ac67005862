"""Verified backups before every phase, the restore drill, and Redis provisioned by the real pyinfra CLI."""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis

from pgconverge import cli
from pgconverge.lab import free_port
from tests.conftest import PYINFRA, REPO, pg_tool, run_pyinfra
from tests.integration.test_converge import catalog_oids, ok

pytestmark = pytest.mark.integration


def test_phase_starts_with_a_verified_schema_backup_and_the_drill_matches(cron_db, tmp_path, capsys):
    out = ok(run_pyinfra(cron_db, "deploys/phase1.py", "-y", "--data", f"backup_dir={tmp_path}"))
    dumps = sorted((tmp_path / "lab" / "local").glob("lab-local-salesflow-*-phase1.dump"))
    assert len(dumps) == 1 and f"backup {dumps[0]} (schema," in out
    recorded = (dumps[0].parent / (dumps[0].name + ".sha256")).read_text().split()[0]
    assert hashlib.sha256(dumps[0].read_bytes()).hexdigest() == recorded
    listing = subprocess.run([pg_tool("pg_restore"), "--list", str(dumps[0])], capture_output=True, text=True, check=True)
    assert "TABLE public message_events" in listing.stdout
    assert "TABLE DATA" not in listing.stdout  # what the phases change: schema, not the data
    assert cli.main(["backup", "restore-drill", "--database-url", cron_db, "--backup-dir", str(tmp_path),
                     "--host", "local"]) == 0
    report = capsys.readouterr().out
    assert "public.message_events" in report and "all tables (schema-only backup) equal" in report
    # A run that changes nothing takes no backup.
    ok(run_pyinfra(cron_db, "deploys/phase1.py", "-y", "--data", f"backup_dir={tmp_path}"))
    assert len(list((tmp_path / "lab" / "local").glob("*.dump"))) == 1


def test_no_backup_no_change_when_postgres_is_down(servers, tmp_path):
    down = f"postgresql://salesflow:pw@127.0.0.1:{free_port()}/salesflow"
    result = run_pyinfra(down, "deploys/phase1.py", "-y", "--data", f"backup_dir={tmp_path}")
    assert result.returncode != 0
    assert "cannot connect to host @local (" in result.stdout + result.stderr
    assert not list(tmp_path.rglob("*.dump"))


def test_failed_backup_stops_the_phase_before_any_change(cron_db, tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the backup directory should be")
    result = run_pyinfra(cron_db, "deploys/phase1.py", "-y", "--data", f"backup_dir={blocked}")
    assert result.returncode != 0
    assert "backup before phase1 failed, nothing was changed" in result.stdout + result.stderr
    assert catalog_oids(cron_db) == []


@pytest.fixture
def redis_inventory():
    base = Path(tempfile.mkdtemp(prefix="pgconverge-redis-"))
    base.chmod(0o755)
    port = free_port()
    data = {"redis_port": port, "redis_password_env": "T_REDIS_PASSWORD", "redis_instance": f"t{port}",
            "redis_config_dir": f"{base}/etc", "redis_data_dir": f"{base}/data", "redis_run_dir": f"{base}/run",
            "redis_logfile": f"{base}/log/redis.log", "backend_env_file": f"{base}/app/.env", "redis_url_env": "T_REDIS_URL"}
    inventory = base / "inventory.py"
    inventory.write_text(f"cache = ([('@local', {data!r})], {{'role': 'cache'}})\n")
    (base / "app").mkdir()
    (base / "app" / ".env").write_text("DEBUG=false\n")
    yield inventory, port, base
    pidfile = base / "run" / f"pgconverge-t{port}.pid"
    if pidfile.exists():
        os.kill(int(pidfile.read_text()), signal.SIGTERM)


def test_redis_deploy_installs_starts_requires_password_and_is_idempotent(redis_inventory):
    inventory, port, base = redis_inventory
    password = "redis-pw-MARKER-7f3a"
    env = {**os.environ, "T_REDIS_PASSWORD": password, "T_REDIS_URL": f"redis://:{password}@127.0.0.1:{port}/0"}
    run = [PYINFRA, "-y", str(inventory), "deploys/redis.py"]
    first = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    combined = first.stdout + first.stderr
    assert first.returncode == 0, combined[-3000:]
    assert "redis gate passed" in combined
    assert password not in combined
    assert password not in (base / "etc" / f"pgconverge-t{port}.conf").read_text()
    assert redis.Redis(port=port, password=password).ping() is True
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis.Redis(port=port, password=password).flushall()
    app_env = base / "app" / ".env"
    assert app_env.read_text() == f"DEBUG=false\nENABLE_CACHE=true\nREDIS_URL=redis://:{password}@127.0.0.1:{port}/0\n"
    assert oct(app_env.stat().st_mode & 0o777) == "0o600"
    second = subprocess.run([PYINFRA, str(inventory), "deploys/redis.py", "--dry"], cwd=REPO, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    table = (second.stdout + second.stderr).split("Detected changes:")[1].split("Detected changes may")[0]
    rows = [line for line in table.splitlines()[2:] if line.strip()]
    assert len(rows) == 9 and all(line.split()[-2:] == ["-", "-"] for line in rows), table


def test_nightly_backups_cover_every_database_of_a_fleet_each_in_its_own_folder(cron_db, fresh_db):
    """A backup host used to dump only $DATABASE_URL as `<env>-<database>-…`: one database of a fleet whose
    databases are all called `postgres`. Now one script, cron entry and folder per database host."""
    base = Path(tempfile.mkdtemp(prefix="pgconverge-backup-"))
    name = f"t{free_port()}"
    backup = {"backup_dir": f"{base}/dumps", "backup_retention": 2, "backup_config_dir": f"{base}/etc",
              "backup_bin_dir": f"{base}/bin"}
    inventory = base / "inventory.py"
    inventory.write_text(
        f"db = ([('@db/eu', {{'database_url_env': 'T_EU_URL'}}), ('@db/us', {{'database_url_env': 'T_US_URL'}})],"
        f" {{'environment': {name!r}}})\n"
        f"backup = ([('@local', {backup!r})], {{'role': 'backup', 'environment': {name!r}}})\n")
    env = {**os.environ, "T_EU_URL": cron_db, "T_US_URL": fresh_db}
    passwords = {url.split(":")[2].split("@")[0] for url in (cron_db, fresh_db)}
    scripts = {label: base / "bin" / f"pgconverge-backup-{name}-{label}" for label in ("db_eu", "db_us")}
    try:
        first = subprocess.run([PYINFRA, "-y", str(inventory), "deploys/backups.py"], cwd=REPO, env=env,
                               capture_output=True, text=True, stdin=subprocess.DEVNULL)
        output = first.stdout + first.stderr
        assert first.returncode == 0, output[-3000:]
        assert not any(p in output for p in passwords)
        crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
        for label, script in scripts.items():
            assert f"30 2 * * * {script}" in crontab
            assert oct((base / "etc" / f"backup-{name}-{label}.env").stat().st_mode & 0o777) == "0o600"
            for _ in range(3):
                subprocess.run([str(script)], check=True, capture_output=True, env={"PATH": os.environ["PATH"]})
        for label, url in (("db_eu", cron_db), ("db_us", fresh_db)):
            database = url.rsplit("/", 1)[1]
            dumps = sorted((base / "dumps" / name / label).glob(f"{name}-{label}-{database}-*-nightly.dump"))
            assert len(dumps) == 2  # retention, per database
            for dump in dumps:
                assert hashlib.sha256(dump.read_bytes()).hexdigest() in Path(f"{dump}.sha256").read_text()
        # a second run while one holds the database's lock stops at once and leaves the other's file alone
        with open(base / "dumps" / name / "db_eu" / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            busy = subprocess.run([str(scripts["db_eu"])], capture_output=True, text=True,
                                  env={"PATH": os.environ["PATH"]})
        assert busy.returncode == 1 and "another backup of this database is running" in busy.stderr
        second = subprocess.run([PYINFRA, str(inventory), "deploys/backups.py", "--dry"], cwd=REPO, env=env,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        table = (second.stdout + second.stderr).split("Detected changes:")[1].split("Detected changes may")[0]
        rows = [line for line in table.splitlines()[2:] if line.strip()]
        assert rows and all(line.split()[-2:] == ["-", "-"] for line in rows), table
    finally:
        subprocess.run(["sh", "-c", f"crontab -l | grep -v pgconverge-backup-{name} | crontab -"], check=False)


def test_lab_inventory_provisions_the_cache_the_backend_env_and_nightly_backups_on_local(cron_db):
    """`pyinfra inventory/lab.py deploys/redis.py` used to do nothing: @local had no cache, app or backup role."""
    base = Path(tempfile.mkdtemp(prefix="pgconverge-labinv-"))
    base.chmod(0o755)  # the redis user reaches its folders
    lab_dir, port, password = base / ".lab", free_port(), "cache-pw-MARKER-91c2"
    env = {**os.environ, "PGCONVERGE_LAB_DIR": str(lab_dir), "DATABASE_URL": cron_db,
           "CACHE_REDIS_PORT": str(port), "CACHE_REDIS_PASSWORD": password,
           "CACHE_REDIS_URL": f"redis://:{password}@127.0.0.1:{port}/0"}
    secrets = (password, cron_db.split(":")[2].split("@")[0])
    saved_crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout

    def deploy(name: str, *args: str) -> str:
        result = subprocess.run([PYINFRA, "-y", "inventory/lab.py", name, *args], cwd=REPO, env=env,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        assert not any(secret in output for secret in secrets)
        return output

    try:
        output = deploy("deploys/redis.py")
        assert "redis gate passed" in output
        assert redis.Redis(port=port, password=password).ping() is True
        backend_env = (lab_dir / "backend.env").read_text()
        assert backend_env == f"ENABLE_CACHE=true\nREDIS_URL=redis://:{password}@127.0.0.1:{port}/0\n"

        output = deploy("deploys/backups.py")
        assert "backup gate passed" in output
        nightly = base / "backups" / "nightly" / "lab" / "local"
        dumps = list(nightly.glob("lab-local-salesflow-*-nightly.dump"))
        assert len(dumps) == 1
        assert f"30 2 * * * {lab_dir / 'backup' / 'pgconverge-backup-lab-local'}" in subprocess.run(
            ["crontab", "-l"], capture_output=True, text=True).stdout
        again = deploy("deploys/backups.py")
        assert "Backup of local now" not in again and "backup gate passed" in again  # a proven script is not rerun
        assert len(list(nightly.glob("*.dump"))) == 1

        deploy("deploys/backups.py", "--data", "backups=absent")
        entries = [line for line in subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout.splitlines()
                   if not line.startswith("#")]  # pyinfra leaves its name comment behind
        assert not any(str(lab_dir) in line for line in entries), entries
        assert not (lab_dir / "backup" / "pgconverge-backup-lab-local").exists()
        assert dumps[0].exists()  # the dumps stay
    finally:
        subprocess.run(["crontab", "-"], input=saved_crontab, text=True, check=False)
        pidfile = lab_dir / "cache" / "run" / "pgconverge-cache.pid"
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
