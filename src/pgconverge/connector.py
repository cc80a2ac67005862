"""`@db/<name>`: a managed database (e.g. Supabase) reached from the control node, one host per database.

pyinfra allows `@local` only once per inventory; this LocalConnector gives each database target its own host name
while shell steps (pg_dump for backups) still run on the control node.
"""

from __future__ import annotations

from collections.abc import Iterator

from pyinfra.api.exceptions import InventoryError
from pyinfra.connectors.local import LocalConnector


class DatabaseTargetConnector(LocalConnector):
    @staticmethod
    def make_names_data(name: str | None = None) -> Iterator[tuple[str, dict, list[str]]]:
        if not name:
            raise InventoryError("@db needs a name, e.g. @db/prod-main")
        yield f"@db/{name}", {}, ["@db"]
