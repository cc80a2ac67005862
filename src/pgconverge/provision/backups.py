"""Nightly backups on the backup host: a verified pg_dump script and a cron entry per database, and their gate."""

from __future__ import annotations

import shlex
from io import StringIO
from typing import Any

from pyinfra import host, logger
from pyinfra.api import FactBase, operation
from pyinfra.api.command import FunctionCommand
from pyinfra.facts.server import Command
from pyinfra.operations import apt, crontab, files, server

from .envfile import SAFE_NAME, env_file


def backup_targets(environment: str) -> list[tuple[str, str]]:
    """(label, URL variable) of every database host of this inventory in `environment`: a fleet's databases are
    all called `postgres`, so each gets its own script, cron entry, folder and file names."""
    from pyinfra import inventory

    found: dict[str, str] = {}
    for target in inventory:
        if target.data.get("database_url_env") and SAFE_NAME.sub("_", target.data.get("environment") or "env") == environment:
            found[SAFE_NAME.sub("_", target.name.strip("@"))] = target.data.get("database_url_env")
    return sorted(found.items())


def nightly_backups(present: bool = True) -> None:
    """A backup script and a cron entry on the backup host for each database host of its environment: pg_dump -Fc,
    verified, kept under retention, in <nightly_backup_dir>/<environment>/<database host>/.

    `present=False` removes the cron entries and the scripts (the dumps stay).
    """
    backup_dir = host.data.get("nightly_backup_dir") or host.data.get("backup_dir") or "/var/backups/pgconverge"
    retention = int(host.data.get("backup_retention") or 7)
    environment = SAFE_NAME.sub("_", host.data.get("environment") or "env")
    config_dir = host.data.get("backup_config_dir") or "/etc/pgconverge"
    bin_dir = host.data.get("backup_bin_dir") or "/usr/local/bin"
    targets = backup_targets(environment)
    if not targets:
        raise SystemExit(f"{host.name}: no database host of environment {environment} in this inventory names a"
                         " database_url_env — add the databases this host should back up")
    # pg_dump refuses a server newer than itself: the client of the servers' major (host data postgres_major)
    major = host.data.get("postgres_major")
    pg_bin = f"/usr/lib/postgresql/{int(major)}/bin/" if major else ""
    if present:
        install_client(major)
        files.directory(name="Config directory", path=config_dir, mode="700")
    for label, url_env in targets:
        script = f"{bin_dir}/pgconverge-backup-{environment}-{label}"
        cron_name = f"pgconverge-backup-{environment}-{label}"
        if not present:
            crontab.crontab(name=f"No nightly backup entry for {label}", command=script, present=False,
                            cron_name=cron_name)
            files.file(name=f"No backup script {script}", path=script, present=False)
            continue
        dump_dir, prefix = f"{backup_dir}/{environment}/{label}", f"{environment}-{label}-"
        env_path = f"{config_dir}/backup-{environment}-{label}.env"
        files.directory(name=f"Backup directory {dump_dir}", path=dump_dir, mode="700")
        env_file(name=f"Backup connection in {env_path}", path=env_path, values_env={"DATABASE_URL": url_env})
        written = files.put(name=f"Backup script {script}", src=StringIO(render_backup_script(
            dump_dir, prefix, retention, env_path, pg_bin)), dest=script, mode="755")
        crontab.crontab(name=f"Nightly backup of {label} at 02:30", command=script, minute="30", hour="2",
                        cron_name=cron_name)
        if host.data.get("backup_run_now"):
            # a backup host proves a new or changed script at once instead of at 02:30
            if written.will_change or not host.get_fact(NewestBackup, backup_dir=dump_dir, prefix=prefix):
                server.shell(name=f"Backup of {label} now (backup_run_now: new script or no backup yet)",
                             commands=[shlex.quote(script)])
            backup_gate(name=f"Newest nightly backup of {label} verified", backup_dir=dump_dir, prefix=prefix)


class NewestBackup(FactBase):
    """The newest nightly dump in a folder and whether its .sha256 matches."""

    def command(self, backup_dir: str, prefix: str) -> str:
        d = shlex.quote(backup_dir)
        return (f"f=$(ls -1t {d}/{shlex.quote(prefix)}*-nightly.dump 2>/dev/null | head -n 1); "
                f"if [ -z \"$f\" ]; then echo none; else echo \"$f\"; stat -c %s \"$f\"; "
                f"(cd {d} && sha256sum --quiet -c \"$(basename \"$f\").sha256\" >/dev/null 2>&1"
                f" && echo ok || echo mismatch); fi")

    def process(self, output: list[str]) -> dict[str, Any]:
        if not output or output[0].strip() == "none":
            return {}
        return {"path": output[0].strip(), "bytes": int(output[1]), "checksum": output[2].strip()}


@operation(is_idempotent=False)
def backup_gate(backup_dir: str, prefix: str):
    """
    Fail the host unless the newest nightly dump exists and matches its .sha256 (checked when executing).

    + backup_dir: the folder of one database's nightly dumps
    + prefix: the start of their file names
    """
    from pyinfra import state

    if not state.is_executing:
        host.log(f"backup gate will check the newest dump in {backup_dir}")
        return
    yield FunctionCommand(_check_newest_backup, (backup_dir, prefix), {})


def _check_newest_backup(state, host, backup_dir: str, prefix: str) -> bool:
    newest = host.get_fact(NewestBackup, backup_dir=backup_dir, prefix=prefix)
    if not newest:
        host.log_styled(f"backup gate failed: no {prefix}*-nightly.dump in {backup_dir}", fg="red",
                        log_func=logger.error)
        return False
    if newest["checksum"] != "ok":
        host.log_styled(f"backup gate failed: {newest['path']} does not match its .sha256", fg="red",
                        log_func=logger.error)
        return False
    host.log(f"backup gate passed: {newest['path']} ({newest['bytes']:,} bytes, sha256 verified,"
             " pg_restore --list read it)")
    return True


def install_client(major: Any) -> None:
    """postgresql-client-N for the declared server major, from the PostgreSQL apt repository where the distribution
    does not have it (Debian 12 has 15 only); without a declared major, the distribution's default client."""
    if not major:
        apt.packages(name="Install PostgreSQL client and cron", packages=["postgresql-client", "cron"])
        return
    package = f"postgresql-client-{int(major)}"
    apt.packages(name="Install postgresql-common and cron", packages=["postgresql-common", "cron"])
    known = host.get_fact(Command, command=f"apt-cache show {package} >/dev/null 2>&1 && echo known || echo unknown")
    if known != "known":
        server.shell(name=f"PostgreSQL apt repository ({package} is not in the distribution)",
                     commands=["/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y"])
    apt.packages(name=f"Install {package} (the servers' major)", packages=[package])


def render_backup_script(dump_dir: str, prefix: str, retention: int, env_path: str, pg_bin: str = "") -> str:
    """`pg_bin`: the folder of the client matching the servers' major ("" = PATH)."""
    d = shlex.quote(dump_dir)
    return f"""#!/bin/sh
# Managed by pgconverge (deploys/backups.py): nightly pg_dump -Fc, verified with pg_restore --list, checksummed.
set -eu
set -a; . {shlex.quote(env_path)}; set +a
# one run at a time per database; then a partial file is a dead run's and can go
exec 9>{d}/.lock
flock -n 9 || {{ echo "another backup of this database is running" >&2; exit 1; }}
rm -f {d}/*.dump.partial
stamp=$(date -u +%Y%m%dT%H%M%S%6NZ)
db=$({pg_bin}psql "$DATABASE_URL" -Atc 'SELECT current_database()')
file={d}/{prefix}$db-$stamp-nightly.dump
{pg_bin}pg_dump -Fc --exclude-table-data="cron.*" -f "$file.partial" "$DATABASE_URL"
{pg_bin}pg_restore --list "$file.partial" > /dev/null
mv "$file.partial" "$file"
sha256sum "$file" > "$file.sha256"
ls -1t {d}/{prefix}*-nightly.dump | tail -n +{retention + 1} | while read -r old; do
  rm -f "$old" "$old.sha256"
done
"""
