"""Fleets: the databases of an inventory in waves — a canary first, then waves that stop the rollout when too many
of their hosts fail — run as plain pyinfra (`--limit` per wave or shard), each host writing a JSON summary that
one report merges. Sharding hands each CI job its slice of a wave."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .report import database_hosts
from .secrets import mask
from .session import summary_file


@dataclass(frozen=True)
class Member:
    host: str
    wave: int


def waves(inventory: Path, percentages: tuple[float, ...] = (1.0, 100.0)) -> list[Member]:
    """Every database host with its wave: `rollout_wave` from its host data, else by cumulative percentages of
    the hosts without one (sorted by name; the default: one canary, then all the rest)."""
    hosts = database_hosts(inventory)
    members, unassigned = [], []
    for name, data in hosts:
        wave = data.get("rollout_wave")
        if wave is None:
            unassigned.append(name)
        elif not isinstance(wave, int) or wave < 0:
            raise UserError(f"{inventory}: host {name} has rollout_wave {wave!r} — use 0 (the canary), 1, 2, …")
        else:
            members.append(Member(name, wave))
    unassigned.sort()
    taken = 0
    for wave, percentage in enumerate(percentages):
        upto = len(unassigned) if percentage >= 100 else max(taken + 1, math.ceil(len(unassigned) * percentage / 100))
        members += [Member(name, wave) for name in unassigned[taken:upto]]
        taken = upto
    if not members:
        raise UserError(f"{inventory}: no database hosts (hosts with database_url_env) — nothing to roll out")
    return sorted(members, key=lambda m: (m.wave, m.host))


def shard(members: list[Member], wave: int, shards: int, index: int) -> list[str]:
    """The hosts of one wave that CI job `index` of `shards` converges: round-robin over the sorted hosts, so the
    shards together cover the wave exactly once and differ in size by one at most."""
    if shards < 1 or not 0 <= index < shards:
        raise UserError(f"--shards {shards} --index {index}: index must be 0 … shards-1")
    hosts = sorted(m.host for m in members if m.wave == wave)
    return hosts[index::shards]


def read_summaries(folders: list[Path]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.json")):
            try:
                document = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a summary being written, or not ours
            if isinstance(document, dict) and "host" in document and "result" in document:
                found[document["host"]] = document
    return found


def failed(summary: dict[str, Any] | None) -> bool:
    return summary is None or summary.get("result") != "ok"


def to_markdown(members: list[Member], summaries: dict[str, dict[str, Any]], title: str = "Fleet rollout",
                stopped: str | None = None) -> str:
    """One page: where the fleet stands, per wave and per host."""
    lines = [f"## {title}", ""]
    done = [m for m in members if m.host in summaries]
    lines.append(f"{len(done)} of {len(members)} databases ran; {sum(failed(summaries[m.host]) for m in done)} failed"
                 + (f". **Stopped:** {stopped}" if stopped else "."))
    lines += ["", "| wave | host | result | applied | gates | drift | duration | failure |",
              "|---|---|---|---|---|---|---|---|"]
    for member in members:
        s = summaries.get(member.host)
        if s is None:
            lines.append(f"| {member.wave} | {member.host} | not run | | | | | |")
            continue
        cells = [str(member.wave), member.host, s["result"], str(s.get("applied", 0)),
                 f"{s.get('gates_passed', 0)}/{s.get('gates', 0)}", str(s.get("drift", 0)), f"{s.get('duration_s', 0)} s",
                 s.get("failure") or ""]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return mask("\n".join(lines) + "\n")


def rollout(inventory: Path, deploy: str, summary_dir: Path, max_fail_percentage: float = 0.0,
            percentages: tuple[float, ...] = (1.0, 100.0), extra: tuple[str, ...] = (), log=print,
            cwd: Path | None = None) -> tuple[bool, str]:
    """Converge wave after wave with the real pyinfra CLI: the canary's hosts must all pass (steps and gates) before
    wave 1; a later wave that fails on more than max_fail_percentage of its hosts stops the rollout. Returns (whether
    every wave ran and passed, the Markdown report)."""
    members = waves(inventory, percentages)
    pyinfra = str(Path(sys.executable).parent / "pyinfra")
    stopped = None
    for wave in sorted({m.wave for m in members}):
        hosts = [m.host for m in members if m.wave == wave]
        started = time.monotonic()
        log(f"wave {wave}: {len(hosts)} databases — {', '.join(hosts[:5])}{' …' if len(hosts) > 5 else ''}")
        for name in hosts:  # a summary left by an earlier rollout must not pass for this one
            summary_file(summary_dir, name).unlink(missing_ok=True)
        argv = [pyinfra, str(inventory), deploy, "-y", *[a for h in hosts for a in ("--limit", h)], *extra]
        env = {**os.environ, "PGCONVERGE_SUMMARY_DIR": str(summary_dir)}
        subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        summaries = read_summaries([summary_dir])
        bad = [h for h in hosts if failed(summaries.get(h))]
        share = 100.0 * len(bad) / len(hosts)
        log(f"wave {wave}: {len(hosts) - len(bad)} passed, {len(bad)} failed ({share:.0f} %) in"
            f" {time.monotonic() - started:.1f} s")
        if wave == 0 and bad:
            stopped = f"the canary failed ({', '.join(bad)}): no later wave started"
            break
        if share > max_fail_percentage:
            stopped = (f"wave {wave}: {len(bad)} of {len(hosts)} failed ({share:.0f} %), more than max_fail_percentage"
                       f" {max_fail_percentage:g} %: no later wave started")
            break
    report = to_markdown(members, read_summaries([summary_dir]), f"Fleet rollout: {deploy}", stopped)
    return stopped is None, report
