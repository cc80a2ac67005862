"""What a failed pg_dump or pg_restore says: the server's reason, not the query it was running."""

from __future__ import annotations

from pgconverge.backup import tool_reason
from pgconverge.provision.backups import render_backup_script

PG_DUMP_LOCK_FAILURE = """pg_dump: error: query failed: ERROR:  permission denied for table payroll
pg_dump: detail: Query was: LOCK TABLE public.payroll IN ACCESS SHARE MODE
"""

PG_RESTORE_FAILURE = """pg_restore: while PROCESSING TOC:
pg_restore: from TOC entry 3412; 1259 16822 INDEX film_title_trgm app
pg_restore: error: could not execute query: ERROR:  operator class "gin_trgm_ops" does not exist for access method "gin"
Command was: CREATE INDEX film_title_trgm ON public.film USING gin (title public.gin_trgm_ops);
"""


def test_the_reason_is_the_error_line_not_the_query_detail():
    assert tool_reason(PG_DUMP_LOCK_FAILURE) == "query failed: ERROR:  permission denied for table payroll"
    assert tool_reason(PG_RESTORE_FAILURE) == ('could not execute query: ERROR:  operator class "gin_trgm_ops" does'
                                               ' not exist for access method "gin"')


def test_without_an_error_line_the_last_line_is_the_reason():
    assert tool_reason("pg_dump: aborting because of server version mismatch\n") == \
        "pg_dump: aborting because of server version mismatch"
    assert tool_reason("") == ""


def test_a_version_mismatch_names_both_versions():
    stderr = ("pg_dump: error: aborting because of server version mismatch\n"
              "pg_dump: detail: server version: 18.6; pg_dump version: 15.14 (Debian 15.14-0+deb12u1)\n")
    assert tool_reason(stderr) == ("aborting because of server version mismatch; server version: 18.6; pg_dump"
                                   " version: 15.14 (Debian 15.14-0+deb12u1)")


def test_the_nightly_script_runs_the_client_of_the_servers_major():
    script = render_backup_script("/var/backups/pg", "prod-main-", 7, "/etc/pgconverge/b.env",
                                  "/usr/lib/postgresql/17/bin/")
    assert '/usr/lib/postgresql/17/bin/pg_dump -Fc --exclude-table-data="cron.*"' in script
    assert '/usr/lib/postgresql/17/bin/pg_restore --list "$file.partial"' in script
    assert "\npg_dump " not in render_backup_script("/b", "p-", 7, "/e", "/usr/lib/postgresql/17/bin/")
    assert "\npg_dump -Fc" in render_backup_script("/b", "p-", 7, "/e")  # no declared major: the client on PATH
