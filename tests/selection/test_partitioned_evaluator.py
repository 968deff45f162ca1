"""PartitionedEvaluator: row-weighted validation error; retrains only what changed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeRegressor

from date_spark.datasets import planted_regimes
from date_spark.errors import ConfigError, InputError
from date_spark.rules import parse_rule
from date_spark.selection import Partition, PartitionedEvaluator

from .conftest import KINDS, NF, RULES, Planted, encode


def test_score_is_minus_the_row_weighted_partition_error(planted: Planted) -> None:
    ev = planted.evaluator()
    errs = ev.partition_errors()
    weights = {k: len(planted.valid[RULES[k].mask(planted.valid).to_numpy()]) for k in RULES}
    expected = sum(weights[k] * errs[k] for k in RULES) / sum(weights.values())
    assert ev.baseline() == pytest.approx(-expected)
    assert set(errs) == set(RULES)  # the rest partition has no validation rows here
    assert all(0.0 <= e <= 1.0 for e in errs.values())


def test_adding_an_arm_retrains_only_the_partitions_its_rows_fall_in(planted: Planted) -> None:
    ev = planted.evaluator()
    ev.baseline()
    base_fits = ev.fits
    assert base_fits == len(RULES)
    r3 = planted.helpful[2].rows  # good-R3-0
    r2 = planted.helpful[0].rows  # good-R2-0
    ev.score(r3)
    assert ev.fits == base_fits + 1
    ev.score(r3)
    assert ev.fits == base_fits + 1  # cached by content
    ev.score(pd.concat([r2, r3], ignore_index=True))
    assert ev.fits == base_fits + 2  # R3 is cached, only R2 trains
    errs = ev.partition_errors(r3)
    base = ev.partition_errors()
    assert {k for k in errs if errs[k] != base[k]} <= {"R3"}


def test_losses_are_the_per_row_vector_behind_the_score(planted: Planted) -> None:
    ev = planted.evaluator()
    base = ev.losses()
    assert len(base) == ev.weights.sum() == len(planted.valid)
    assert set(np.unique(base)) <= {0.0, 1.0}  # 0/1 misclassification
    assert -base.mean() == pytest.approx(ev.baseline())
    # fixed order: partitions in `keys` order, each one's validation rows in their given order
    errs, start = ev.partition_errors(), 0
    for key, w in zip(ev.keys, ev.weights, strict=True):
        if w:
            assert base[start : start + int(w)].mean() == pytest.approx(errs[key])
            start += int(w)
    r3 = planted.helpful[2].rows
    fits = ev.fits
    with_r3 = ev.losses(r3)
    assert ev.fits == fits + 1
    assert -with_r3.mean() == pytest.approx(ev.score(r3))
    assert ev.fits == fits + 1  # score and losses share the cached per-partition vectors
    np.testing.assert_array_equal(ev.losses(r3), with_r3)
    ev.losses(r3)[:] = 7.0  # a caller's copy: the cached vectors are unaffected
    np.testing.assert_array_equal(ev.losses(r3), with_r3)
    changed = np.flatnonzero(base != with_r3)
    lo = int(ev.weights[:3].sum())  # R3 is the fourth partition
    assert changed.size and (changed >= lo).all() and (changed < lo + ev.weights[3]).all()


def test_uncovered_rows_go_to_the_rest_partition_or_nowhere(planted: Planted) -> None:
    half = {"low": parse_rule("x0 < 0.5", KINDS)}
    kw: dict[str, Any] = dict(target="y", task="classification", encode=encode)
    with_rest = PartitionedEvaluator.from_frames(
        planted.train, planted.valid, half, model_factory=LogisticRegression, **kw
    )
    without = PartitionedEvaluator.from_frames(
        planted.train, planted.valid, half, rest=False, model_factory=LogisticRegression, **kw
    )
    assert with_rest.keys == ["low", "_rest"] and without.keys == ["low"]
    high_rows = planted.valid[planted.valid["x0"] >= 0.5].head(30)
    fits = without.fits
    assert without.score(high_rows) == without.baseline()
    assert without.fits == fits + 1  # only the baseline was trained; the rows went nowhere
    routed = with_rest.route(high_rows)
    assert (routed == 1).all()


def test_a_single_class_partition_needs_no_model(planted: Planted) -> None:
    train = planted.train.assign(y=0)
    ev = PartitionedEvaluator.from_frames(
        train,
        planted.valid,
        RULES,
        target="y",
        task="classification",
        encode=encode,
        model_factory=LogisticRegression,  # refuses one-class data; the evaluator never asks it
    )
    assert ev.baseline() == pytest.approx(-planted.valid["y"].mean())
    assert ev.fits == 0


def test_regression_scores_minus_mse() -> None:
    df = planted_regimes(n_rows=3000, n_features=NF, seed=4, task="regression", with_regime=False)
    train, valid = df.iloc[:2000], df.iloc[2000:]
    ev = PartitionedEvaluator.from_frames(
        train,
        valid,
        RULES,
        target="y",
        task="regression",
        encode=encode,
        model_factory=lambda: DecisionTreeRegressor(random_state=0, max_depth=4),
    )
    errs = ev.partition_errors()
    assert all(e > 0 for e in errs.values())
    assert ev.baseline() < 0
    assert np.isfinite(ev.score(valid.head(20)))
    sq = ev.losses(valid.head(20))  # squared errors, one per validation row
    assert len(sq) == len(valid) and (sq >= 0).all()
    assert -sq.mean() == pytest.approx(ev.score(valid.head(20)))


def test_train_and_validation_are_capped_by_seeded_samples(planted: Planted) -> None:
    def build(seed: int) -> PartitionedEvaluator:
        return PartitionedEvaluator.from_frames(
            planted.train,
            planted.valid,
            RULES,
            target="y",
            task="classification",
            encode=encode,
            model_factory=LogisticRegression,
            max_train_rows=50,
            max_valid_rows=40,
            seed=seed,
        )

    a, b = build(1), build(1)
    assert a.weights.max() <= 40
    assert a.baseline() == b.baseline()


def test_evaluator_input_errors(planted: Planted) -> None:
    kw: dict[str, Any] = dict(
        target="y", task="classification", encode=encode, model_factory=LogisticRegression
    )
    empty = planted.train.iloc[:0]
    with pytest.raises(InputError, match="no training rows"):
        PartitionedEvaluator([Partition("p", RULES["R0"], empty, planted.valid)], **kw)
    with pytest.raises(InputError, match="lack the target"):
        PartitionedEvaluator(
            [Partition("p", RULES["R0"], planted.train.drop(columns="y"), planted.valid)],
            **kw,
        )
    with pytest.raises(InputError, match="no partition has validation rows"):
        PartitionedEvaluator([Partition("p", None, planted.train, planted.valid.iloc[:0])], **kw)
    with pytest.raises(InputError, match="appears twice"):
        part = Partition("p", None, planted.train, planted.valid)
        PartitionedEvaluator([part, part], **kw)
    with pytest.raises(ConfigError, match="task"):
        PartitionedEvaluator(
            [Partition("p", None, planted.train, planted.valid)],
            target="y",
            task="ranking",  # type: ignore[arg-type]
            encode=encode,
            model_factory=LogisticRegression,
        )
    ev = planted.evaluator()
    with pytest.raises(InputError, match="lack columns"):
        ev.score(planted.valid.drop(columns="x3").head(5))
