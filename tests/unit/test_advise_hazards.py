"""The plan shapes advise refuses to bet on, read from EXPLAIN (FORMAT JSON) plans as PostgreSQL prints them."""

from __future__ import annotations

from pgconverge.advise import Candidate, plan_hazards

PARTIAL = Candidate("lending", "loans", ("desk_id",), where='"returned_at" IS NULL')
PLAIN = Candidate("lending", "loans", ("lent_at",))
ROWS = {("lending", "loans"): 1_000_000.0}


def bitmap_and(arm: str, arm_rows: int) -> dict:
    return {"Node Type": "Nested Loop", "Plans": [
        {"Node Type": "Index Scan", "Index Name": "copies_title_branch", "Index Cond": "(title_id = 77)"},
        {"Node Type": "Bitmap Heap Scan", "Relation Name": "loans", "Plans": [
            {"Node Type": "BitmapAnd", "Plans": [
                {"Node Type": "Bitmap Index Scan", "Index Name": "loans_copy", "Index Cond": "(copy_id = c.id)",
                 "Plan Rows": 10},
                {"Node Type": "Bitmap Index Scan", "Index Name": arm, "Plan Rows": arm_rows}]}]}]}


def test_a_partial_index_anded_into_a_bitmap_with_an_existing_index_is_a_hazard():
    found = plan_hazards(bitmap_and("<13556>btree_loans_desk_id", 22_002), {"<13556>btree_loans_desk_id": PARTIAL},
                         ROWS, {"copy_id", "id", "title_id", "returned_at"})
    # read whole for its WHERE on a column the statement never names, and ANDed with loans_copy
    assert [why.split(" — ")[0] for _, why in found] == [
        "its plan would AND idx_loans_desk_id_part (partial) with loans_copy in a bitmap",
        "its plan would read all of idx_loans_desk_id_part (no index condition, only its WHERE \"returned_at\" IS NULL)"]
    assert all(candidate == PARTIAL for candidate, _ in found)


def test_a_low_selectivity_arm_is_a_hazard_a_selective_one_is_not():
    wide = plan_hazards(bitmap_and("<1>btree_loans_lent_at", 200_000), {"<1>btree_loans_lent_at": PLAIN}, ROWS,
                        {"copy_id", "lent_at"})
    assert [why.split(" — ")[0] for _, why in wide] == [
        "its plan would AND idx_loans_lent_at (20% of the table) with loans_copy in a bitmap"]
    assert plan_hazards(bitmap_and("<1>btree_loans_lent_at", 2_000), {"<1>btree_loans_lent_at": PLAIN}, ROWS,
                        {"copy_id", "lent_at"}) == []


def test_a_partial_index_scanned_for_the_statement_s_own_columns_is_no_hazard():
    plan = {"Node Type": "Index Only Scan", "Index Name": "<2>btree_loans_desk_id", "Plan Rows": 5000}
    # counting the open loans of all desks reads the partial index whole: the plan it was made for
    assert plan_hazards(plan, {"<2>btree_loans_desk_id": PARTIAL}, ROWS, {"desk_id", "returned_at"}) == []
    assert plan_hazards(plan, {"<2>btree_loans_desk_id": PARTIAL}, ROWS, {"copy_id", "returned_at"}) != []
    # an existing index is none of advise's business here
    assert plan_hazards(bitmap_and("loans_desk", 22_002), {}, ROWS, {"copy_id"}) == []
