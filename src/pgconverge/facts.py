"""Read-only catalog facts: one query per object kind, returned as plain frozen values for the planner."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import psycopg
from psycopg import sql

MARKER_PREFIX = "pgconverge:"


@dataclass(frozen=True)
class IndexFact:
    name: str
    table: str
    valid: bool
    definition: str
    comment: str | None = None
    oid: int = 0


@dataclass(frozen=True)
class MatViewFact:
    name: str
    definition: str
    comment: str | None = None
    oid: int = 0
    owner: str = ""


@dataclass(frozen=True)
class FunctionFact:
    name: str
    arguments: str
    comment: str | None = None
    security_definer: bool = False
    config: tuple[str, ...] = ()
    oid: int = 0
    overloads: int = 1
    owner: str = ""


@dataclass(frozen=True)
class CronJobFact:
    name: str
    schedule: str
    command: str
    database: str
    active: bool = True
    jobid: int = 0
    username: str = ""


@dataclass(frozen=True)
class ExtensionFact:
    name: str
    version: str
    schema: str
    comment: str | None = None
    relocatable: bool = True


@dataclass(frozen=True)
class Catalog:
    database: str = "postgres"
    current_user: str = "postgres"
    schema: str = "public"
    indexes: dict[str, IndexFact] = field(default_factory=dict)
    matviews: dict[str, MatViewFact] = field(default_factory=dict)
    functions: dict[str, FunctionFact] = field(default_factory=dict)
    cron_jobs: dict[str, CronJobFact] = field(default_factory=dict)
    cron_available: bool = False
    extensions: dict[str, ExtensionFact] = field(default_factory=dict)
    # object name → role → privileges ("PUBLIC" for the public pseudo-role)
    acls: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    roles: frozenset[str] = frozenset()
    relations: frozenset[str] = frozenset()
    row_estimates: dict[str, int] = field(default_factory=dict)
    # schema → the role that owns it (pg_database_owner resolved to the database's owner)
    schema_owners: dict[str, str] = field(default_factory=dict)

    def owner_for(self, schema: str, declared: str | None) -> str:
        """Who a new object in `schema` belongs to: settings.owner, else the schema's owner, else whoever runs."""
        return declared or self.schema_owners.get(schema) or self.current_user


# every schema but the system's: objects are keyed "schema.name" in the Catalog
USER_SCHEMAS = ("n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'")


def is_managed(comment: str | None) -> bool:
    return bool(comment and comment.startswith(MARKER_PREFIX))


def read_indexes(conn: psycopg.Connection, schema: str) -> dict[str, IndexFact]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || ic.relname, tc.relname, i.indisvalid, pg_get_indexdef(i.indexrelid),
               obj_description(i.indexrelid, 'pg_class'), i.indexrelid::bigint
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class tc ON tc.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = ic.relnamespace
        WHERE """ + USER_SCHEMAS,
    ).fetchall()
    return {r[0]: IndexFact(r[0].split(".", 1)[1], r[1], r[2], r[3], r[4], r[5]) for r in rows}


def read_matviews(conn: psycopg.Connection, schema: str) -> dict[str, MatViewFact]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname, pg_get_viewdef(c.oid), obj_description(c.oid, 'pg_class'), c.oid::bigint,
               pg_get_userbyid(c.relowner)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'm' AND """ + USER_SCHEMAS,
    ).fetchall()
    return {r[0]: MatViewFact(r[0].split(".", 1)[1], r[1], r[2], r[3], r[4]) for r in rows}


def read_functions(conn: psycopg.Connection, schema: str) -> dict[str, FunctionFact]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || p.proname, pg_get_function_identity_arguments(p.oid),
               obj_description(p.oid, 'pg_proc'), p.prosecdef, coalesce(p.proconfig, '{}'), p.oid::bigint,
               count(*) OVER (PARTITION BY p.pronamespace, p.proname), pg_get_userbyid(p.proowner)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind = 'f' AND """ + USER_SCHEMAS + """
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
        """,
    ).fetchall()
    return {r[0]: FunctionFact(r[0].split(".", 1)[1], r[1], r[2], r[3], tuple(r[4]), r[5], r[6], r[7]) for r in rows}


def read_cron_jobs(conn: psycopg.Connection) -> tuple[bool, dict[str, CronJobFact]]:
    """pg_cron's jobs visible to this role (cron.job has row-level security for non-superusers)."""
    # pg_cron's extension lives in pg_catalog; its objects in schema cron.
    available = conn.execute(
        "SELECT has_schema_privilege(n.oid, 'USAGE') FROM pg_namespace n"
        " WHERE n.nspname = 'cron' AND EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')"
    ).fetchone()
    if not available:
        return False, {}
    if not available[0]:
        user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        raise CatalogUnreadable(f"pg_cron is installed but {user} may not read its jobs — "
                                f"GRANT USAGE ON SCHEMA cron TO {user} (as a superuser), then run again")
    rows = conn.execute(
        "SELECT jobname, schedule, command, database, active, jobid, username FROM cron.job WHERE jobname IS NOT NULL"
    ).fetchall()
    return True, {r[0]: CronJobFact(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows}


def read_extensions(conn: psycopg.Connection) -> dict[str, ExtensionFact]:
    rows = conn.execute(
        """
        SELECT e.extname, e.extversion, n.nspname, obj_description(e.oid, 'pg_extension'), e.extrelocatable
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        """
    ).fetchall()
    return {r[0]: ExtensionFact(r[0], r[1], r[2], r[3], r[4]) for r in rows}


def read_acls(conn: psycopg.Connection, schema: str) -> dict[str, dict[str, frozenset[str]]]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
               array_agg(a.privilege_type)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
        WHERE c.relkind IN ('r', 'v', 'm', 'p') AND """ + USER_SCHEMAS + """
        GROUP BY 1, 2
        UNION ALL
        SELECT n.nspname || '.' || p.proname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
               array_agg(a.privilege_type)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
        WHERE """ + USER_SCHEMAS + """
        GROUP BY 1, 2
        """,
    ).fetchall()
    acls: dict[str, dict[str, frozenset[str]]] = {}
    for name, role, privileges in rows:
        acls.setdefault(name, {})[role.strip('"')] = frozenset(privileges)
    return acls


def read_relations(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND """ + USER_SCHEMAS,
    ).fetchall()
    return {r[0]: r[1] for r in rows}


class CatalogUnreadable(LookupError):
    """The catalog could not be read; one line naming what to grant."""


def read(conn: psycopg.Connection, schema: str = "public") -> Catalog:
    """A snapshot of everything the planner compares with the spec; one line naming the missing grant if refused."""
    try:
        return _read(conn, schema)
    except psycopg.errors.InsufficientPrivilege as exc:
        first = str(exc).strip().splitlines()[0]
        user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        target = re.search(r"permission denied for (schema|table|relation|view|function) (\S+)", first)
        grant = (f"GRANT {'USAGE' if target.group(1) == 'schema' else 'SELECT'} ON {target.group(1).upper()}"
                 f" {target.group(2)} TO {user}" if target else f"grant {user} read access to the catalog")
        raise CatalogUnreadable(f"{first} — {grant}, then run again") from None
    except psycopg.Error as exc:
        raise CatalogUnreadable(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) \
            from None


def _read(conn: psycopg.Connection, schema: str) -> Catalog:
    database, user = conn.execute("SELECT current_database(), current_user").fetchone()  # type: ignore[misc]
    cron_available, cron_jobs = read_cron_jobs(conn)
    relations = read_relations(conn, schema)
    return Catalog(
        database=database,
        current_user=user,
        schema=schema,
        indexes=read_indexes(conn, schema),
        matviews=read_matviews(conn, schema),
        functions=read_functions(conn, schema),
        cron_jobs=cron_jobs,
        cron_available=cron_available,
        extensions=read_extensions(conn),
        acls=read_acls(conn, schema),
        roles=frozenset(r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()),
        relations=frozenset(relations),
        row_estimates=relations,
        schema_owners=dict(conn.execute(
            "SELECT n.nspname, CASE WHEN n.nspowner = 'pg_database_owner'::regrole"
            " THEN pg_get_userbyid(d.datdba) ELSE pg_get_userbyid(n.nspowner) END"
            " FROM pg_namespace n, pg_database d WHERE d.datname = current_database() AND " + USER_SCHEMAS
        ).fetchall()),
    )


class _Rollback(Exception):
    pass


def index_definition_problems(conn: psycopg.Connection, indexes: list, extensions: list) -> list[str]:
    """Ask the server whether each index that is still to be built can be built at all (method vs column type,
    operator class, expression), on an empty temporary copy of its table in a transaction that is rolled back:
    a mistake in phases.yml then stops the plan before anything runs, not half-way through the apply."""
    from .plan import create_index_sql  # the planner renders the statement; this only asks the server about it

    problems: list[str] = []
    try:
        with conn.transaction():
            for extension in extensions:  # declared in the same run: the indexes may need their operator classes
                try:
                    with conn.transaction():
                        statement = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension.name))
                        if extension.schema:
                            statement += sql.SQL(" WITH SCHEMA {}").format(sql.Identifier(extension.schema))
                        conn.execute(statement)
                except psycopg.Error:
                    pass  # the apply will say why; indexes that need it are then not checked
            for number, index in enumerate(indexes):
                probe = f"pgconverge_probe_{number}"
                try:
                    with conn.transaction():
                        conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {})").format(
                            sql.Identifier(probe), sql.Identifier(index.schema, index.table_name)))
                        conn.execute(create_index_sql(replace(index, schema="pg_temp", table=probe), f"{probe}_i")
                                     .replace(" CONCURRENTLY ", " ", 1))  # type: ignore[arg-type]
                except psycopg.errors.InsufficientPrivilege:
                    return problems  # no TEMP privilege here: the apply is the check
                except psycopg.Error as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    problems.append(f"index {index.name} on {index.table}: {first} — fix it in phases.yml")
            raise _Rollback
    except _Rollback:
        pass
    return problems


def preflight(conn: psycopg.Connection, spec, phase_ids: list[str], catalog: Catalog) -> list[str]:
    """Problems the server sees in what these phases would build, before anything runs."""
    phases = [spec.phase(pid) for pid in phase_ids]
    indexes = [i for p in phases for i in p.indexes if i.state == "present" and i.key not in catalog.indexes]
    extensions = [e for p in phases for e in p.extensions if e.state == "present" and e.name not in catalog.extensions]
    return index_definition_problems(conn, indexes, extensions) if indexes else []


@dataclass(frozen=True)
class FunctionShape:
    """What makes a function behave: compared between the live catalog and phases.yml's body."""

    arguments: str
    result: str
    source: str
    volatility: str
    security_definer: bool
    config: tuple[str, ...]
    managed: bool = False


@dataclass(frozen=True)
class Desired:
    """The declared objects as the server itself prints them (canonical), next to the live ones' prints."""

    indexes: dict[str, str] = field(default_factory=dict)          # key → "USING btree (…) …" of the declared one
    matviews: dict[str, str] = field(default_factory=dict)         # key → pg_get_viewdef of the declared query
    functions: dict[str, FunctionShape] = field(default_factory=dict)
    live_functions: dict[str, tuple[FunctionShape, ...]] = field(default_factory=dict)  # every overload


INDEX_DEFINITION = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON (?:ONLY )?\S+ (USING .*)$", re.DOTALL)


def canonical_index(definition: str) -> str | None:
    """pg_get_indexdef without the index's and table's names: what the index is, whatever it is called."""
    match = INDEX_DEFINITION.match(definition)
    return f"{match.group(1) or ''}{match.group(2)}" if match else None


FUNCTION_SHAPES = """
    SELECT pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid), btrim(p.prosrc, E' \\n\\t;'),
           p.provolatile::text, p.prosecdef, coalesce(p.proconfig, '{}'),
           coalesce(obj_description(p.oid, 'pg_proc') LIKE 'pgconverge:%%', false), p.oid::bigint || ':' || p.xmin::text
    FROM pg_proc p WHERE p.pronamespace = %s::regnamespace AND p.proname = %s
"""


def desired_definitions(conn: psycopg.Connection, spec, phase_ids: list[str], catalog: Catalog) -> Desired:
    """Render each declared index, view and function the way the server prints it, inside a transaction that is
    rolled back (temporary tables and views; function bodies unchecked): drift is then a comparison of what is with
    what is wanted, not of our own comment. An object the server cannot render here stays unknown (the marker
    decides, as before)."""
    from .plan import create_index_sql

    desired = Desired()
    phases = [spec.phase(pid) for pid in phase_ids]
    try:
        with conn.transaction():
            conn.execute("SET LOCAL check_function_bodies = off")
            for number, index in enumerate(i for p in phases for i in p.indexes if i.state == "present"):
                probe = f"pgconverge_probe_{number}"
                try:
                    with conn.transaction():
                        conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {})").format(
                            sql.Identifier(probe), sql.Identifier(index.schema, index.table_name)))
                        conn.execute(create_index_sql(replace(index, schema="pg_temp", table=probe), f"{probe}_i")
                                     .replace(" CONCURRENTLY ", " ", 1))  # type: ignore[arg-type]
                        row = conn.execute("SELECT pg_get_indexdef(to_regclass(%s))", [f"pg_temp.{probe}_i"]).fetchone()
                        canonical = canonical_index(row[0]) if row and row[0] else None
                        if canonical:
                            desired.indexes[index.key] = canonical
                except psycopg.Error:
                    pass
            for number, view in enumerate(v for p in phases for v in p.materialized_views if v.state == "present"):
                probe = f"pgconverge_probe_view_{number}"
                try:
                    with conn.transaction():
                        conn.execute(sql.SQL("CREATE TEMP VIEW {} AS {}").format(sql.Identifier(probe),
                                                                                 sql.SQL(view.query)))
                        row = conn.execute("SELECT pg_get_viewdef(to_regclass(%s))", [f"pg_temp.{probe}"]).fetchone()
                        if row and row[0]:
                            desired.matviews[view.key] = row[0]
                except psycopg.Error:
                    pass
            for function in (f for p in phases for f in p.functions if f.state == "present"):
                try:
                    with conn.transaction():
                        live = conn.execute(FUNCTION_SHAPES, [function.schema, function.name]).fetchall()
                        desired.live_functions[function.key] = tuple(
                            FunctionShape(r[0], r[1], r[2], r[3], r[4], tuple(r[5]), r[6]) for r in live)
                        conn.execute(function.body.rstrip().rstrip(";"))  # type: ignore[arg-type]
                        # the row this statement wrote: a new oid (new signature) or a new version (same oid)
                        before = {r[7] for r in live}
                        mine = next((r for r in conn.execute(FUNCTION_SHAPES, [function.schema, function.name])
                                     .fetchall() if r[7] not in before), None)
                        if mine:
                            desired.functions[function.key] = FunctionShape(mine[0], mine[1], mine[2], mine[3], mine[4],
                                                                          tuple(mine[5]))
                except psycopg.Error:
                    pass
            raise _Rollback
    except _Rollback:
        pass
    return desired
