"""A dotenv file on an app host, values from the control node's environment (never shown)."""

from __future__ import annotations

import os
import re
from io import StringIO

from pyinfra import host
from pyinfra.api import operation
from pyinfra.facts.files import FileContents
from pyinfra.operations import files

from ..secrets import remember

SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@operation()
def env_file(path: str, values_env: dict[str, str], fixed: dict[str, str] | None = None):
    """
    Set keys in a dotenv file (mode 0600), values from environment variables; other lines stay as they are.

    + path: the env file on the app host
    + values_env: key → name of the control node's environment variable holding the value
    + fixed: key → literal value (non-secret settings such as ENABLE_CACHE)
    """
    wanted: dict[str, str] = dict(fixed or {})
    for key, var in values_env.items():
        value = os.environ.get(var, "")
        if not value:
            raise SystemExit(f"{host.name}: environment variable {var} for {key} is not set — export it first")
        remember(value)
        wanted[key] = value
    current = host.get_fact(FileContents, path=path) or []
    lines, seen = [], set()
    for line in current:
        key = line.split("=", 1)[0].strip()
        if key in wanted:
            lines.append(f"{key}={wanted[key]}")
            seen.add(key)
        else:
            lines.append(line)
    lines += [f"{k}={v}" for k, v in wanted.items() if k not in seen]
    content = "\n".join(lines) + "\n"
    if current and "\n".join(current) + "\n" == content:
        host.noop(f"{path} already has {', '.join(sorted(wanted))}")
        return
    host.log(f"{path}: set {', '.join(sorted(wanted))} (values not shown)")
    yield from files.put._inner(src=StringIO(content), dest=path, mode="600")
