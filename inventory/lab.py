"""The local lab (`pgconverge lab up`): every role on this machine, everything it writes under ./.lab/.

- database: reached through DATABASE_URL (deploys/all.py, phase*.py, verify.py, rollback.py);
- cache: a Redis of its own that deploys/redis.py provisions (config, process, gates) on CACHE_REDIS_PORT;
- app: the backend's env file .lab/backend.env gets REDIS_URL and ENABLE_CACHE (deploys/redis.py);
- backup: the nightly backup script, its cron entry and a first backup now (deploys/backups.py).

`make demo` exports the variables from ./.lab/env (mode 0600); set them yourself to point at other servers.
$PGCONVERGE_LAB_DIR moves the lab's folder (the tests use a scratch one).
"""

import os
from pathlib import Path

LAB = Path(os.environ.get("PGCONVERGE_LAB_DIR") or Path(__file__).resolve().parent.parent / ".lab").resolve()
CACHE = LAB / "cache"

local = {
    "environment": "lab",
    # database
    "database_url_env": "DATABASE_URL",
    "backup_retention": 3,  # pre-change backups under ./backups/lab/local/ ($PGCONVERGE_BACKUP_DIR moves them)
    # cache: kept inside the lab's folder, run as a process (no systemd unit on a developer's machine)
    "redis_instance": "cache",
    "redis_port": int(os.environ.get("CACHE_REDIS_PORT") or 6390),
    "redis_password_env": "CACHE_REDIS_PASSWORD",
    "redis_config_dir": str(CACHE / "etc"),
    "redis_run_dir": str(CACHE / "run"),
    "redis_data_dir": str(CACHE / "data"),
    "redis_logfile": str(CACHE / "log" / "redis.log"),
    "redis_supervisor": "process",
    # app: the backend reaches the provisioned cache
    "backend_env_file": str(LAB / "backend.env"),
    "redis_url_env": "CACHE_REDIS_URL",
    # backup host: a nightly script per database host (here: itself) and its env file in the lab, the dumps in
    # ./backups/nightly/lab/local/
    "nightly_backup_dir": str(LAB.parent / "backups" / "nightly"),
    "backup_config_dir": str(LAB / "backup"),
    "backup_bin_dir": str(LAB / "backup"),
    "backup_run_now": True,
}

db = [("@local", local)]
cache = [("@local", local)]
app = [("@local", local)]
backup = [("@local", local)]
