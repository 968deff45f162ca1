"""The noise-aware acceptance rule (`SelectionConfig.min_z`): paired tests on per-row losses."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsClassifier

from date_spark.config import SelectionConfig
from date_spark.errors import InputError
from date_spark.selection import Arm, PartitionedEvaluator, Selection, paired_z, select

from .conftest import DOMAINS, KINDS, RULES, Planted, encode

DEFAULT_MIN_Z = SelectionConfig().min_z


def cfg(strategy: str = "bandit", **kw: Any) -> SelectionConfig:
    """Per-step semantics: these tests pin the statistic, so no correction for many arms."""
    return SelectionConfig.model_validate({"strategy": strategy, "multiple_testing": "none", **kw})


# ----------------------------------------------------------------------------------------------
# The statistic
# ----------------------------------------------------------------------------------------------


def test_mcnemar_z_counts_rows_that_became_correct_and_wrong() -> None:
    before = np.array([1, 1, 1, 1, 0, 0, 0, 1], dtype=float)
    after = np.array([0, 0, 0, 1, 1, 0, 0, 1], dtype=float)  # b = 3 fixed, c = 1 broken
    assert paired_z(before, after, "classification") == pytest.approx(2 / math.sqrt(4))
    assert paired_z(after, before, "classification") == pytest.approx(-1.0)  # antisymmetric
    assert paired_z(before, before, "classification") == 0.0  # b + c = 0
    one = np.array([1.0, 0.0, 0.0])
    assert paired_z(one, np.zeros(3), "classification") == 1.0  # one row flipped: z = 1


def test_regression_z_is_the_paired_z_of_the_loss_differences() -> None:
    rng = np.random.default_rng(0)
    before = rng.exponential(1.0, 300)
    after = before - rng.normal(0.05, 0.5, 300)
    d = before - after
    expected = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert paired_z(before, after, "regression") == pytest.approx(expected)
    assert paired_z(after, before, "regression") == pytest.approx(-expected)
    assert paired_z(before, before, "regression") == 0.0  # sd = 0 and mean = 0
    assert paired_z(np.full(4, 2.0), np.full(4, 1.5), "regression") == math.inf  # sd = 0
    assert paired_z(before, after, None) == pytest.approx(expected)  # no task: the paired z
    with pytest.raises(InputError, match="same validation rows"):
        paired_z(before, after[:-1], "regression")


# ----------------------------------------------------------------------------------------------
# A scripted evaluator with exact per-row losses
# ----------------------------------------------------------------------------------------------


class _LossEvaluator:
    """Per-row losses = `base` plus the additive effect of each arm present (column `tag`);
    score = minus their mean, as for `PartitionedEvaluator`."""

    def __init__(self, task: str, base: np.ndarray, effects: Mapping[str, np.ndarray]) -> None:
        self.task = task
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
    assert all(s.z == 1.0 and s.gain == pytest.approx(1 / N_VALID) for s in noise)
    assert all("not significant (z=1.00 <= min_z 1.645)" in s.reason for s in noise)
    good = [s for s in sel.trace if s.arm_id == "good"]
    assert good and all(s.z == pytest.approx(9 / math.sqrt(11)) for s in good)
    assert "significantly" in sel.stop_reason
    paper = select(ARMS, ev, cfg(strategy, min_z=0), kinds=KINDS, domains=DOMAINS)
    assert sorted(paper.selected) == ["good", "noise", "three", "two"]
    assert paper.best_score == pytest.approx(ev.baseline() + 15 / N_VALID)
    # an evaluator without per-row losses keeps the paper's rule, and records no z
    plain = select(ARMS, _ScoreOnly(ev), cfg(strategy), kinds=KINDS, domains=DOMAINS)
    assert plain.selected == paper.selected
    assert all(math.isnan(s.z) for s in plain.trace)


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
    assert first["big"].z == pytest.approx(10 / math.sqrt(50)) and not first["big"].accepted
    assert select(arms, ev, cfg("forward", min_z=0), kinds=KINDS).selected == ["big", "sure"]


def test_backward_greedy_removes_only_on_a_significant_gain() -> None:
    """Backward greedy starts from every arm and drops one only when the removal is significantly
    better. An arm that breaks one validation row (noise-sized harm, removal z = 1) therefore
    stays at the default, where bandit and forward never admit it; the paper's rule drops it."""
    ev = _classification(SPEC)
    sel = select(ARMS, ev, cfg("backward"), kinds=KINDS, domains=DOMAINS)
    assert "harm" in sel.selected
    harm = [s for s in sel.trace if s.arm_id == "harm"]
    assert harm[-1].z == -1.0 and harm[-1].gain < 0  # its contribution: one row lost
    assert "not significant" in harm[-1].reason
    paper = select(ARMS, ev, cfg("backward", min_z=0), kinds=KINDS, domains=DOMAINS)
    assert "harm" not in paper.selected and len(paper.selected) == 4
    many = _classification({**SPEC, "harm": (0, 3)})  # three rows lost: removal z = 1.73
    assert "harm" not in select(ARMS, many, cfg("backward"), kinds=KINDS).selected


def test_topk_is_never_tested_but_records_z() -> None:
    ev = _classification(SPEC)
    sel = select(ARMS, ev, cfg("topk", top_k=2), kinds=KINDS, domains=DOMAINS)
    assert sel.selected == ["noise", "two"]  # by prior, unchecked
    assert [s.z for s in sel.trace] == [1.0, pytest.approx(2 / math.sqrt(2))]


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
        assert all(not math.isnan(s.z) for s in a.trace)


# ----------------------------------------------------------------------------------------------
# The real evaluator: a label-flipped row that only fixes one (noisy) validation row
# ----------------------------------------------------------------------------------------------


def _one_row_arm(planted: Planted, ev: PartitionedEvaluator) -> Arm:
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
def test_partitioned_evaluator_rejects_a_one_row_flip_by_default(
    planted: Planted, strategy: str
) -> None:
    ev = PartitionedEvaluator.from_frames(
        planted.train, planted.valid, RULES, target="y", task="classification", encode=encode,
        model_factory=lambda: KNeighborsClassifier(n_neighbors=1),
    )  # fmt: skip
    arm = _one_row_arm(planted, ev)
    n_valid = len(ev.losses())
    sel: Selection = select([arm], ev, cfg(strategy), kinds=KINDS, domains=DOMAINS)
    assert sel.selected == [] and sel.best_score == sel.baseline
    (step,) = sel.trace
    assert step.gain == pytest.approx(1 / n_valid) and step.z == 1.0 and not step.accepted
    paper = select([arm], ev, cfg(strategy, min_z=0), kinds=KINDS, domains=DOMAINS)
    assert paper.selected == ["flipped-R0"]
    assert paper.best_score == pytest.approx(paper.baseline + 1 / n_valid)


def test_bonferroni_raises_the_bar_with_the_number_of_arms() -> None:
    """Three rows fixed with none lost (z = 1.73) passes one test at 5% but not a family of four
    tests (z* = 2.24): the default corrects for the arms tried."""
    from date_spark.selection import z_threshold

    assert z_threshold(1.645, 1) == 1.645
    assert z_threshold(1.645, 4) == pytest.approx(2.241, abs=1e-3)
    assert z_threshold(1.645, 16) == pytest.approx(2.734, abs=1e-3)
    assert z_threshold(0.0, 16) == 0.0  # the paper's rule is never corrected
    ev = _classification(SPEC)
    corrected = select(ARMS, ev, SelectionConfig(), kinds=KINDS, domains=DOMAINS)
    assert "three" not in corrected.selected and "good" in corrected.selected
    assert "three" in select(ARMS, ev, cfg(), kinds=KINDS, domains=DOMAINS).selected
