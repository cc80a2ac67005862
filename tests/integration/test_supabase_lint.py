"""Supabase's own linter categories (splinter), checked with our own catalog queries on a converged lab database:
none may find a managed object."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import run_pyinfra
from tests.integration.test_converge import ok

pytestmark = pytest.mark.integration

MANAGED_FUNCTIONS = "SELECT p.oid FROM pg_proc p WHERE obj_description(p.oid, 'pg_proc') LIKE 'pgconverge:%'"
LINTS = {
    "extension_in_public": "SELECT extname FROM pg_extension WHERE extnamespace = 'public'::regnamespace"
                           " AND extname IN ('pg_stat_statements', 'pg_cron')",
    "function_search_path_mutable": "SELECT proname FROM pg_proc WHERE oid IN (" + MANAGED_FUNCTIONS + ")"
                                    " AND NOT coalesce(proconfig::text LIKE '%search_path=%', false)",
    "materialized_view_in_api": "SELECT c.relname, r FROM pg_class c, unnest(ARRAY['anon', 'authenticated']) r"
                                " WHERE c.relkind = 'm' AND c.relnamespace = 'public'::regnamespace"
                                " AND has_table_privilege(r, c.oid, 'SELECT')",
    "function_executable_by_anon": "SELECT p.proname, r FROM pg_proc p, unnest(ARRAY['anon', 'authenticated']) r"
                                   " WHERE p.oid IN (" + MANAGED_FUNCTIONS + ")"
                                   " AND has_function_privilege(r, p.oid, 'EXECUTE')",
}


def test_converged_lab_has_no_supabase_lint_finding_on_managed_objects(cron_db):
    with psycopg.connect(cron_db) as conn:
        # the lab is Supabase-like: new functions are executable by the API roles unless revoked
        assert conn.execute("SELECT count(*) FROM pg_default_acl WHERE defaclobjtype = 'f'").fetchone()[0] >= 1
    out = ok(run_pyinfra(cron_db, "deploys/all.py", "-y"))
    assert "17/17 gates passed" in out
    with psycopg.connect(cron_db) as conn:
        assert conn.execute("SELECT count(*) FROM (" + MANAGED_FUNCTIONS + ") f").fetchone()[0] == 5
        findings = {lint: conn.execute(query).fetchall() for lint, query in LINTS.items()}  # type: ignore[arg-type]
    assert findings == {lint: [] for lint in LINTS}
