"""Declared indexes as the server printed them, kept between runs: a fleet renders an index once per table shape
(operations.rendered_once), and a run that changes nothing finds the prints of the last one — by everything the
print depends on (the declared definition, the table's columns, types, collations and partition key, the
search_path, the extensions with their schemas and versions, the server's version). A file that cannot be read or
written is no cache, never an error."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from . import speccache

KEPT = 5000  # entries: the newest are kept


def path() -> Path:
    return speccache.folder().parent / "renders.json"


def load() -> dict:
    if not speccache.enabled():
        return {}
    try:
        data = json.loads(path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def keep(renders: dict) -> None:
    if not speccache.enabled():
        return
    target = path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        newest = dict(list(renders.items())[-KEPT:])
        with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False) as handle:
            json.dump(newest, handle)
        os.replace(handle.name, target)  # whole or not at all: a run beside it never reads half a file
    except OSError:
        return
