"""Row-level security fixed on the desk app (tests/foreign/policies.yml): its slow policies (sql/policies/slow.sql)
replaced by the fast forms as the table owner while requests run as `authenticated` — none denied, none failed —
then verify, then a rollback that restores the application's policies exactly as pg_policies printed them."""

from __future__ import annotations

import json
import re
import threading
import time

import psycopg
import pytest
from psycopg import sql

from tests.integration.test_foreign import FOREIGN, OWNER, foreign_db, ok, pyinfra  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

POLICIES = FOREIGN / "policies.yml"


def _pg_policies(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT tablename, policyname, permissive, roles, cmd, qual, with_check FROM pg_policies"
                            " WHERE schemaname = 'app' ORDER BY 1, 2").fetchall()


class Requests(threading.Thread):
    """An API client: each request one transaction as authenticated with its JWT claims (as PostgREST runs it) —
    it writes a ticket of its own and reads its board; a request that errs or sees nothing is a failure."""

    def __init__(self, url: str, member: str, org: str):
        super().__init__(daemon=True)
        self.url, self.member, self.org = url, member, org
        self.stop = threading.Event()
        self.done, self.failures = 0, []  # type: ignore[var-annotated]

    def run(self) -> None:
        claims = json.dumps({"sub": self.member, "role": "authenticated", "aud": "authenticated"})
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                try:
                    with conn.transaction():
                        conn.execute("SELECT set_config('role', 'authenticated', true),"
                                     " set_config('request.jwt.claims', %s, true)", [claims])
                        conn.execute("INSERT INTO app.\"Tickets\" (org_id, author_id, title, status)"
                                     " VALUES (%s, %s, 'written during the converge', 'open')",
                                     [self.org, self.member])
                        seen = conn.execute("SELECT count(*) FROM app.\"Tickets\"").fetchone()[0]  # type: ignore[index]
                        mine = conn.execute("SELECT count(*) FROM app.\"Tickets\" WHERE author_id = %s",
                                            [self.member]).fetchone()[0]  # type: ignore[index]
                    if not seen or not mine:
                        self.failures.append(f"request saw {seen} tickets, {mine} of its own")
                    self.done += 1
                except psycopg.Error as exc:
                    self.failures.append(str(exc).splitlines()[0])
                time.sleep(0.005)


def test_slow_policies_are_replaced_under_requests_verified_and_rolled_back_exactly(servers, foreign_db, tmp_path):  # noqa: F811
    with psycopg.connect(servers.superuser_url(servers.database), autocommit=True) as conn:
        # as on Supabase: the owner (postgres there) may act as the API roles
        conn.execute(sql.SQL("GRANT anon, authenticated TO {}").format(sql.Identifier(OWNER)))
    with psycopg.connect(foreign_db, autocommit=True) as conn:
        conn.execute((FOREIGN / "sql" / "policies" / "slow.sql").read_text())  # type: ignore[arg-type]
        member, org = conn.execute("SELECT id::text, org_id::text FROM app.members ORDER BY id LIMIT 1").fetchone()  # type: ignore[misc]
    before = _pg_policies(foreign_db)
    env = {"PGCONVERGE_PHASES": str(POLICIES)}

    dry = ok(pyinfra(foreign_db, "deploys/phase.py", "--dry", "--data", "phase=rls", tmp=tmp_path, env=env))
    assert 'ALTER POLICY "members read their organization\'s tickets" ON "app"."Tickets"' in dry
    assert 'DROP POLICY "authors read their own tickets" ON "app"."Tickets"' in dry
    # the notes speak of the tables as the phase leaves them: the fast forms, the replaced policies gone
    assert "for every row" not in dry and "permissive policies for" not in dry

    client = Requests(foreign_db, member, org)
    client.start()
    time.sleep(0.5)
    try:
        applied = ok(pyinfra(foreign_db, "deploys/phase.py", "-y", "--data", "phase=rls", tmp=tmp_path, env=env))
    finally:
        client.stop.set()
        client.join(30)
    print(f"requests as authenticated during the converge: {client.done}, failed or denied: {len(client.failures)}")
    assert client.done > 20 and client.failures == [], (client.done, client.failures[:5])
    gates = [line for line in applied.splitlines() if re.search(r"gate \w+ \(", line)]
    print("\n".join(gates))  # the figures for the record: the board's p95 before and after
    for name in ("board_auth_once", "board_not_slower", "comments_auth_once", "advisor_clean"):
        assert any(f"gate {name} (" in line and "passed" in line for line in gates), (name, gates)
    assert any("once (InitPlan)" in line for line in gates)

    after = _pg_policies(foreign_db)
    assert [p[1] for p in after] == ["authors write their own tickets", "members read their organization's tickets",
                                     "comments follow their ticket"]
    assert all("auth.uid()" not in (p[5] or "") + (p[6] or "") or "SELECT auth.uid() AS uid" in (p[5] or "") +
               (p[6] or "") for p in after)
    ok(pyinfra(foreign_db, "deploys/verify.py", tmp=tmp_path, env=env))  # no -y, no terminal: verify changes nothing
    again = ok(pyinfra(foreign_db, "deploys/phase.py", "-y", "--data", "phase=rls", tmp=tmp_path, env=env))
    assert "summary: 0 statements applied" in again

    ok(pyinfra(foreign_db, "deploys/rollback.py", "-y", "--data", "phase=rls", tmp=tmp_path, env=env))
    assert _pg_policies(foreign_db) == before  # the application's slow policies, exactly
    with psycopg.connect(foreign_db) as conn:
        assert conn.execute("SELECT bool_and(relrowsecurity) FROM pg_class WHERE oid IN"
                            " ('app.\"Tickets\"'::regclass, 'app.comments'::regclass)").fetchone()[0] is True
