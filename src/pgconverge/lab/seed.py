"""The SalesFlow reference schema and deterministic synthetic data for the lab, tests and benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..errors import UserError
from ..secrets import mask

SQL_DIR = Path(__file__).resolve().parents[3] / "sql" / "schema"
TABLES = ("users", "leads", "message_templates", "message_events", "crm_notes", "rlhf_feedback_sessions")
SEED_MARK = "pgconverge-lab-seed"


@dataclass(frozen=True)
class Scale:
    users: int
    leads: int
    events: int
    notes: int
    sessions: int


SCALES = {
    "S": Scale(20, 2_000, 20_000, 2_000, 4_000),
    "M": Scale(100, 200_000, 1_000_000, 200_000, 200_000),
    "L": Scale(100, 200_000, 5_000_000, 200_000, 1_000_000),
    "XL": Scale(200, 1_000_000, 20_000_000, 1_000_000, 4_000_000),
}


def schema_sql() -> str:
    return (SQL_DIR / "001_tables.sql").read_text() + "\n" + (SQL_DIR / "002_constraints.sql").read_text()


def data_sql(scale: Scale, seed: int) -> str:
    values = {"seed": seed, "users": scale.users, "leads": scale.leads, "events": scale.events,
              "notes": scale.notes, "sessions": scale.sessions}
    text = (SQL_DIR / "seed_data.sql").read_text()
    for key in sorted(values, key=len, reverse=True):
        text = text.replace(f":{key}", str(int(values[key])))
    return text


def seeded_as(conn: psycopg.Connection) -> str | None:
    """The seed marker on table users, or None when the schema is not there."""
    row = conn.execute(
        "SELECT obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname = 'users'"
    ).fetchone()
    if row is None:
        return None
    return row[0] or "schema present, no seed marker"


def seed(database_url: str, scale_name: str, seed_value: int = 42, echo=print) -> dict[str, int]:
    """Create the schema and load data; a database that already holds the same seed is left as it is."""
    scale = SCALES[scale_name]
    wanted = f"{SEED_MARK} scale={scale_name} seed={seed_value}"
    try:
        conn = psycopg.connect(database_url, autocommit=True, application_name="pgconverge-seed")
    except psycopg.Error as exc:
        raise UserError(mask(f"cannot connect to the database: {exc}".strip())) from None
    with conn:
        current = seeded_as(conn)
        if current == wanted:
            echo(f"already seeded ({wanted}) — nothing to do")
            return _counts(conn)
        if current is not None:
            raise UserError(
                f"database already holds SalesFlow tables ({current}) — seed a fresh database instead"
            )
        started = time.monotonic()
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            conn.execute("SET LOCAL work_mem = '256MB'")
            conn.execute((SQL_DIR / "001_tables.sql").read_text())
            conn.execute(data_sql(scale, seed_value))
            conn.execute((SQL_DIR / "002_constraints.sql").read_text())
            conn.execute(f"COMMENT ON TABLE users IS '{wanted}'")
        conn.execute("VACUUM (ANALYZE) " + ", ".join(TABLES))
        counts = _counts(conn)
        seconds = time.monotonic() - started
    for table, count in counts.items():
        echo(f"{table:<24} {count:>12,}")
    echo(f"seeded scale {scale_name} (seed {seed_value}) in {seconds:.1f} s")
    return counts


def _counts(conn: psycopg.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]
