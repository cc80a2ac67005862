"""The gate's evidence rules on plan JSON as PostgreSQL prints it: plan identity, work ratios, the time interval, and
what a phase's steps changed."""

from __future__ import annotations

from pgconverge import evidence
from pgconverge.evidence import Baseline, Reading
from pgconverge.gates import phase_changes
from pgconverge.model import Action, Lock, Step

NESTED_LOOP = {
    "Node Type": "Nested Loop", "Join Type": "Anti", "Actual Rows": 3, "Actual Loops": 1,
    "Shared Hit Blocks": 70, "Shared Read Blocks": 2,
    "Plans": [
        {"Node Type": "Index Scan", "Relation Name": "copies", "Index Name": "copies_title_branch",
         "Parent Relationship": "Outer", "Actual Rows": 5, "Actual Loops": 1, "Rows Removed by Filter": 0},
        {"Node Type": "Index Scan", "Relation Name": "loans", "Index Name": "loans_copy",
         "Parent Relationship": "Inner", "Actual Rows": 0, "Actual Loops": 5, "Rows Removed by Filter": 10},
    ],
}
HASH_ANTI = {
    "Node Type": "Hash Join", "Join Type": "Anti", "Actual Rows": 3, "Actual Loops": 1,
    "Plans": [
        {"Node Type": "Index Scan", "Relation Name": "copies", "Index Name": "copies_title_branch",
         "Parent Relationship": "Outer", "Actual Rows": 5, "Actual Loops": 1},
        {"Node Type": "Hash", "Parent Relationship": "Inner", "Plans": [
            {"Node Type": "Index Scan", "Relation Name": "loans", "Index Name": "loans_open_by_desk",
             "Parent Relationship": "Outer", "Actual Rows": 22_000, "Actual Loops": 1}]},
    ],
}


def reading(plan: dict, blocks: int) -> Reading:
    return Reading(evidence.shape(plan), evidence.read_names(plan), blocks, evidence.rows_read(plan), 1.0)


def test_the_same_plan_with_other_numbers_is_unchanged_and_another_join_is_not():
    busier = {**NESTED_LOOP, "Actual Rows": 4, "Shared Hit Blocks": 90, "Total Cost": 99.0}
    assert evidence.shape(busier) == evidence.shape(NESTED_LOOP)
    assert evidence.shape(HASH_ANTI) != evidence.shape(NESTED_LOOP)
    assert evidence.read_names(NESTED_LOOP) == {"copies", "copies_title_branch", "loans", "loans_copy"}
    assert evidence.rows_read(NESTED_LOOP) == 5 + 5 * 10


def test_an_unchanged_plan_that_reads_what_the_phase_rebuilt_or_a_phase_with_functions_is_judged_by_work():
    before = Baseline("q", [{}], [reading(NESTED_LOOP, 72)])
    after = [reading(NESTED_LOOP, 72)]
    assert evidence.plan_unchanged(before, after, {"loans_by_lent_at"}, opaque=False)
    assert not evidence.plan_unchanged(before, after, {"loans_copy"}, opaque=False)
    assert not evidence.plan_unchanged(before, after, set(), opaque=True)
    assert not evidence.plan_unchanged(before, [reading(HASH_ANTI, 72)], set(), opaque=False)


def test_work_is_judged_on_the_worst_parameter_set_with_a_few_blocks_of_slack():
    before = Baseline("q", [{}, {}, {}], [reading(NESTED_LOOP, b) for b in (72, 2, 400)])
    better = evidence.judge_work(before, [reading(HASH_ANTI, b) for b in (60, 5, 380)], 1.2)
    assert better.passed and "per-set ratio median 0.95 / worst 1.17 (set 2: 2 → 5 blocks" in better.evidence
    assert "work 474 → 445 blocks over 3 parameter sets" in better.evidence
    tail = evidence.judge_work(before, [reading(HASH_ANTI, b) for b in (60, 5, 683)], 1.2)
    assert not tail.passed and "(set 3: 400 → 683 blocks, rows read 55 → 22,005)" in tail.evidence


def test_time_fails_only_when_the_whole_interval_lies_above_the_ratio():
    before = Baseline("q", [{}, {}], [], times=[[1.0, 1.1, 0.9, 1.0, 1.2], [2.0, 2.1, 1.9, 2.0, 2.2]])
    noisy = [[1.0, 3.0, 0.9, 1.1, 4.0], [2.0, 6.0, 1.9, 2.1, 2.0]]
    assert evidence.judge_time(before, noisy, 1.2, 0.0, "s").passed
    slower = [[3.0, 3.1, 2.9, 3.0, 3.2], [6.0, 6.1, 5.9, 6.0, 6.2]]
    verdict = evidence.judge_time(before, slower, 1.2, 0.0, "s")
    assert not verdict.passed and "time ratio 3.00 (95 % interval" in verdict.evidence
    assert evidence.judge_time(before, slower, 1.2, 5.0, "s").passed  # within 1.2× + 5 ms


def test_a_phase_changes_what_it_builds_and_a_function_makes_plans_opaque():
    build = Step(("CREATE INDEX CONCURRENTLY …",), "missing", "index loans_by_lent_at", Lock.SHARE_UPDATE_EXCLUSIVE,
                 "p", action=Action.BUILD_CONCURRENTLY, builds='lending."loans_by_lent_at_p1"', target="index")
    mark = Step(("COMMENT …",), "mark", "index loans_copy", Lock.SHARE_UPDATE_EXCLUSIVE, "p", action=Action.MARK,
                target="index")
    changes = phase_changes([build, mark])
    assert changes.names == {"loans_by_lent_at", "loans_by_lent_at_p1"} and not changes.opaque
    function = Step(("CREATE OR REPLACE FUNCTION …",), "body", "function app.stats", Lock.NONE, "p",
                    action=Action.CREATE, target="function")
    assert phase_changes([function]).opaque
