"""phases.yml → Spec: JSON Schema first, then the semantic checks a schema cannot express."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import speccache
from .errors import UserError
from .names import QualifiedName
from .yamlmarks import Mark, YamlError, load_with_marks

if TYPE_CHECKING:  # each kind's spec value lives in its kind's module (kinds/), which builds on this one
    from .kinds.cron_job import CronJobSpec
    from .kinds.extension import ExtensionSpec
    from .kinds.function import FunctionSpec
    from .kinds.index import IndexSpec
    from .kinds.matview import MatViewSpec
    from .kinds.privileges import GrantSpec

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")
QUALIFIED = re.compile(r"^(?:[a-z_][a-z0-9_$]{0,62}\.)?[a-z_][a-z0-9_$]{0,62}$")
# a relation as the catalog names it: any case, optionally schema-qualified (split at the first dot)
RELATION = re.compile(r"^(?:[\w$]{1,63}\.)?[\w$]{1,63}$")
GATE_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required, allowed besides name/kind/description)
    "sql": ({"sql", "expect"}, {"sql", "expect", "value"}),
    "plan": ({"query"}, {"query", "uses_index", "no_seq_scan_on"}),
    "latency": ({"query"}, {"query", "p95_ms", "runs", "max_ratio_to_before", "slack_ms", "compare_by"}),
    "freshness": ({"materialized_view", "within"}, {"materialized_view", "within"}),
    "security": (set(), set()),
    "cron_health": (set(), {"jobs"}),
    "explain": ({"query", "max_ms"}, {"query", "max_ms", "runs"}),
    "rls_initplan": ({"query"}, {"query"}),
}


class SpecError(UserError):
    """A problem in phases.yml: one line with file:line:col, what is wrong and what to do."""

    def __init__(self, path: Path | str, mark: Mark | None, message: str):
        self.path = str(path)
        self.mark = mark
        # One line whatever the input held: control characters are shown escaped, runs of space folded.
        message = re.sub(r"\s*\n\s*", " ", message)
        self.message = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
        message = self.message
        where = f"{self.path}:{mark.line}:{mark.col}" if mark else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Settings:
    schema: str = "public"
    lock_timeout: str = "3s"
    # ACCESS EXCLUSIVE steps (MV swap, drops): every query on the object queues behind our waiting request
    exclusive_lock_timeout: str = "400ms"
    # a concurrent index build waits this long in total for old transactions, then stops and cleans up
    build_max_wait: str = "30min"
    lock_retries: int = 5
    retry_backoff_seconds: float = 1.0
    statement_timeout: str = "60s"
    progress_interval_seconds: float = 5.0
    build_parallel_workers: int = 0
    api_roles: tuple[str, ...] = ("anon", "authenticated")
    # who owns the views, functions and cron jobs created (default: the owner of the object's schema)
    owner: str | None = None
    # several repositories on one database: each marks its objects with its project and touches only those
    project: str = ""
    # on a converge that changed nothing in a phase: "untimed" gates only (a fleet's no-op does not re-time every
    # database's queries; verify does), or "all"
    noop_gates: str = "untimed"
    # builds yield to the application: pause before a build while PostgreSQL shows stress, up to max_build_pause
    pause_builds_at_lock_waiters: int = 5
    pause_builds_at_replication_lag: str = "30s"
    pause_builds_at_active_sessions: int = 0  # 0: not watched (a busy pool is not stress by itself)
    max_build_pause: str = "10min"
    build_window: str | None = None  # "HH:MM-HH:MM" UTC; host data build_window overrides it
    build_priority: str = "normal"  # "low": a build's server process at nice 19, idle I/O (server on this machine)


def seconds(duration: str) -> float:
    """A phases.yml duration ("500ms", "3s", "30min") in seconds."""
    number, unit = re.match(r"^(\d+)(ms|s|min)$", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, "min": 60}[unit]


class SchemaObject:
    """A declared object in a schema: keyed by its QualifiedName everywhere (catalog, plan, markers)."""

    name: str
    schema: str

    @property
    def key(self) -> QualifiedName:
        return QualifiedName(self.schema, self.name)


def split_name(name: str, default_schema: str) -> tuple[str, str]:
    """'schema.name' or 'name' (in the default schema) → (schema, name)."""
    schema, _, bare = name.rpartition(".")
    return (schema or default_schema), bare


@dataclass(frozen=True)
class GateSpec:
    name: str
    kind: str
    phase: str
    params: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)


@dataclass(frozen=True)
class WorkloadQuery:
    """A query the application runs, with how to sample realistic parameters for it from the data."""

    name: str
    sql: str
    params_sql: str | None = None
    # executions that make one timed call (the old per-row way of a batch: e.g. 100 one-lead queries)
    per_call: int = 1
    # an object (relation or function) this query needs; kpi leaves the query out while it is missing
    needs: str | None = None
    description: str | None = None
    caller: Caller | None = None  # who runs it: an API role with JWT claims, so row-level security applies


# a parameter as workload SQL and claims name it: %(column)s
PARAMETER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class Caller:
    """An API request's identity: the role, and the JWT claims Supabase's API sets per request (request.jwt.claims);
    a claim "%(column)s" takes the parameter row's value."""

    role: str
    claims: tuple[tuple[str, Any], ...] = ()

    def claims_for(self, params: dict[str, Any]) -> str:
        def value(v: Any) -> Any:
            match = PARAMETER.fullmatch(v) if isinstance(v, str) else None
            return str(params.get(match[1])) if match else v
        return json.dumps({"role": self.role, **{k: value(v) for k, v in self.claims}}, sort_keys=True)

    @property
    def names(self) -> set[str]:
        return {m[1] for _, v in self.claims if isinstance(v, str) and (m := PARAMETER.fullmatch(v))}


@dataclass(frozen=True)
class Phase:
    id: str
    title: str
    requires: tuple[str, ...] = ()
    # what is saved before the phase changes anything: "schema" (what phases change), "full" (data too), "none"
    backup: str = "schema"
    on_gate_failure: str = "stop"
    gates: tuple[GateSpec, ...] = ()
    # every kind of the registry (kinds/__init__.py): its section of phases.yml → its declared objects
    objects: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    # what the engine's other rooms (gates, advise, reports) read by name
    @property
    def extensions(self) -> tuple[ExtensionSpec, ...]:
        return self.objects.get("extensions", ())

    @property
    def indexes(self) -> tuple[IndexSpec, ...]:
        return self.objects.get("indexes", ())

    @property
    def materialized_views(self) -> tuple[MatViewSpec, ...]:
        return self.objects.get("materialized_views", ())

    @property
    def functions(self) -> tuple[FunctionSpec, ...]:
        return self.objects.get("functions", ())

    @property
    def cron_jobs(self) -> tuple[CronJobSpec, ...]:
        return self.objects.get("cron_jobs", ())

    @property
    def grants(self) -> tuple[GrantSpec, ...]:
        """Grants and revokes."""
        return self.objects.get("grants", ())


@dataclass(frozen=True)
class Spec:
    path: str
    sql_dir: str
    settings: Settings
    phases: tuple[Phase, ...] = field(default_factory=tuple)
    workload: tuple[WorkloadQuery, ...] = field(default_factory=tuple)

    def query(self, name: str) -> WorkloadQuery:
        for query in self.workload:
            if query.name == name:
                return query
        raise SpecError(self.path, None, f"no workload query '{name}' — declare it under workload:")

    def phase(self, phase_id: str) -> Phase:
        for phase in self.phases:
            if phase.id == phase_id:
                return phase
        known = ", ".join(p.id for p in self.phases)
        raise SpecError(self.path, None, f"no phase '{phase_id}' — choose one of: {known}")

    def phases_through(self, phase_id: str) -> tuple[Phase, ...]:
        """The phase and every phase it requires, in file order."""
        wanted = {phase_id}
        for phase in reversed(self.phases):
            if phase.id in wanted:
                wanted.update(phase.requires)
        self.phase(phase_id)
        return tuple(p for p in self.phases if p.id in wanted)

    def phases_from(self, phase_id: str) -> tuple[Phase, ...]:
        """The phase and every later one: what a rollback of phase_id undoes."""
        ids = [p.id for p in self.phases]
        self.phase(phase_id)
        return self.phases[ids.index(phase_id) :]


def digest(definition: dict[str, Any]) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def marker(phase: str, definition_hash: str, project: str = "") -> str:
    """The comment on every object we manage; markers without a project belong to the default project."""
    return f"pgconverge:{project + '/' if project else ''}{phase}:{definition_hash}"


def json_schema() -> dict[str, Any]:
    text = resources.files("pgconverge").joinpath("schemas/phases.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


PHASES_ENV = "PGCONVERGE_PHASES"


def locate(explicit: str | None = None) -> tuple[str, str]:
    """Which phases.yml every command and deploy uses, and why: --phases > $PGCONVERGE_PHASES > ./phases.yml."""
    if explicit:
        return explicit, "given"
    if os.environ.get(PHASES_ENV):
        return os.environ[PHASES_ENV], f"from ${PHASES_ENV}"
    return "phases.yml", "default"


def load(path: str | Path) -> Spec:
    """Read, validate and freeze phases.yml; raise SpecError (one line, file:line:col) on the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, None, "file not found — pass the path to phases.yml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, None, f"cannot read file ({exc.__class__.__name__}) — check it is UTF-8 text") from None
    entry = speccache.key(path, text)
    cached = speccache.fetch(entry)
    if isinstance(cached, Spec):
        return cached
    try:
        data, marks = load_with_marks(text)
    except YamlError as exc:
        raise SpecError(path, exc.mark, exc.message) from None
    _check_schema(path, data, marks)
    files: list[Path] = []
    spec = _build(path, data, marks, files)
    speccache.keep(entry, spec, files)  # only a spec that passed every check is kept
    return spec


def _check_schema(path: Path, data: Any, marks: dict) -> None:
    import jsonschema  # only when the spec is not in the cache: a no-op run never loads it

    validator = jsonschema.Draft202012Validator(json_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors)
    where = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        key = extra[0]
        raise SpecError(
            path,
            marks.get((*where, ("key", key))) or marks.get(where),
            f"unknown key '{short(key)}' — allowed here: {', '.join(sorted(allowed))}",
        )
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        raise SpecError(path, marks.get(where), f"missing key '{missing[0]}' — add it")
    label = ".".join(str(p) for p in where) or "document"
    raise SpecError(path, marks.get(where), f"{label}: {short(error.message)} — fix the value")


def short(text: Any, limit: int = 80) -> str:
    text = str(text).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Builder:
    def __init__(self, path: Path, marks: dict, files: list[Path] | None = None):
        self.path = path
        self.files = files if files is not None else []  # every SQL file read: the spec cache checks them
        self.marks = marks
        self.sql_dir = path.parent / "sql"
        self.seen_names: dict[str, tuple] = {}
        self.schema = "public"
        self.project = ""

    def fail(self, where: tuple, message: str) -> SpecError:
        return SpecError(self.path, self.marks.get(where), message)

    def identifier(self, value: str, where: tuple, what: str, qualified: bool = False) -> str:
        pattern = QUALIFIED if qualified else IDENTIFIER
        if not pattern.match(value):
            raise self.fail(
                where,
                f"{what} '{short(value, 40)}' is not a valid identifier — use lowercase letters, digits and _"
                + (" (optionally schema.name)" if qualified else ""),
            )
        return value

    def unique_name(self, kind: str, name: str, where: tuple) -> None:
        key = f"{kind}:{name}"
        if key in self.seen_names:
            first = self.marks.get(self.seen_names[key])
            line = f" (first at line {first.line})" if first else ""
            raise self.fail(where, f"duplicate {kind} name '{name}'{line} — names must be unique across all phases")
        self.seen_names[key] = where

    def table(self, value: str, where: tuple) -> tuple[str, str]:
        """A table as the catalog names it (any case), optionally schema.table → (schema, table)."""
        if not RELATION.match(value):
            raise self.fail(where, f"table '{short(value, 40)}' — write the table's name as the catalog has it"
                            " (letters, digits, _ and $, any case), optionally schema.table, no quotes")
        return split_name(value, self.schema)

    def sql_file(self, relative: str, where: tuple) -> str:
        candidate = (self.sql_dir / relative).resolve()
        if self.sql_dir.resolve() not in candidate.parents:
            raise self.fail(where, f"SQL file '{short(relative, 60)}' is outside sql/ — keep SQL under sql/")
        if not candidate.is_file():
            raise self.fail(where, f"SQL file 'sql/{short(relative, 60)}' does not exist — create it or fix the path")
        self.files.append(candidate)
        return candidate.read_text(encoding="utf-8")

    def declared_name(self, entry: dict, at: tuple, what: str, namespace: str) -> tuple[str, str]:
        """An object's `name:` (optionally schema.name) → (schema, name), unique among `namespace` across phases."""
        schema, name = split_name(self.identifier(entry["name"], (*at, "name"), f"{what} name", qualified=True),
                                  self.schema)
        self.unique_name(namespace, QualifiedName(schema, name), (*at, "name"))
        return schema, name

    def one_select(self, query: str, at: tuple, source: str) -> None:
        statements = self.parse_sql(query, (*at, "sql"), source)
        if len(statements) != 1 or type(statements[0].stmt).__name__ != "SelectStmt":
            raise self.fail((*at, "sql"), f"{source} must hold exactly one SELECT — the view's query")

    def parse_sql(self, text: str, where: tuple, what: str) -> Any:
        import pglast

        try:
            return pglast.parse_sql(text)
        except pglast.parser.ParseError as exc:
            raise self.fail(where, f"{what} does not parse: {short(exc)} — fix the SQL") from None


def _build(path: Path, data: dict, marks: dict, files: list[Path]) -> Spec:
    b = _Builder(path, marks, files)
    settings_data = data.get("settings", {})
    for key in ("schema", "owner"):
        if key in settings_data:
            b.identifier(settings_data[key], ("settings", key), "schema")
    for i, role in enumerate(settings_data.get("api_roles", [])):
        b.identifier(role, ("settings", "api_roles", i), "role")
    settings = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings_data.items()})  # type: ignore[arg-type]
    b.schema = settings.schema
    b.project = settings.project
    phases: list[Phase] = []
    ids: list[str] = []
    if not data.get("phases") and not data.get("workload"):
        raise b.fail((), "declares neither phases nor a workload — add phases: (what to converge) or workload:"
                         " (the queries kpi and advise read)")
    for p_index, p in enumerate(data.get("phases") or []):
        at = ("phases", p_index)
        pid = b.identifier(p["id"], (*at, "id"), "phase id")
        if pid in ids:
            raise b.fail((*at, "id"), f"duplicate phase id '{pid}' — phase ids must be unique")
        for r_index, required in enumerate(p.get("requires", [])):
            if required == pid:
                raise b.fail((*at, "requires", r_index), f"phase '{pid}' requires itself — remove it")
            if required not in ids:
                later = any(q.get("id") == required for q in data.get("phases") or [])
                reason = "a later phase (cycle)" if later else "not a phase"
                raise b.fail(
                    (*at, "requires", r_index),
                    f"requires '{short(required, 40)}', which is {reason} — only earlier phases can be required",
                )
        phases.append(
            Phase(
                id=pid,
                title=p["title"],
                requires=tuple(p.get("requires", [])),
                backup={True: "schema", False: "none"}.get(p.get("backup", True), p.get("backup")),
                on_gate_failure=p.get("on_gate_failure", "stop"),
                gates=tuple(_gate(b, g, (*at, "gates", i), pid) for i, g in enumerate(p.get("gates", []))),
                objects=_phase_objects(b, p, at, pid),
            )
        )
        ids.append(pid)
    workload = tuple(_workload(b, w, ("workload", i)) for i, w in enumerate(data.get("workload", [])))
    declared = {w.name for w in workload}
    for p_index, phase in enumerate(phases):
        for g_index, gate in enumerate(phase.gates):
            if gate.get("query") and gate.get("query") not in declared:
                raise b.fail(("phases", p_index, "gates", g_index, "query"),
                             f"gate '{gate.name}' times query '{gate.get('query')}', which is not declared under"
                             " workload: — declare it there")
    return Spec(path=str(path), sql_dir=str(b.sql_dir), settings=settings, phases=tuple(phases), workload=workload)


def _workload(b: _Builder, w: dict, at: tuple) -> WorkloadQuery:
    name = b.identifier(w["name"], (*at, "name"), "workload query name")
    b.unique_name("workload query", name, (*at, "name"))
    relative = w.get("sql", f"workload/{name}.sql")
    text = b.sql_file(relative, (*at, "sql") if "sql" in w else (*at, "name")).strip().rstrip(";").strip()
    b.parse_sql(re.sub(r"%\((\w+)\)s", "NULL", text), (*at, "sql"), f"sql/{relative}")
    params = w.get("params")
    if params is not None:
        params = (b.sql_file(params, (*at, "params")) if re.fullmatch(r"[\w./-]+\.sql", params) else params)
        params = params.strip().rstrip(";").strip()
        statements = b.parse_sql(params, (*at, "params"), "parameter query")
        if len(statements) != 1 or type(statements[0].stmt).__name__ != "SelectStmt":
            raise b.fail((*at, "params"), "params must be one SELECT returning rows of named values")
    caller = None
    if "claims" in w and "as_role" not in w:
        raise b.fail((*at, "claims"), "claims are set for a role — add as_role: (e.g. authenticated)")
    if "as_role" in w:
        caller = Caller(b.identifier(w["as_role"], (*at, "as_role"), "role"), tuple(sorted(w.get("claims", {}).items())))
    used = set(re.findall(r"%\((\w+)\)s", text)) | (caller.names if caller else set())
    if used and params is None:
        raise b.fail((*at, "name"), f"sql/{relative} uses {', '.join(sorted(used))} — add params: a SELECT returning"
                     " those columns")
    return WorkloadQuery(name=name, sql=text, params_sql=params, per_call=w.get("per_call", 1), needs=w.get("needs"),
                         description=w.get("description"), caller=caller)


Builder = _Builder  # what a kind's module builds its spec values with


def _phase_objects(b: _Builder, p: dict, at: tuple, phase: str) -> dict[str, tuple[Any, ...]]:
    """Each kind's sections of a phase, built by the kind's own builder (in its module), in the registry's order."""
    from .kinds import REGISTRY  # the kinds import this module: their builders are looked up when loading

    return {kind.section: tuple(kind.build(b, x, (*at, section, i), phase)  # type: ignore[misc]
                                for section in (kind.section, *kind.also_from)
                                for i, x in enumerate(p.get(section, [])))
            for kind in REGISTRY if kind.build}


def _gate(b: _Builder, g: dict, at: tuple, phase: str) -> GateSpec:
    name = b.identifier(g["name"], (*at, "name"), "gate name")
    b.unique_name("gate", name, (*at, "name"))
    required, allowed = GATE_FIELDS[g["kind"]]
    given = set(g) - {"name", "kind", "description"}
    for key in sorted(given - allowed):
        raise b.fail((*at, ("key", key)), f"'{key}' does not apply to a {g['kind']} gate — allowed: "
                     f"{', '.join(sorted(allowed)) or 'nothing'}")
    for key in sorted(required - given):
        raise b.fail((*at, "name"), f"{g['kind']} gate '{name}' needs '{key}' — add it")
    if "sql" in g:
        b.sql_file(g["sql"], (*at, "sql"))
    if g["kind"] == "latency" and "p95_ms" not in g and "max_ratio_to_before" not in g:
        raise b.fail((*at, "name"), f"latency gate '{name}' needs p95_ms, max_ratio_to_before or both — add one")
    if g.get("expect") == "value" and "value" not in g:
        raise b.fail((*at, "expect"), f"gate '{name}' expects a value — add 'value'")
    params = tuple(sorted((k, v if not isinstance(v, list) else tuple(v)) for k, v in g.items() if k not in {"name", "kind"}))
    return GateSpec(name=name, kind=g["kind"], phase=phase, params=params)
