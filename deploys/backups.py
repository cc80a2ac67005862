"""Nightly verified backups (pg_dump -Fc, pg_restore --list, checksum, retention) on the backup hosts.

`--data backups=absent` removes the cron entry and the script (the dumps stay).
"""

from pyinfra import host

from pgconverge.provision import nightly_backups

if "backup" in host.groups or host.data.get("role") == "backup":
    wanted = str(host.data.get("backups") or "present")
    if wanted not in ("present", "absent"):
        raise SystemExit(f"--data backups={wanted}: use present or absent")
    nightly_backups(present=wanted == "present")
