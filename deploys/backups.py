"""Nightly verified backups (pg_dump -Fc, pg_restore --list, checksum, retention) on the backup hosts."""

from pyinfra import host

from pgconverge.provision import nightly_backups

if "backup" in host.groups or host.data.get("role") == "backup":
    nightly_backups()
