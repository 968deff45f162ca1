"""Algorithm 3 (MDS) and its greedy baselines, on the driver with pandas only (no Spark session)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from date_spark.columns import ARM
from date_spark.config import SelectionConfig
from date_spark.errors import ConfigError, InputError
from date_spark.rules import Rule, parse_rule
from date_spark.selection import (
    STRATEGIES,
    Arm,
    Selection,
    diversity,
    rule_overlap,
    select,
)

from .conftest import DOMAINS, KINDS, RULES, Planted, true_rows


def run(
    planted: Planted,
    arms: list[Arm],
    strategy: str = "bandit",
    *,
    budget_rows: int = 100,
    min_z: float | None = None,
    screen_z: float | None = None,
    **kw: Any,
) -> Selection:
    opts: dict[str, Any] = {"strategy": strategy, "budget_rows": budget_rows}
    if min_z is not None:
        opts["min_z"] = min_z
    if screen_z is not None:
        opts["screen_z"] = screen_z
    cfg = SelectionConfig.model_validate(opts)
    return select(arms, planted.evaluator(), cfg, kinds=KINDS, domains=DOMAINS, **kw)


def heldout_error(planted: Planted, sel: Selection) -> float:
    """Test-split error of the partition models trained with the kept rows (measurement only:
    the selection itself never sees these rows)."""
    return -planted.evaluator(planted.test).score(sel.rows.drop(columns=ARM))


# ----------------------------------------------------------------------------------------------
# Diversity
# ----------------------------------------------------------------------------------------------


def test_diversity_is_one_for_disjoint_and_below_one_for_overlapping_rules() -> None:
    r3 = RULES["R3"]  # x0 >= 0.6 and x5 < 0.5
    disjoint = RULES["R4"]  # x0 >= 0.6 and x5 >= 0.5
    inside = r3.and_(parse_rule("x6 >= 0.7", KINDS))
    shifted = parse_rule("x0 >= 0.5 and x5 < 0.5", KINDS)
    assert diversity(inside, [], kinds=KINDS, domains=DOMAINS) == 1.0
    assert diversity(disjoint, [r3], kinds=KINDS, domains=DOMAINS) == 1.0
    assert diversity(r3, [r3], kinds=KINDS, domains=DOMAINS) == 0.0
    # nested: the inner box is 30% of the outer one (x6 in [0.7, 1) of [0, 1))
    assert rule_overlap(inside, r3, kinds=KINDS, domains=DOMAINS) == pytest.approx(0.3)
    assert diversity(inside, [r3], kinds=KINDS, domains=DOMAINS) == pytest.approx(0.7)
    # partial overlap on one column: [0.6, 1) vs [0.5, 1) -> 0.4 / 0.5
    assert diversity(shifted, [r3], kinds=KINDS, domains=DOMAINS) == pytest.approx(0.2)
    # the closest selected rule counts (max overlap), not the average
    assert diversity(inside, [disjoint, r3], kinds=KINDS, domains=DOMAINS) == pytest.approx(0.7)


def test_categorical_views_use_set_overlap_within_the_domain() -> None:
    ab = RULES["R1"]  # c0 in (a, b), x0 in [0.3, 0.6)
    cd = RULES["R2"]
    bc = parse_rule("x0 >= 0.3 and x0 < 0.6 and c0 in ('b', 'c')", KINDS)
    not_a = parse_rule("x0 >= 0.3 and x0 < 0.6 and c0 != 'a'", KINDS)
    assert diversity(ab, [cd], kinds=KINDS, domains=DOMAINS) == 1.0
    assert rule_overlap(ab, bc, kinds=KINDS, domains=DOMAINS) == pytest.approx(1 / 3)
    # != is measured against the domain {a, b, c, d}: {b, c, d} vs {a, b} -> 1 / 4
    assert rule_overlap(ab, not_a, kinds=KINDS, domains=DOMAINS) == pytest.approx(1 / 4)


def test_domains_are_inferred_from_the_arms_when_missing(planted: Planted) -> None:
    arms = list(planted.helpful)
    with_domains = select(
        arms, planted.evaluator(), SelectionConfig(), kinds=KINDS, domains=DOMAINS
    )
    without = select(arms, planted.evaluator(), SelectionConfig(), kinds=KINDS)
    assert without.selected and without.trace
    assert all(0.0 <= s.diversity <= 1.0 for s in without.trace if not math.isnan(s.diversity))
    assert with_domains.best_score > with_domains.baseline


# ----------------------------------------------------------------------------------------------
# The bandit on the planted table
# ----------------------------------------------------------------------------------------------


def test_bandit_keeps_helpful_arms_and_rejects_harmful_ones(planted: Planted) -> None:
    sel = run(planted, planted.arms)
    helpful = {a.arm_id for a in planted.helpful}
    harmful = {a.arm_id for a in planted.harmful}
    assert sel.selected, sel.trace_frame().to_string()
    assert set(sel.selected) <= helpful
    # at least one helpful arm per thinned regime
    assert {a.split("-")[1] for a in sel.selected} == {"R2", "R3"}
    for arm_id in harmful:
        steps = [s for s in sel.trace if s.arm_id == arm_id]
        assert steps and not any(s.accepted for s in steps)
        assert all(s.gain <= 0 for s in steps)
    assert sel.best_score > sel.baseline
    # validation, not the (misleading) generation-time prior, decided: harmful arms rank higher
    assert min(a.gain for a in planted.harmful) > max(a.gain for a in planted.helpful)
    # kept rows are the selected arms' rows, tagged, in acceptance order
    assert list(dict.fromkeys(sel.rows[ARM])) == sel.selected
    assert heldout_error(planted, sel) < -planted.evaluator(planted.test).baseline()


def test_trace_is_complete_and_deterministic_for_a_seed(planted: Planted) -> None:
    arms = planted.arms
    a = run(planted, arms, seed=7, screen_z=1.645)
    b = run(planted, list(reversed(arms)), seed=7, screen_z=1.645)  # input order does not matter
    assert a.trace == b.trace
    assert a.selected == b.selected
    pd.testing.assert_frame_equal(a.rows, b.rows)
    assert [s.step for s in a.trace] == list(range(1, len(a.trace) + 1))
    assert {s.arm_id for s in a.trace} == {arm.arm_id for arm in arms}  # every arm was tried
    assert [s.arm_id for s in a.trace if s.accepted] == a.selected
    for s in a.trace:
        assert 0.0 <= s.quality <= 1.0 and 0.0 <= s.diversity <= 1.0 and 0.0 <= s.utility <= 1.0
        assert s.utility == pytest.approx(0.8 * s.quality + 0.2 * s.diversity)
        assert s.ucb >= s.utility and s.reason
        # accepted exactly when the gain is positive AND passes the screen (z > 1.645 here):
        # good-R2-1 gains 7 validation rows net on top of good-R3-1 and good-R2-0 but only at
        # z = 1.61, so it is rejected then
        assert s.accepted == (s.gain > 0 and s.z > 1.645)
        assert math.isfinite(s.z) and s.z * s.gain >= 0  # z has the sign of the gain
    assert any(s.gain > 0 and not s.accepted and "not significant" in s.reason for s in a.trace)
    frame = a.trace_frame()
    assert len(frame) == len(a.trace) and {"arm_id", "ucb", "accepted", "gain"} <= set(frame)
    # a step's score_after is the running best score; the last accepted one is the final score
    assert a.trace[-1].score_after == pytest.approx(a.best_score)


def test_a_failed_arm_is_retried_once_the_selection_changes_then_rejected(
    planted: Planted,
) -> None:
    once = run(planted, planted.arms, max_tries=1)
    twice = run(planted, planted.arms, max_tries=2)
    tries_once = pd.Series([s.arm_id for s in once.trace]).value_counts()
    tries_twice = pd.Series([s.arm_id for s in twice.trace]).value_counts()
    assert tries_once.max() == 1
    assert tries_twice.max() == 2
    retried = [s for s in twice.trace if "permanently" in s.reason]
    assert retried and all(not math.isinf(s.ucb) for s in retried)  # second tries carry a UCB
    first_tries = [s for s in twice.trace if math.isinf(s.ucb)]
    assert len(first_tries) == len(planted.arms)


# ----------------------------------------------------------------------------------------------
# Budget
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("oversize", ["truncate", "skip"])
def test_selection_respects_the_budget(planted: Planted, strategy: str, oversize: str) -> None:
    sel = run(planted, list(planted.helpful), strategy, budget_rows=30, oversize=oversize)
    assert 0 < sel.n_rows <= 30
    counts = sel.rows[ARM].value_counts()
    if oversize == "skip":
        assert (counts == 20).all()  # whole arms only
    else:
        assert counts.max() <= 20
        assert sel.trace
        for s in sel.trace:
            if s.accepted and s.rows < 20 and strategy != "backward":
                assert "truncated 20 -> " in s.reason


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_arms_larger_than_the_whole_budget(planted: Planted, strategy: str) -> None:
    arms = list(planted.helpful)
    truncated = run(planted, arms, strategy, budget_rows=8)
    assert 0 < truncated.n_rows <= 8
    skipped = run(planted, arms, strategy, budget_rows=8, oversize="skip")
    assert skipped.selected == [] and skipped.n_rows == 0
    assert skipped.best_score == skipped.baseline
    assert skipped.trace and all(s.reason.startswith("skipped") for s in skipped.trace)
    assert list(skipped.rows.columns) == [*arms[0].rows.columns, ARM]


# ----------------------------------------------------------------------------------------------
# One interface for every strategy
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_runs_through_the_same_interface(planted: Planted, strategy: str) -> None:
    sel = run(planted, planted.arms, strategy)
    assert isinstance(sel, Selection) and sel.strategy == strategy
    assert sel.n_rows <= 100 and sel.trace and sel.stop_reason
    assert len(set(sel.selected)) == len(sel.selected)
    assert set(sel.rows[ARM]) == set(sel.selected)
    assert list(sel.rows.columns) == [*planted.arms[0].rows.columns, ARM]
    assert sel.baseline == pytest.approx(planted.evaluator().baseline())
    # best_score is the validation score of exactly the kept rows
    canonical = sel.rows.sort_values(ARM, kind="stable").drop(columns=ARM)
    assert planted.evaluator().score(canonical) == pytest.approx(sel.best_score)
    if strategy in ("bandit", "forward"):
        assert sel.best_score > sel.baseline
        assert not set(sel.selected) & {a.arm_id for a in planted.harmful}
    again = run(planted, planted.arms, strategy)
    assert again.trace == sel.trace and again.selected == sel.selected


def test_topk_follows_the_generation_prior_even_when_it_misleads(planted: Planted) -> None:
    sel = run(planted, planted.arms, "topk")
    # the harmful arms carry the higher generation-time gain, so Top-5 takes them first
    assert set(sel.selected[:4]) == {a.arm_id for a in planted.harmful}
    assert sel.best_score < sel.baseline


# ----------------------------------------------------------------------------------------------
# Bandit vs greedy: what was measured (see the report in the module doc of date_spark.selection)
# ----------------------------------------------------------------------------------------------


def test_bandit_and_forward_greedy_on_the_helpful_harmful_table(planted: Planted) -> None:
    """Measured: under the paper's rule (min_z 0) and the default screen (z > 1) both keep the same
    three helpful arms (in a different order) and tie on held-out error; the bandit needs half the
    evaluations (one pull per arm at most twice, against one evaluation per remaining arm per
    round). With a stricter screen (z > 1.645) forward greedy stops one arm earlier: on top of
    good-R2-0 and good-R3-1, good-R2-1 still fixes more validation rows than it breaks, but at
    z = 1.61; the bandit had accepted it before good-R2-0 (z = 2.27). Neither keeps a harmful arm
    under any rule, and every result beats keeping nothing on held-out rows."""
    nothing = -planted.evaluator(planted.test).baseline()
    bandit = run(planted, planted.arms, "bandit", min_z=0)
    forward = run(planted, planted.arms, "forward", min_z=0)
    assert set(bandit.selected) == set(forward.selected) == {"good-R2-0", "good-R2-1", "good-R3-1"}
    assert heldout_error(planted, bandit) == pytest.approx(heldout_error(planted, forward))
    assert heldout_error(planted, bandit) < nothing
    assert bandit.evaluations < forward.evaluations
    for strategy in ("bandit", "forward"):
        default = run(planted, planted.arms, strategy)
        assert set(default.selected) == set(bandit.selected)
    bandit_z = run(planted, planted.arms, "bandit", screen_z=1.645)
    forward_z = run(planted, planted.arms, "forward", screen_z=1.645)
    assert bandit_z.selected == bandit.selected
    assert set(forward_z.selected) == set(forward.selected) - {"good-R2-1"}
    last = [s for s in forward_z.trace if s.arm_id == "good-R2-1"][-1]
    assert last.gain > 0 and 0 < last.z <= 1.645 and not last.accepted
    assert "not significant" in last.reason
    assert heldout_error(planted, forward_z) < nothing
    assert bandit_z.evaluations < forward_z.evaluations
    assert not any(a.startswith("bad") for a in [*bandit_z.selected, *forward_z.selected])


def test_first_improvement_can_lock_in_a_weaker_arm_forward_greedy_does_not(
    degenerate: Planted,
) -> None:
    """Measured weakness of the bandit (first improvement, ordered by a prior) against forward
    greedy (best improvement). With R3 thinned to 6 rows its model is worse than the majority
    class, so the label-flipped arm bad-R3-1 (all zeros) *does* lower R3's loss. Its misleading
    prior makes the bandit try it first and accept it; good-R3-1 holds the same rows with the
    opposite labels and is accepted on top (the conflicting pairs leave the tree unsure there,
    which the Brier score rewards), so the bandit keeps the harmful rows. Forward greedy scores
    both first and takes good-R3-1 only; it ends better on validation and on held-out rows."""
    bandit = run(degenerate, degenerate.arms, "bandit")
    forward = run(degenerate, degenerate.arms, "forward")
    assert bandit.selected[0] == "bad-R3-1" and "good-R3-1" in bandit.selected
    assert "good-R3-1" in forward.selected and "bad-R3-1" not in forward.selected
    assert forward.best_score > bandit.best_score
    assert heldout_error(degenerate, forward) < heldout_error(degenerate, bandit)
    # the bandit's pick still beat keeping nothing, on validation and on held-out rows
    assert bandit.best_score > bandit.baseline
    assert heldout_error(degenerate, bandit) < -degenerate.evaluator(degenerate.test).baseline()


def _dup_arms(planted: Planted, e_prior: float) -> tuple[list[Arm], Arm, Arm, Arm]:
    good = {a.arm_id: a for a in planted.helpful}
    d1 = good["good-R3-1"]
    rows = d1.rows.copy()
    rng = np.random.default_rng(5)
    feats = [c for c in rows.columns if c.startswith("x")]
    rows[feats] = (rows[feats] + rng.normal(0, 0.003, (len(rows), len(feats)))).clip(0, 0.999)
    rows = rows[d1.rule.mask(rows).to_numpy()].reset_index(drop=True)
    a1 = Arm("d1-R3", "R3", 1, d1.rule, d1.rows, gain=0.05)
    a2 = Arm("d2-R3", "R3", 2, d1.rule, rows, gain=0.05)  # a near-copy of d1, same path
    e = Arm("e-R2", "R2", 1, good["good-R2-0"].rule, good["good-R2-0"].rows, gain=e_prior)
    return [a1, a2, e], a1, a2, e


def test_duplicate_region_fools_topk_not_forward_or_bandit(degenerate: Planted) -> None:
    """An arm whose generation-time quality is high but which duplicates an already-selected
    region: Top-k keeps both copies; forward greedy re-scores marginal gains and takes the other
    region; the bandit does too, and with a moderately good prior for the other region its
    diversity term picks it without ever scoring the duplicate."""
    arms, a1, a2, e = _dup_arms(degenerate, e_prior=0.02)
    topk = run(degenerate, arms, "topk", budget_rows=40)
    forward = run(degenerate, arms, "forward", budget_rows=40)
    bandit = run(degenerate, arms, "bandit", budget_rows=40)
    assert {a1.arm_id, a2.arm_id} <= set(topk.selected)
    for sel in (forward, bandit):
        assert e.arm_id in sel.selected and len({a1.arm_id, a2.arm_id} & set(sel.selected)) == 1
        assert heldout_error(degenerate, sel) < heldout_error(degenerate, topk)
    # prior 0.02: the duplicate (diversity 0) still ranks next, is scored, and fails
    dup = [s for s in bandit.trace if s.diversity == 0.0]
    assert dup and dup[0].step == 2 and not any(s.accepted for s in dup)
    arms, a1, a2, e = _dup_arms(degenerate, e_prior=0.035)
    bandit = run(degenerate, arms, "bandit", budget_rows=40)
    assert e.arm_id in bandit.selected
    first = [s for s in bandit.trace if s.step <= 2]
    assert first and all(s.diversity > 0 for s in first)
    assert bandit.evaluations < forward.evaluations


def _knapsack_arms(planted: Planted, big_prior: float) -> tuple[list[Arm], Arm]:
    good = {a.arm_id: a for a in planted.helpful}
    low = true_rows(3, 20, 201, parse_rule("x6 < 0.7", KINDS))
    high = true_rows(3, 20, 202, parse_rule("x6 >= 0.7", KINDS))
    big = Arm("big-R3", "R3", 1, RULES["R3"], pd.concat([low, high], ignore_index=True), big_prior)
    s1 = Arm("small-R3", "R3", 1, good["good-R3-1"].rule, good["good-R3-1"].rows, gain=0.05)
    s2 = Arm("small-R2", "R2", 1, good["good-R2-0"].rule, good["good-R2-0"].rows, gain=0.04)
    return [big, s1, s2], big


def test_forward_greedy_is_myopic_under_a_budget_and_the_bandit_only_as_good_as_its_prior(
    degenerate: Planted,
) -> None:
    """Budget 40: one 40-row arm covering R3 has the largest single validation gain, but two
    20-row arms (one in R3, one in R2) do better together. Forward greedy takes the big arm and
    spends the budget (Theorem 2's missing greedy-choice property). The bandit accepts the first
    arm that improves, in order of utility: when the generation-time prior ranks the big arm first
    it makes the same myopic choice; when the prior ranks it last it keeps the better pair."""
    arms, big = _knapsack_arms(degenerate, big_prior=0.06)
    forward = run(degenerate, arms, "forward", budget_rows=40)
    assert forward.selected == [big.arm_id]
    fooled = run(degenerate, arms, "bandit", budget_rows=40)
    assert fooled.selected == [big.arm_id]
    arms, big = _knapsack_arms(degenerate, big_prior=0.03)
    bandit = run(degenerate, arms, "bandit", budget_rows=40)
    assert sorted(bandit.selected) == ["small-R2", "small-R3"]
    assert bandit.best_score > forward.best_score
    assert heldout_error(degenerate, bandit) < heldout_error(degenerate, forward)
    assert run(degenerate, arms, "forward", budget_rows=40).selected == [big.arm_id]


class _SetEvaluator:
    """A scripted evaluator: the score depends only on which arms' rows are present (column
    `tag`), so interactions between arms can be stated exactly."""

    def __init__(self, value: Callable[[frozenset[str]], float]) -> None:
        self.value = value

    def baseline(self) -> float:
        return self.value(frozenset())

    def score(self, extra: pd.DataFrame) -> float:
        return self.value(frozenset(extra["tag"]))


def _tagged(tag: str, rule: Rule, n: int = 10, gain: float = 0.01) -> Arm:
    rows = pd.DataFrame({"tag": [tag] * n, "x0": np.linspace(0, 0.29, n), "y": 0})
    return Arm(tag, "R", 1, rule, rows, gain)


def test_two_arms_that_only_help_together() -> None:
    """Neither arm helps alone (each costs 0.01) but together they gain 0.1. Any strategy that
    accepts one arm at a time on improvement, forward greedy and this bandit alike, keeps neither;
    backward greedy, which starts from all arms, keeps both. Measured, not a bandit win."""

    def value(tags: frozenset[str]) -> float:
        pair = {"p", "q"} & tags
        return -0.5 + (0.1 if len(pair) == 2 else -0.01 * len(pair)) + 0.02 * ("r" in tags)

    arms = [
        _tagged("p", RULES["R0"]),
        _tagged("q", RULES["R1"]),
        _tagged("r", RULES["R3"], gain=0.001),
    ]
    ev = _SetEvaluator(value)
    out = {
        s: select(
            arms, ev, SelectionConfig.model_validate({"strategy": s}), kinds=KINDS, domains=DOMAINS
        )
        for s in STRATEGIES
    }
    assert out["forward"].selected == ["r"]
    assert out["bandit"].selected == ["r"]
    assert sorted(out["backward"].selected) == ["p", "q", "r"]
    assert out["backward"].best_score == pytest.approx(-0.38)
    assert out["bandit"].best_score == pytest.approx(-0.48)


# ----------------------------------------------------------------------------------------------
# Input errors
# ----------------------------------------------------------------------------------------------


def test_bad_arms_and_options_are_domain_errors(planted: Planted) -> None:
    a = planted.helpful[0]
    ev = planted.evaluator()
    with pytest.raises(InputError, match="appears twice"):
        select([a, a], ev, SelectionConfig())
    other = Arm("other", "R2", 1, a.rule, a.rows.drop(columns=["x9"]), 0.0)
    with pytest.raises(InputError, match="different columns"):
        select([a, other], ev, SelectionConfig())
    tagged = Arm("tagged", "R2", 1, a.rule, a.rows.assign(**{ARM: "x"}), 0.0)
    with pytest.raises(InputError, match=ARM):
        select([tagged], ev, SelectionConfig())
    with pytest.raises(ConfigError, match="max_tries"):
        select([a], ev, SelectionConfig(), max_tries=0)
    with pytest.raises(ConfigError, match="oversize"):
        select([a], ev, SelectionConfig(), oversize="drop")  # type: ignore[arg-type]


def test_no_arms_selects_nothing(planted: Planted) -> None:
    for strategy in STRATEGIES:
        cfg = SelectionConfig.model_validate({"strategy": strategy})
        sel = select([], planted.evaluator(), cfg)
        assert sel.selected == [] and sel.n_rows == 0 and sel.best_score == sel.baseline


def test_an_unknown_generation_gain_is_a_neutral_prior(planted: Planted) -> None:
    arms = [replace(a, gain=math.nan) for a in planted.arms]
    sel = run(planted, arms)
    assert set(sel.selected) <= {a.arm_id for a in planted.helpful} and sel.selected
    first = sel.trace[0]
    assert math.isinf(first.ucb)
    topk = run(planted, [*arms[:2], replace(planted.arms[2], gain=0.01)], "topk")
    assert topk.selected[0] == planted.arms[2].arm_id  # a known gain ranks before unknown ones


def test_an_arm_with_no_rows_is_never_selected(planted: Planted) -> None:
    a = planted.helpful[0]
    empty = Arm("empty", a.dgr_id, 1, a.rule, a.rows.iloc[:0], gain=1.0)
    for strategy in STRATEGIES:
        sel = run(planted, [empty, a], strategy)
        assert "empty" not in sel.selected
