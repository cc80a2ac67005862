"""The validated spec, kept by content: a run whose phases.yml, SQL files and engine are unchanged since the last
run skips JSON Schema validation and SQL parsing (and the imports of jsonschema and pglast) — a no-op converge is
mostly start-up. Any change of phases.yml, of a file it names or of the engine's code is a miss; a cache that
cannot be read or written is no cache, never an error."""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import tempfile
from pathlib import Path
from typing import Any

OFF_ENV = "PGCONVERGE_SPEC_CACHE"  # "off": always validate
DIR_ENV = "PGCONVERGE_CACHE_DIR"
KEPT = 64  # entries: the newest are kept, a test suite's thousand temporary phases.yml are not
_PACKAGE = Path(__file__).resolve().parent


def folder() -> Path:
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pgconverge" / "specs"


def enabled() -> bool:
    return os.environ.get(OFF_ENV, "").lower() not in ("off", "0", "no", "false")


def engine_fingerprint() -> str:
    """The engine's code as it is now (size and modification time of each module and schema): an upgrade or an edit
    of a kind's builder is a miss."""
    parts = []
    for file in sorted(_PACKAGE.rglob("*")):
        if file.suffix in (".py", ".json") and "__pycache__" not in file.parts:
            info = file.stat()
            parts.append(f"{file.relative_to(_PACKAGE)}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def key(path: Path, text: str) -> str:
    return hashlib.sha256(f"{engine_fingerprint()}\n{path.resolve()}\n{text}".encode()).hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _private(file: Path) -> bool:
    """A pickle is code: read only our own, from a folder nobody else may write to."""
    info, parent = file.stat(), file.parent.stat()
    return (info.st_uid == os.getuid() and parent.st_uid == os.getuid()
            and not parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def fetch(entry: str) -> Any | None:
    """The spec kept under this key, when every SQL file it was built from is unchanged; else None."""
    if not enabled():
        return None
    file = folder() / entry
    try:
        if not _private(file):
            return None
        files, spec = pickle.loads(file.read_bytes())
        if all(file_digest(Path(name)) == digest for name, digest in files):
            return spec
    except Exception:  # a missing, stale, foreign or corrupt entry is a miss
        return None
    return None


def keep(entry: str, spec: Any, files: list[Path]) -> None:
    if not enabled():
        return
    target = folder()
    try:
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = pickle.dumps(([(str(f), file_digest(f)) for f in files], spec))
        with tempfile.NamedTemporaryFile(dir=target, delete=False) as handle:
            handle.write(payload)
        os.replace(handle.name, target / entry)  # whole or not at all: a run beside it never reads half an entry
        for old in sorted(target.iterdir(), key=lambda f: f.stat().st_mtime_ns, reverse=True)[KEPT:]:
            old.unlink(missing_ok=True)
    except Exception:  # read-only home, full disk: the next run validates again
        return
