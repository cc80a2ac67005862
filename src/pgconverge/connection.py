"""Reaching a database: an unusable URL or a failed connection is one masked line; a run needs a session of its own
on a primary that takes writes — a transaction pooler, a hot standby or read-only defaults are refused before any
backup or statement."""

from __future__ import annotations

import contextlib

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import UserError
from .secrets import mask, remember_url

# Percent-encodings a user needs for the characters that break a connection URL's password.
ENCODINGS = "@ → %40, : → %3A, / → %2F, % → %25, space → %20"


class ConnectionFailed(UserError):
    """The database could not be reached, or not in a way a run can use."""


def parse(url: str, where: str = "the database") -> dict:
    """libpq's own reading of the URL; an unparseable one is a line that does not echo it (its password may be raw)."""
    remember_url(url)
    try:
        return conninfo_to_dict(url)
    except psycopg.Error:
        raise ConnectionFailed(f"{where}: its connection URL is not a valid PostgreSQL URL — percent-encode special"
                               f" characters of the user and password ({ENCODINGS})") from None


def masked_user(user: str | None) -> str:
    """Enough of the login to recognise it, not enough to hand it on (a pooler's user carries the project ref)."""
    if not user:
        return "the default user"
    return user[:2] + "****" if len(user) > 2 else "****"


def describe(params: dict) -> str:
    host = params.get("host") or params.get("hostaddr") or "the local socket"
    port = params.get("port") or "5432"
    return f"{host}:{port}, database {params.get('dbname') or '(default)'}, user {masked_user(params.get('user'))}"


def server_reason(exc: BaseException, user: str | None = None) -> str:
    """The server's or libpq's reason, without libpq's preamble ('connection to server at … failed:')."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = text.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
    if user:
        text = text.replace(f'"{user}"', f'"{masked_user(user)}"')
    return mask(text)


def open_connection(url: str, application_name: str = "pgconverge", where: str = "the database",
                    autocommit: bool = True) -> psycopg.Connection:
    params = parse(url, where)
    try:
        return psycopg.connect(url, autocommit=autocommit, application_name=application_name, connect_timeout=10)
    except psycopg.Error as exc:
        raise ConnectionFailed(f"cannot connect to {where} ({describe(params)}): "
                               f"{server_reason(exc, params.get('user'))}") from None


def _backend_pid(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    return int(row[0]) if row else 0


def behind_a_pooler(url: str, conn: psycopg.Connection) -> bool:
    """True behind a connection pooler. A pooler hands its clients cancel keys of its own, so the backend pid the
    connection announced is not the server session's; and in transaction mode two client connections may run on
    one server session, or one client connection move between server sessions."""
    first = _backend_pid(conn)
    if first != conn.info.backend_pid:
        return True
    with psycopg.connect(url, autocommit=True, application_name="pgconverge-check", connect_timeout=10) as other:
        beside = _backend_pid(other)
    return first == beside or _backend_pid(conn) != first


def read_only_reason(conn: psycopg.Connection) -> str | None:
    """Why this login cannot write here, in one line naming where it is set; None when it can."""
    row = conn.execute("SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')::bool").fetchone()
    if not row:
        return None
    if row[0]:
        return "this is a read replica (hot standby, pg_is_in_recovery() is true) — point the run at the primary"
    if not row[1]:
        return None
    # only then: pg_settings builds every setting's row, a cost each database of a fleet would pay
    source, user, database = conn.execute(
        "SELECT s.source, current_user, current_database() FROM pg_settings s"
        " WHERE s.name = 'default_transaction_read_only'").fetchone() or ("", "", "")
    where = {
        "user": f"for role {user}: ALTER ROLE {user} RESET default_transaction_read_only",
        "database": f"for database {database}: ALTER DATABASE {database} RESET default_transaction_read_only",
        "database user": (f"for role {user} in database {database}:"
                          f" ALTER ROLE {user} IN DATABASE {database} RESET default_transaction_read_only"),
        "configuration file": "in postgresql.conf (or a file it includes)",
    }.get(source, f"by the connection ({source}: the URL's options or PGOPTIONS)")
    return (f"default_transaction_read_only is on, set {where} — connect as a role that may write, or reset the"
            " setting there")


def check_session(url: str, conn: psycopg.Connection, writes: bool = True) -> None:
    """Before anything runs: a session of our own (advisory lock, SET, concurrent builds, pg_dump's search_path
    must not reach other clients) on a server that takes writes (`writes`: a dump alone may read a standby)."""
    params = parse(url)
    try:
        pooled = behind_a_pooler(url, conn)
        reason = None if pooled or not writes else read_only_reason(conn)
    except psycopg.Error as exc:
        raise ConnectionFailed(f"cannot check the connection ({describe(params)}): "
                               f"{server_reason(exc, params.get('user'))}") from None
    if pooled:
        raise ConnectionFailed(
            f"{describe(params)} is a connection pooler (a transaction-mode pooler shares server sessions between"
            " clients): a run needs a session of its own — use the direct connection (Supabase: the direct host,"
            " port 5432); nothing was done")
    if reason:
        raise ConnectionFailed(f"{describe(params)}: {reason}; nothing was done")
    # Our own session must not be ended by the login's settings while a build or dump waits; SET dies with it.
    with contextlib.suppress(psycopg.Error):
        conn.execute("SET idle_in_transaction_session_timeout = 0")


def open_session(url: str, application_name: str, where: str, writes: bool = True) -> psycopg.Connection:
    """A connection that passed check_session; closed again when it did not."""
    conn = open_connection(url, application_name, where)
    try:
        check_session(url, conn, writes)
    except ConnectionFailed:
        conn.close()
        raise
    return conn
