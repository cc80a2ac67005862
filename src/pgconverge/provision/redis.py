"""Redis for the backend cache and the backend's cache settings: pyinfra operations and their gates.

Secrets come from environment variables named in host data. Redis gets only the SHA-256 of its password
(an ACL line), so the config file and any diff of it carry no secret.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from io import StringIO
from typing import Any

import redis
from pyinfra import host, logger
from pyinfra.api import FactBase, operation
from pyinfra.api.command import PyinfraCommand, StringCommand
from pyinfra.facts.files import Directory, FileContents
from pyinfra.operations import apt, files, systemd

from ..errors import UserError
from ..secrets import from_env, mask
from .envfile import env_file

DANGEROUS_COMMANDS = ("flushall", "flushdb", "debug", "keys", "shutdown", "migrate")


class ProcessRunning(FactBase):
    """Whether the process in a pidfile is alive."""

    def command(self, pidfile: str) -> str:
        quoted = shlex.quote(pidfile)
        return f"if [ -s {quoted} ] && kill -0 \"$(cat {quoted})\" 2>/dev/null; then echo yes; else echo no; fi"

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[0].strip() == "yes"


def secret_from_env(data_key: str) -> str:
    """The secret held by the environment variable that host data names under `data_key`."""
    try:
        return from_env(host.data.get(data_key), f"{host.name} ({data_key})")
    except UserError as exc:
        raise SystemExit(str(exc)) from None


def redis_settings() -> dict[str, Any]:
    instance = host.data.get("redis_instance") or "app"
    config_dir = host.data.get("redis_config_dir") or "/etc/redis"
    run_dir = host.data.get("redis_run_dir") or "/var/run/redis"
    return {
        "instance": instance,
        "bind": host.data.get("redis_bind") or "127.0.0.1",
        "port": int(host.data.get("redis_port") or 6379),
        "maxmemory": host.data.get("redis_maxmemory") or "256mb",
        "policy": host.data.get("redis_maxmemory_policy") or "allkeys-lru",
        "persistence": host.data.get("redis_persistence") or "none",
        "config": f"{config_dir}/pgconverge-{instance}.conf",
        "data_dir": host.data.get("redis_data_dir") or f"/var/lib/redis/pgconverge-{instance}",
        "pidfile": f"{run_dir}/pgconverge-{instance}.pid",
        "run_dir": run_dir,
        "logfile": host.data.get("redis_logfile") or f"/var/log/redis/pgconverge-{instance}.log",
        "user": host.data.get("redis_user") or "redis",
        # systemd unit where systemd runs (auto), or a plain process (the lab, containers)
        "supervisor": host.data.get("redis_supervisor") or "auto",
    }


def render_redis_config(s: dict[str, Any], password: str, daemonize: bool) -> str:
    persistence = {
        "none": ["save \"\"", "appendonly no"],
        "rdb": ["save 900 1 300 10 60 10000", "appendonly no"],
        "aof": ["save \"\"", "appendonly yes", "appendfsync everysec"],
    }[s["persistence"]]
    acl = " ".join(f"-{c}" for c in DANGEROUS_COMMANDS)
    lines = [
        "# Managed by pgconverge (deploys/redis.py): changes here are overwritten.",
        f"bind {s['bind']}",
        f"port {s['port']}",
        "protected-mode yes",
        f"daemonize {'yes' if daemonize else 'no'}",
        "supervised systemd" if not daemonize else "supervised no",
        f"pidfile {s['pidfile']}",
        f"logfile {s['logfile']}",
        f"dir {s['data_dir']}",
        f"maxmemory {s['maxmemory']}",
        f"maxmemory-policy {s['policy']}",
        *persistence,
        # Only the password's hash is stored; dangerous commands are not available to the app.
        f"user default on #{hashlib.sha256(password.encode()).hexdigest()} ~* &* +@all {acl}",
        "",
    ]
    return "\n".join(lines)


def render_redis_unit(s: dict[str, Any]) -> str:
    return "\n".join([
        "[Unit]",
        f"Description=Redis cache ({s['instance']}), managed by pgconverge",
        "After=network.target",
        "",
        "[Service]",
        "Type=notify",
        f"ExecStart=/usr/bin/redis-server {s['config']}",
        f"User={s['user']}",
        f"Group={s['user']}",
        f"RuntimeDirectory={os.path.basename(s['run_dir'])}",
        "Restart=on-failure",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


@operation()
def redis_process(config: str, pidfile: str, config_sha256: str, user: str):
    """
    Keep redis-server running from `config` on hosts without systemd; restart it when the config changed.

    + config: the config file to run
    + pidfile: the pidfile the config names
    + config_sha256: hash of the desired config, stamped beside the pidfile at start
    + user: the user redis runs as
    """
    stamp = f"{pidfile}.config-sha256"
    running = host.get_fact(ProcessRunning, pidfile=pidfile)
    stamped = host.get_fact(FileContents, path=stamp)
    if running and stamped and stamped[0].strip() == config_sha256:
        host.noop("redis-server already running with the declared config")
        return
    pid, conf, stamp_q = shlex.quote(pidfile), shlex.quote(config), shlex.quote(stamp)
    if running:
        yield StringCommand(f"kill \"$(cat {pid})\"; for i in $(seq 50); do kill -0 \"$(cat {pid} 2>/dev/null)\""
                            f" 2>/dev/null || break; sleep 0.1; done")
    yield StringCommand(f"runuser -u {shlex.quote(user)} -- redis-server {conf}" if user != "root"
                        else f"redis-server {conf}")
    yield StringCommand(f"echo {config_sha256} > {stamp_q}")


class RedisGateCommand(PyinfraCommand):
    """Checks from the control node with redis-py: auth, refusal without it, running config, memory and hit rate."""

    def __init__(self, address: str, settings: dict[str, Any], password: str):
        super().__init__()
        self.address = address
        self.settings = settings
        self.password = password

    def __repr__(self) -> str:
        return f"RedisGateCommand({self.address}:{self.settings['port']})"

    def execute(self, state, host, connector_arguments) -> bool:
        s = self.settings
        problems: list[str] = []
        try:
            client = redis.Redis(host=self.address, port=s["port"], password=self.password, socket_timeout=5)
            client.ping()
        except redis.RedisError as exc:
            host.log_styled(mask(f"redis gate: authenticated PING to {self.address}:{s['port']} failed: {exc}"),
                            fg="red", log_func=logger.error)
            return False
        try:
            redis.Redis(host=self.address, port=s["port"], socket_timeout=5).ping()
            problems.append("a client without the password was answered")
        except redis.AuthenticationError:
            pass
        except redis.ResponseError as exc:
            if "NOAUTH" not in str(exc):
                problems.append(f"unauthenticated client got {exc}")
        declared = {"bind": s["bind"], "port": str(s["port"]), "maxmemory-policy": s["policy"],
                    "protected-mode": "yes", "appendonly": "yes" if s["persistence"] == "aof" else "no"}
        running = {k: str(client.config_get(k).get(k, "")) for k in declared}
        for key, value in declared.items():
            if running[key] != value:
                problems.append(f"running {key} is {running[key]!r}, declared {value!r}")
        info = client.info()
        hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
        rate = f"{100 * hits / (hits + misses):.1f} %" if hits + misses else "no traffic yet"
        host.log(f"redis: used memory {info.get('used_memory_human')} of {s['maxmemory']}, keyspace hit rate {rate}")
        if hits + misses >= 1000 and hits / (hits + misses) < 0.70:
            problems.append(f"keyspace hit rate {rate} is below the runbook's 70 %")
        if problems:
            host.log_styled(mask("redis gate failed: " + "; ".join(problems)), fg="red", log_func=logger.error)
            return False
        host.log("redis gate passed: PING with password, refused without, running config as declared")
        return True


@operation()
def redis_gates(address: str):
    """
    Run the Redis gates from the control node at execution time (read-only, so preparing shows no change).

    + address: where the control node reaches this host's Redis
    """
    from pyinfra import state

    if not state.is_executing:
        host.log(f"redis gates will check {address}")
        return
    yield RedisGateCommand(address, redis_settings(), secret_from_env("redis_password_env"))


def redis_server() -> None:
    """Install Redis, write its config, keep it running (systemd or not), then check it."""
    s = redis_settings()
    password = secret_from_env("redis_password_env")
    apt.packages(name="Install redis-server", packages=["redis-server"])
    if s["supervisor"] not in ("auto", "systemd", "process"):
        raise SystemExit(f"{host.name}: redis_supervisor is {s['supervisor']!r} — use auto, systemd or process")
    systemd_host = s["supervisor"] == "systemd" or (
        s["supervisor"] == "auto" and bool(host.get_fact(Directory, path="/run/systemd/system")))
    config = render_redis_config(s, password, daemonize=not systemd_host)
    for path in (s["data_dir"], s["run_dir"], os.path.dirname(s["logfile"])):
        files.directory(name=f"Directory {path}", path=path, user=s["user"], group=s["user"], mode="750")
    files.directory(name=f"Directory {os.path.dirname(s['config'])}", path=os.path.dirname(s["config"]))
    written = files.put(name=f"Redis config {s['config']}", src=StringIO(config), dest=s["config"],
                        user="root", group=s["user"], mode="640")
    if systemd_host:
        unit = files.put(name="systemd unit", src=StringIO(render_redis_unit(s)),
                         dest=f"/etc/systemd/system/redis-pgconverge-{s['instance']}.service", mode="644")
        systemd.service(name="Redis running and enabled", service=f"redis-pgconverge-{s['instance']}.service",
                        running=True, enabled=True, daemon_reload=unit.will_change,
                        restarted=written.will_change)
    else:
        redis_process(name="Redis running (no systemd)", config=s["config"], pidfile=s["pidfile"],
                      config_sha256=hashlib.sha256(config.encode()).hexdigest(), user=s["user"])
    address = host.data.get("redis_address") or ("127.0.0.1" if host.name.startswith("@") else host.name)
    redis_gates(name="Redis gates", address=address)


def backend_cache(enable: bool = True) -> None:
    """REDIS_URL and ENABLE_CACHE in the backend's env file; rollback sets ENABLE_CACHE=false."""
    path = host.data.get("backend_env_file")
    if not path:
        return
    values = {"REDIS_URL": host.data.get("redis_url_env") or "REDIS_URL"} if enable else {}
    env_file(name=f"Backend cache settings in {path}", path=path, values_env=values,
             fixed={"ENABLE_CACHE": "true" if enable else "false"})
