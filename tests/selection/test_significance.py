"""The noise-aware rules (`SelectionConfig.screen_z`, `min_z`): paired z on per-row losses, the
screen during the search, one confirmation of the kept set, and the power report."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsClassifier

from date_spark.columns import ARM
from date_spark.config import SelectionConfig
from date_spark.errors import InputError
from date_spark.modeling.models import ModelSpec
from date_spark.selection import (
    Arm,
    CrossFitEvaluator,
    Selection,
    paired_z,
    screen_threshold,
    select,
)

from .conftest import DOMAINS, KINDS, RULES, TREE, Planted, encode, make_evaluator, partitions

DEFAULT_MIN_Z = SelectionConfig().min_z


def cfg(strategy: str = "bandit", **kw: Any) -> SelectionConfig:
    """These tests pin the statistic at a one-sided 5% screen (screen_z = min_z = 1.645) unless
    they say otherwise."""
    return SelectionConfig.model_validate({"strategy": strategy, "screen_z": 1.645, **kw})


# ----------------------------------------------------------------------------------------------
# The statistic
# ----------------------------------------------------------------------------------------------


def test_paired_z_on_0_1_losses_is_mcnemars() -> None:
    """On 0/1 losses the paired z of the differences is McNemar's (b - c) / sqrt(b + c) up to a
    finite-sample factor; one row flipped out of many is z = 1 exactly."""
    n = 1200
    before = np.zeros(n)
    before[:300] = 1.0
    after = before.copy()
    after[:10] = 0.0  # b = 10 fixed
    after[300:301] = 1.0  # c = 1 broken
    assert paired_z(before, after) == pytest.approx(9 / math.sqrt(11), rel=0.01)
    assert paired_z(after, before) == pytest.approx(-paired_z(before, after))  # antisymmetric
    assert paired_z(before, before) == 0.0
    one = before.copy()
    one[0] = 0.0
    assert paired_z(before, one) == pytest.approx(1.0)


def test_continuous_z_is_the_paired_z_of_the_loss_differences() -> None:
    rng = np.random.default_rng(0)
    before = rng.exponential(1.0, 300)
    after = before - rng.normal(0.05, 0.5, 300)
    d = before - after
    expected = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert paired_z(before, after) == pytest.approx(expected)
    assert paired_z(after, before) == pytest.approx(-expected)
    assert paired_z(before, before) == 0.0  # sd = 0 and mean = 0
    assert paired_z(np.full(4, 2.0), np.full(4, 1.5)) == math.inf  # sd = 0
    with pytest.raises(InputError, match="same rows"):
        paired_z(before, after[:-1])


def test_the_screen_is_the_smaller_of_screen_z_and_min_z() -> None:
    assert screen_threshold(SelectionConfig()) == 1.0
    assert screen_threshold(SelectionConfig(screen_z=2.0)) == pytest.approx(1.645)
    assert screen_threshold(SelectionConfig(min_z=0)) == 0.0  # the paper's rule everywhere


# ----------------------------------------------------------------------------------------------
# A scripted evaluator with exact per-row losses
# ----------------------------------------------------------------------------------------------


class _LossEvaluator:
    """Per-row losses = `base` plus the additive effect of each arm present (column `tag`);
    score = minus their mean, as for `CrossFitEvaluator`."""

    def __init__(self, task: str, base: np.ndarray, effects: Mapping[str, np.ndarray]) -> None:
        self.base = base
        self.effects = effects

    def losses(self, extra: pd.DataFrame) -> np.ndarray:
        out = self.base.copy()
        for tag in sorted(set(extra["tag"])):
            out += self.effects[tag]
        return out

    def score(self, extra: pd.DataFrame) -> float:
        return -float(np.mean(self.losses(extra)))

    def baseline(self) -> float:
        return self.score(pd.DataFrame({"tag": []}))


class _ScoreOnly:
    """The same scores without `losses`: judged by the paper's rule."""

    def __init__(self, inner: _LossEvaluator) -> None:
        self.inner = inner

    def score(self, extra: pd.DataFrame) -> float:
        return self.inner.score(extra)

    def baseline(self) -> float:
        return self.inner.baseline()


def _arm(tag: str, rule: str, gain: float = 0.01) -> Arm:
    rows = pd.DataFrame({"tag": [tag] * 5, "x0": np.linspace(0, 0.29, 5), "y": 0})
    return Arm(tag, "R", 1, RULES[rule], rows, gain)


N_VALID = 1200  # about the validation size of the job's end-to-end test


def _classification(spec: Mapping[str, tuple[int, int]]) -> _LossEvaluator:
    """1200 validation rows, the first 300 misclassified; arm -> (b rows it fixes, c rows it
    breaks), each arm on its own rows."""
    base = np.zeros(N_VALID)
    base[:300] = 1.0
    effects: dict[str, np.ndarray] = {}
    fix_at, break_at = 0, 300
    for tag, (b, c) in spec.items():
        e = np.zeros(N_VALID)
        e[fix_at : fix_at + b] = -1.0
        e[break_at : break_at + c] = 1.0
        fix_at, break_at = fix_at + b, break_at + c
        effects[tag] = e
    return _LossEvaluator("classification", base, effects)


SPEC = {"noise": (1, 0), "two": (2, 0), "three": (3, 0), "good": (10, 1), "harm": (0, 1)}
ARMS = [
    _arm("noise", "R0", 0.05),  # the best prior: tried first
    _arm("two", "R1", 0.04),
    _arm("three", "R2", 0.03),
    _arm("good", "R3", 0.02),
    _arm("harm", "R4", 0.01),
]


@pytest.mark.parametrize("strategy", ["bandit", "forward"])
def test_one_flipped_validation_row_admits_no_arm_at_the_default(strategy: str) -> None:
    """An arm whose only effect is one validation row becoming correct gains 1/1200 = 0.0008
    (z = 1): rejected at the default; so is two rows (z = 1.41). Three rows with none lost
    (z = 1.73) and 10 fixed / 1 broken (z = 2.71) are accepted. With min_z 0 (the paper's rule)
    every strict improvement is accepted."""
    ev = _classification(SPEC)
    sel = select(ARMS, ev, cfg(strategy), kinds=KINDS, domains=DOMAINS)
    assert sorted(sel.selected) == ["good", "three"]
    noise = [s for s in sel.trace if s.arm_id == "noise"]
    assert noise and not any(s.accepted for s in noise)
    assert all(s.z == pytest.approx(1.0) and s.gain == pytest.approx(1 / N_VALID) for s in noise)
    assert all("not significant (z=1.00 <= min_z 1.645)" in s.reason for s in noise)
    good = [s for s in sel.trace if s.arm_id == "good"]
    assert good and all(s.z == pytest.approx(9 / math.sqrt(11), rel=0.01) for s in good)
    assert "significantly" in sel.stop_reason
    paper = select(ARMS, ev, cfg(strategy, min_z=0), kinds=KINDS, domains=DOMAINS)
    assert sorted(paper.selected) == ["good", "noise", "three", "two"]
    assert paper.best_score == pytest.approx(ev.baseline() + 15 / N_VALID)
    # an evaluator without per-row losses keeps the paper's rule, and records no z
    plain = select(ARMS, _ScoreOnly(ev), cfg(strategy), kinds=KINDS, domains=DOMAINS)
    assert plain.selected == paper.selected
    assert plain.trace and all(math.isnan(s.z) for s in plain.trace)


def test_forward_greedy_takes_the_best_significant_arm_not_the_best_score() -> None:
    """`big` gains most (30 fixed, 20 broken: +10 rows, z = 1.41) but not significantly; `sure`
    gains less (+5 rows, none broken: z = 2.24). The default takes `sure` and then stops (`big` on
    top is still z = 1.41); the paper's rule takes `big` first, then `sure`."""
    ev = _classification({"big": (30, 20), "sure": (5, 0)})
    arms = [_arm("big", "R0"), _arm("sure", "R1")]
    sel = select(arms, ev, cfg("forward"), kinds=KINDS, domains=DOMAINS)
    assert sel.selected == ["sure"]
    first = {s.arm_id: s for s in sel.trace[:2]}
    assert first["big"].gain > first["sure"].gain > 0
    assert first["big"].z == pytest.approx(10 / math.sqrt(50), rel=0.01)
    assert not first["big"].accepted
    assert select(arms, ev, cfg("forward", min_z=0), kinds=KINDS).selected == ["big", "sure"]


def test_backward_greedy_removes_only_on_a_significant_gain() -> None:
    """Backward greedy starts from every arm and drops one only when the removal is significantly
    better. An arm that breaks one validation row (noise-sized harm, removal z = 1) therefore
    stays at the default, where bandit and forward never admit it; the paper's rule drops it."""
    ev = _classification(SPEC)
    sel = select(ARMS, ev, cfg("backward"), kinds=KINDS, domains=DOMAINS)
    assert "harm" in sel.selected
    harm = [s for s in sel.trace if s.arm_id == "harm"]
    assert harm[-1].z == pytest.approx(-1.0) and harm[-1].gain < 0  # its contribution: one row
    assert "not significant" in harm[-1].reason
    paper = select(ARMS, ev, cfg("backward", min_z=0), kinds=KINDS, domains=DOMAINS)
    assert "harm" not in paper.selected and len(paper.selected) == 4
    many = _classification({**SPEC, "harm": (0, 3)})  # three rows lost: removal z = 1.73
    assert "harm" not in select(ARMS, many, cfg("backward"), kinds=KINDS).selected


def test_topk_is_never_tested_but_records_z() -> None:
    ev = _classification(SPEC)
    sel = select(ARMS, ev, cfg("topk", top_k=2), kinds=KINDS, domains=DOMAINS)
    assert sel.selected == ["noise", "two"]  # by prior, unchecked
    assert [s.z for s in sel.trace] == [pytest.approx(1.0), pytest.approx(2 / math.sqrt(2), 0.01)]


def test_regression_arms_need_a_significant_paired_improvement() -> None:
    """Squared-error losses: `noisy` lowers the mean loss a little (z = 1.0), `clear` a lot
    (z = 4.0). Only `clear` passes the default; both pass min_z 0."""
    rng = np.random.default_rng(1)
    n = 800
    base = rng.exponential(2.0, n)

    def effect(z: float) -> np.ndarray:
        d = rng.normal(0.0, 0.3, n)
        d = (d - d.mean()) / d.std(ddof=1) * 0.3  # sd exactly 0.3
        d += z * 0.3 / math.sqrt(n)  # mean chosen so that mean / (sd / sqrt(n)) = z
        return -d  # loss change: the loss drops by d

    ev = _LossEvaluator("regression", base, {"noisy": effect(1.0), "clear": effect(4.0)})
    arms = [_arm("noisy", "R0", 0.05), _arm("clear", "R1", 0.01)]
    for strategy in ("bandit", "forward"):
        sel = select(arms, ev, cfg(strategy), kinds=KINDS, domains=DOMAINS)
        assert sel.selected == ["clear"], sel.trace_frame().to_string()
        noisy = [s for s in sel.trace if s.arm_id == "noisy"]
        assert noisy[0].gain > 0 and not noisy[0].accepted
        if strategy == "bandit":
            assert noisy[0].z == pytest.approx(1.0)  # tried first, against the baseline
        paper = select(arms, ev, cfg(strategy, min_z=0), kinds=KINDS, domains=DOMAINS)
        assert sorted(paper.selected) == ["clear", "noisy"]


def test_significance_decisions_are_deterministic() -> None:
    ev = _classification(SPEC)
    for strategy in ("bandit", "forward", "backward", "topk"):
        a = select(ARMS, ev, cfg(strategy), kinds=KINDS, domains=DOMAINS, seed=3)
        b = select(list(reversed(ARMS)), ev, cfg(strategy), kinds=KINDS, domains=DOMAINS, seed=3)
        assert a.trace == b.trace and a.selected == b.selected
        assert a.trace and all(not math.isnan(s.z) for s in a.trace)


# ----------------------------------------------------------------------------------------------
# The real evaluator: a label-flipped row that only fixes one (noisy) validation row
# ----------------------------------------------------------------------------------------------


class _NearestNeighbour(ModelSpec):
    def make(self) -> KNeighborsClassifier:
        return KNeighborsClassifier(n_neighbors=1)


def _one_row_arm(planted: Planted, ev: CrossFitEvaluator) -> Arm:
    """A copy of a validation row of R0 whose label contradicts the planted relation (y = x1 >
    0.5): a label-flipped, harmful row. With a 1-nearest-neighbour model its only effect is to fix
    that one validation row; the first such row (fixed data and order) is used."""
    valid = planted.valid[RULES["R0"].mask(planted.valid).to_numpy()]
    noisy = valid[valid["y"] != (valid["x1"] > 0.5).astype(int)]
    base = ev.losses()
    for idx in noisy.index:
        d = base - ev.losses(noisy.loc[[idx]])
        if (d > 0).sum() == 1 and (d < 0).sum() == 0:
            rows = noisy.loc[[idx]].reset_index(drop=True)
            return Arm("flipped-R0", "R0", 1, RULES["R0"], rows, gain=0.06)
    raise AssertionError("no single-row flip found")


@pytest.mark.parametrize("strategy", ["bandit", "forward"])
def test_a_one_row_flip_does_not_pass_a_5_percent_screen(planted: Planted, strategy: str) -> None:
    nn = _NearestNeighbour("decision_tree", "classification", classes=(0, 1), n_features=11)
    ev = make_evaluator(planted.train, planted.valid, model=nn)
    arm = _one_row_arm(planted, ev)
    n_valid = len(ev.losses())
    sel: Selection = select([arm], ev, cfg(strategy), kinds=KINDS, domains=DOMAINS)
    assert sel.selected == [] and sel.best_score == sel.baseline
    (step,) = sel.trace
    assert step.gain == pytest.approx(2 / n_valid)  # Brier: a flipped 0/1 prediction costs 2
    assert step.z == pytest.approx(1.0) and not step.accepted
    paper = select([arm], ev, cfg(strategy, min_z=0), kinds=KINDS, domains=DOMAINS)
    assert paper.selected == ["flipped-R0"]
    assert paper.best_score == pytest.approx(paper.baseline + 2 / n_valid)


# ----------------------------------------------------------------------------------------------
# Confirmation and power
# ----------------------------------------------------------------------------------------------


def _confirmer(planted: Planted, model: ModelSpec = TREE, folds: int = 1) -> CrossFitEvaluator:
    """Confirmation rows the search never saw (the fixture's test split here). The job
    cross-fits them with the training rows always in training; here the 1,600 test rows would
    then outnumber the thinned regimes' training rows, so they are scored as a holdout."""
    return CrossFitEvaluator(
        partitions(planted.train, planted.test), target="y", encode=encode, model=model,
        folds=folds,
    )  # fmt: skip


def test_the_searched_set_is_kept_only_when_confirmed_once(planted: Planted) -> None:
    """Helpful arms: the screened set is confirmed on unseen rows (one test at min_z) and kept.
    Harmful arms forced through a permissive screen (min_z 0 searches with the paper's rule, but
    a strict confirmation is then asked for through a separate config): not confirmed, so
    nothing is kept, and the stop reason says so."""
    confirm = _confirmer(planted)
    sel = select(planted.arms, planted.evaluator(), cfg(), kinds=KINDS, confirm=confirm)
    c = sel.confirmation
    assert sel.selected and c is not None and c.tested and c.passed
    assert set(sel.selected) <= {a.arm_id for a in planted.helpful}
    assert c.z > DEFAULT_MIN_Z and c.gain > 0 and c.rows == len(planted.test)
    assert sel.screened == sel.selected
    # the confirmation's numbers are the evaluator's: one paired test of the kept rows
    kept = sel.rows.drop(columns=ARM)
    assert c.z == pytest.approx(paired_z(confirm.losses(), confirm.losses(kept)))

    harmful = list(planted.harmful)
    forced = select(harmful, planted.evaluator(), cfg("topk"), kinds=KINDS, confirm=confirm)
    fc = forced.confirmation
    assert forced.screened and fc is not None and fc.tested and not fc.passed
    assert forced.selected == [] and forced.n_rows == 0
    assert "confirmation failed" in forced.stop_reason and f"{fc.rows} confirmation rows" in (
        forced.stop_reason
    )
    untested = select(harmful, planted.evaluator(), cfg("topk", confirm=False), confirm=confirm)
    assert untested.selected == forced.screened  # confirm: false keeps the searched set
    assert untested.confirmation is not None and not untested.confirmation.tested


def test_confirmation_keeps_the_partitions_that_pass_and_drops_the_others(
    planted: Planted,
) -> None:
    """Helpful arms of R2 and harmful arms of R3 forced through top-k: one test per partition
    (Holm): R2's arms are kept, R3's dropped, and the stop reason names what was dropped. Pooled,
    R3's harm would have sunk R2's gain."""
    confirm = _confirmer(planted)
    good = [a for a in planted.helpful if a.dgr_id == "R2"]
    bad = [a for a in planted.harmful if a.dgr_id == "R3"]
    assert good and bad
    mixed = [*good, *bad]
    sel = select(mixed, planted.evaluator(), cfg("topk", top_k=len(mixed)), confirm=confirm)
    c = sel.confirmation
    assert c is not None and c.tested and c.passed
    tests = {t.key: t for t in c.tests}
    assert set(tests) == {"R2", "R3"}
    assert tests["R2"].passed and not tests["R3"].passed
    assert set(tests["R3"].arms) == {a.arm_id for a in bad}
    assert sel.selected and set(sel.selected) == set(tests["R2"].arms) <= {a.arm_id for a in good}
    assert set(sel.rows[ARM]) == set(sel.selected)
    # Holm: the better partition is tested first at 5%/2, the other at 5%
    first, second = sorted(c.tests, key=lambda t: -t.z)
    assert first.threshold > DEFAULT_MIN_Z and second.threshold == pytest.approx(DEFAULT_MIN_Z)
    assert "confirmation dropped R3" in sel.stop_reason
    # the kept set's pooled numbers are the evaluator's
    kept = sel.rows.drop(columns=ARM)
    assert c.z == pytest.approx(paired_z(confirm.losses(), confirm.losses(kept)))
    again = type(c).from_dict(c.to_dict())
    assert again == c


def test_every_partition_reports_its_minimum_detectable_effect(planted: Planted) -> None:
    """A tree with leaves of 5 rows or more: the placebo (the partition's own rows drawn again)
    moves its leaf probabilities, which is the refit noise an arm must rise above."""
    tree = ModelSpec("decision_tree", "classification", classes=(0, 1), n_features=11, seed=0)
    confirm = _confirmer(planted, tree, folds=5)
    sel = select([], planted.evaluator(), cfg(), kinds=KINDS, confirm=confirm)
    c = sel.confirmation
    assert c is not None and not c.tested and sel.selected == []
    parts = {p.key: p for p in c.partitions}
    assert set(parts) >= set(RULES)
    rows = {k: int(RULES[k].mask(planted.test).sum()) for k in RULES}
    for key, p in parts.items():
        if key in rows:
            assert p.rows == rows[key]
        assert p.mde > 0 and 0 < p.mde_relative < 10
        assert p.text().startswith(f"{key} ({p.rows} rows): a gain below ")
    # pooled, the confirmation sees smaller effects than its weakest partition
    assert 0 < c.mde_relative < max(p.mde_relative for p in parts.values())
    # power: a stricter test or more power needs a larger effect
    strict = select([], planted.evaluator(), cfg(min_z=3.0), confirm=confirm).confirmation
    assert strict is not None and strict.mde > c.mde
    assert "confirmation rows together" in c.power_text()


def test_every_partition_reports_what_its_last_real_rows_bought(planted: Planted) -> None:
    """The ceiling beside the MDE: R3 kept 14 training rows, so losing 7 of them (half, below
    the 100-row budget) costs its model far more than losing 100 of R0's ~1,200 costs R0's."""
    confirm = _confirmer(planted)  # a holdout: R3's model sees its 14 rows only
    c = select([], planted.evaluator(), cfg(), kinds=KINDS, confirm=confirm).confirmation
    assert c is not None and c.partitions
    parts = {p.key: p for p in c.partitions}
    assert parts["R3"].ceiling_rows == 7 and parts["R0"].ceiling_rows == 100
    assert parts["R3"].ceiling_relative > max(parts["R0"].ceiling_relative, 0.0)
    assert "its last 7 real rows lowered its loss by" in parts["R3"].text()
    # the figure is the evaluator's own: the model without those rows vs with them
    j = confirm.keys.index("R3")
    n, without = confirm.ceiling(j, 100, 42)
    base = confirm.partition_loss_vector(j, None)
    assert n == 7 and len(without) == len(base) > 0
    assert parts["R3"].ceiling_relative == pytest.approx(1 - base.mean() / without.mean())
    assert type(c).from_dict(c.to_dict()) == c
