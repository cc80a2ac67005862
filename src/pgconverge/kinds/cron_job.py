"""pg_cron jobs: the catalog query (jobs visible to the role), schedule/command/database/active compared,
(re)scheduled, rollback."""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..model import (
    Action,
    Catalog,
    CatalogUnreadable,
    CronJobFact,
    Lock,
    Step,
    of_kind,
    render,
)
from ..spec import Builder, short
from .kind import Kind


@dataclass(frozen=True)
class CronJobSpec:
    name: str
    schedule: str
    command: str
    phase: str
    database: str | None = None
    state: str = "present"

    @property
    def key(self) -> str:
        return self.name  # unique per pg_cron: its name is its identity


def valid_cron_schedule(schedule: str) -> bool:
    # Five standard fields only: what every pg_cron version accepts (sub-minute schedules need pg_cron 1.5+).
    from croniter import croniter

    return len(schedule.split()) == 5 and croniter.is_valid(schedule)


def build_cron_job(b: Builder, c: dict, at: tuple, phase: str) -> CronJobSpec:
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", c["name"]):
        raise b.fail((*at, "name"), f"cron job name '{short(c['name'], 40)}' — use lowercase letters, digits, - and _")
    b.unique_name("cron job", c["name"], (*at, "name"))
    if not valid_cron_schedule(c["schedule"]):
        raise b.fail(
            (*at, "schedule"),
            f"cron schedule '{short(c['schedule'], 40)}' is invalid — use 5 fields like '*/10 * * * *'",
        )
    b.parse_sql(c["command"], (*at, "command"), "cron command")
    if "database" in c:
        b.identifier(c["database"], (*at, "database"), "database")
    return CronJobSpec(name=c["name"], schedule=c["schedule"], command=c["command"].strip(), phase=phase,
                       database=c.get("database"), state=c.get("state", "present"))


def read_cron_jobs(conn: psycopg.Connection) -> dict[str, CronJobFact]:
    """pg_cron's jobs visible to this role (cron.job has row-level security for non-superusers)."""
    # pg_cron's extension lives in pg_catalog; its objects in schema cron.
    available = conn.execute(
        "SELECT has_schema_privilege(n.oid, 'USAGE') FROM pg_namespace n"
        " WHERE n.nspname = 'cron' AND EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')"
    ).fetchone()
    if not available:  # pg_cron not installed: no jobs
        return {}
    if not available[0]:
        user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        raise CatalogUnreadable(f"pg_cron is installed but {user} may not read its jobs — "
                                f"GRANT USAGE ON SCHEMA cron TO {user} (as a superuser), then run again")
    rows = conn.execute(
        "SELECT jobname, schedule, command, database, active, jobid, username FROM cron.job WHERE jobname IS NOT NULL"
    ).fetchall()
    return {r[0]: CronJobFact(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows}


@of_kind("cron job")
def plan_cron_job(job: CronJobSpec, catalog: Catalog) -> list[Step]:
    fact = catalog.cron_jobs.get(job.name)
    database = job.database or catalog.database
    label = f"cron job {job.name}"
    if job.state == "absent":
        if fact is None:
            return []
        # by id: cron.unschedule(name) finds only the current user's jobs
        return [Step((render(sql.SQL("SELECT cron.unschedule({}::bigint)").format(sql.Literal(fact.jobid))),),
                     "declared absent", label, Lock.NONE, job.phase, action=Action.SCHEDULE)]
    if fact and (fact.schedule, fact.command.strip(), fact.database, fact.active) == (
            job.schedule, job.command, database, True):
        return []
    if fact is None:
        reason = "missing"
    else:
        changed = [what for what, old, new in (("schedule", fact.schedule, job.schedule),
                                                ("command", fact.command.strip(), job.command),
                                                ("database", fact.database, database)) if old != new]
        reason = "changed " + ", ".join(changed) if changed else ""
        if not fact.active:
            # cron.schedule keeps a job's active flag and cron.alter_job needs a superuser on pg_cron 1.4: schedule
            # it anew (active) in the same transaction as removing the switched-off one.
            reason = (reason + ", " if reason else "") + "inactive (active = false)"
    if database == catalog.database:
        call = sql.SQL("SELECT cron.schedule({}, {}, {})").format(
            sql.Literal(job.name), sql.Literal(job.schedule), sql.Literal(job.command))
    else:
        call = sql.SQL("SELECT cron.schedule_in_database({}, {}, {}, {})").format(
            sql.Literal(job.name), sql.Literal(job.schedule), sql.Literal(job.command), sql.Literal(database))
    statements = [render(call)]
    if fact is not None and not fact.active:
        statements.insert(0, render(sql.SQL("SELECT cron.unschedule({})").format(sql.Literal(fact.jobid))))
    return [Step(tuple(statements), f"{reason}: schedule '{job.schedule}'", label, Lock.NONE, job.phase,
                 transactional=len(statements) > 1, action=Action.SCHEDULE)]


@of_kind("cron job")
def rollback_cron_job(job: CronJobSpec, catalog: Catalog, phase_id: str) -> list[Step]:
    fact = catalog.cron_jobs.get(job.name)
    if fact is None:
        return []
    # by id: a superuser rolling back the owner's jobs — cron.unschedule(name) matches only the caller's own
    return [Step((render(sql.SQL("SELECT cron.unschedule({}::bigint)").format(sql.Literal(fact.jobid))),),
                 "rollback", f"cron job {job.name}", Lock.NONE, phase_id, action=Action.SCHEDULE)]


# last of a phase: what a job refreshes or calls exists before it is scheduled; scheduled as the login (pg_cron shows
# each role only its own jobs), which owns or acts for the owner of what the job runs
CRON_JOB = Kind(name="cron job", section="cron_jobs", plan=lambda job, catalog, context: plan_cron_job(job, catalog),
                rollback=rollback_cron_job, build=build_cron_job, owned=False, marked=False, read=read_cron_jobs,
                facts_field="cron_jobs", stand_in=lambda job, mark: CronJobFact(job.name, job.schedule, job.command, "x"))
