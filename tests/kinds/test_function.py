"""Functions (kinds/function.py) through the run's catalog path: create with privileges, adopt, a changed body
replaced atomically, overloads addressed by signature in rollback."""

from __future__ import annotations

import pytest

from pgconverge.model import Action

pytestmark = pytest.mark.integration

PHASES = """
version: 1
phases:
  - id: pricing
    title: "Prices with tax"
    functions:
      - name: price_with_tax
        sql: pricing/price_with_tax.sql
"""
BODY = ("CREATE OR REPLACE FUNCTION public.price_with_tax(amount numeric) RETURNS numeric LANGUAGE sql IMMUTABLE"
        " SET search_path = '' AS $$ SELECT amount * 1.19 $$")


def test_create_adopt_replace_and_rollback_by_signature(kit):
    loaded = kit.spec(PHASES, {"pricing/price_with_tax.sql": BODY})
    steps = kit.plan(loaded, "pricing").steps
    assert [(s.action, s.target) for s in steps] == [(Action.CREATE, "function")]
    assert any('REVOKE EXECUTE ON FUNCTION "public"."price_with_tax"(amount numeric) FROM PUBLIC' in s
               for s in steps[0].statements), steps[0].statements
    kit.apply(loaded, steps)
    assert kit.plan(loaded, "pricing").steps == ()

    changed = kit.spec(PHASES, {"pricing/price_with_tax.sql": BODY.replace("1.19", "1.07")})
    replace = kit.plan(changed, "pricing").steps
    assert [s.action for s in replace] == [Action.CREATE] and "body" in replace[0].why
    kit.apply(changed, replace)
    assert kit.scalar("SELECT price_with_tax(100)") == 107

    kit.execute("CREATE FUNCTION price_with_tax(amount numeric, rate numeric) RETURNS numeric LANGUAGE sql"
                " AS $$ SELECT amount * rate $$")
    rollback = kit.rollback(changed, "pricing").steps
    assert [s.object for s in rollback] == ["function price_with_tax(amount numeric)"]
    kit.apply(changed, rollback)
    assert kit.scalar("SELECT string_agg(pg_get_function_identity_arguments(oid), '; ') FROM pg_proc"
                      " WHERE proname = 'price_with_tax'") == "amount numeric, rate numeric"
