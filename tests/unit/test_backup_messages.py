"""What a failed pg_dump or pg_restore says: the server's reason, not the query it was running."""

from __future__ import annotations

from pgconverge.backup import tool_reason

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
