"""CrossFitEvaluator: every scored row votes once, out of fold; refits only what changed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from date_spark.errors import InputError
from date_spark.modeling.models import ModelSpec, crossfit_losses, fold_ids
from date_spark.rules import parse_rule
from date_spark.selection import CrossFitEvaluator, Partition
from date_spark.testing.planted import planted_regimes

from .conftest import KINDS, NF, RULES, Planted, encode

TREE5 = ModelSpec("decision_tree", "classification", classes=(0, 1), n_features=NF + 1, seed=0)


def screening(planted: Planted, model: ModelSpec = TREE5, **kw: object) -> CrossFitEvaluator:
    """The job's screening evaluator: each partition's training rows, cross-fitted."""
    parts = [
        Partition(k, r, planted.train[r.mask(planted.train).to_numpy()]) for k, r in RULES.items()
    ]
    return CrossFitEvaluator(parts, target="y", encode=encode, model=model, **kw)  # type: ignore[arg-type]


def test_each_row_is_scored_once_by_a_model_trained_on_the_other_folds(planted: Planted) -> None:
    ev = screening(planted)
    losses = ev.losses()
    sizes = {k: int(RULES[k].mask(planted.train).sum()) for k in RULES}
    assert len(losses) == sum(sizes.values()) == ev.weights.sum()
    assert ev.baseline() == pytest.approx(-losses.mean())
    rows = planted.train[RULES["R0"].mask(planted.train).to_numpy()].reset_index(drop=True)
    folds = fold_ids(rows, 5, 42)
    manual = crossfit_losses(TREE5, encode(rows.drop(columns="y")), rows["y"].to_numpy(), folds)
    assert losses[: sizes["R0"]] == pytest.approx(manual)  # R0 comes first, rows in order


def test_adding_an_arm_refits_only_the_partitions_its_rows_fall_in(planted: Planted) -> None:
    ev = screening(planted)
    ev.baseline()
    base_fits = ev.fits
    assert base_fits == 5 * len(RULES)  # five folds per partition
    r3 = planted.helpful[2].rows  # good-R3-0
    r2 = planted.helpful[0].rows  # good-R2-0
    ev.score(r3)
    assert ev.fits == base_fits + 5
    ev.score(r3)
    assert ev.fits == base_fits + 5  # cached by content
    ev.score(pd.concat([r2, r3], ignore_index=True))
    assert ev.fits == base_fits + 10  # R3 is cached, only R2 refits
    with_r3, base = ev.partition_losses(r3), ev.partition_losses()
    assert {k for k in with_r3 if with_r3[k] != base[k]} == {"R3"}
    np.testing.assert_array_equal(ev.losses(r3), ev.losses(r3))
    ev.losses(r3)[:] = 7.0  # a caller's copy: the cached vectors are unaffected
    assert -ev.losses(r3).mean() == pytest.approx(ev.score(r3))
    assert len(ev.errors()) == len(ev.losses()) and set(np.unique(ev.errors())) <= {0.0, 1.0}


def test_fixed_rows_train_every_fold_and_are_never_scored(planted: Planted) -> None:
    r0 = RULES["R0"]
    train = planted.train[r0.mask(planted.train).to_numpy()]
    valid = planted.valid[r0.mask(planted.valid).to_numpy()]
    ev = CrossFitEvaluator(
        [Partition("R0", r0, valid, fixed=train)], target="y", encode=encode, model=TREE5
    )
    assert len(ev.losses()) == len(valid)
    holdout = CrossFitEvaluator(
        [Partition("R0", r0, valid, fixed=train)], target="y", encode=encode, model=TREE5, folds=1
    )
    manual = TREE5.fit(encode(train.drop(columns="y")), train["y"].to_numpy())
    expected = manual.losses(encode(valid.drop(columns="y")), valid["y"].to_numpy())
    assert holdout.losses() == pytest.approx(expected)  # folds=1: a plain holdout


def test_uncovered_rows_go_to_the_rest_partition_or_nowhere(planted: Planted) -> None:
    low = parse_rule("x0 < 0.5", KINDS)
    lo_rows = planted.train[low.mask(planted.train).to_numpy()]
    hi_rows = planted.train[~low.mask(planted.train).to_numpy()]
    with_rest = CrossFitEvaluator(
        [Partition("low", low, lo_rows), Partition("_rest", None, hi_rows, fixed=lo_rows)],
        target="y", encode=encode, model=TREE5,
    )  # fmt: skip
    without = CrossFitEvaluator(
        [Partition("low", low, lo_rows)], target="y", encode=encode, model=TREE5
    )
    assert with_rest.keys == ["low", "_rest"] and without.keys == ["low"]
    high = planted.valid[planted.valid["x0"] >= 0.5].head(30)
    assert (with_rest.route(high) == 1).all() and (without.route(high) == -1).all()
    fits = without.fits
    assert without.score(high) == without.baseline()
    assert without.fits == fits + 5  # only the baseline was trained; the rows went nowhere
    assert with_rest.score(high) != with_rest.baseline()


def test_a_single_class_partition_is_scored_by_the_constant_model(planted: Planted) -> None:
    ev = screening(replace(planted, train=planted.train.assign(y=0)))
    assert ev.baseline() == pytest.approx(0.0)  # always right, with probability one


def test_regression_scores_minus_mse() -> None:
    df = planted_regimes(n_rows=1500, n_features=NF, seed=4, task="regression", with_regime=False)
    spec = ModelSpec("decision_tree", "regression", n_features=NF + 1, max_depth=4)
    parts = [Partition(k, r, df[r.mask(df).to_numpy()]) for k, r in RULES.items()]
    ev = CrossFitEvaluator(parts, target="y", encode=encode, model=spec)
    sq = ev.losses(df.head(20))
    assert len(sq) == len(df) and (sq >= 0).all()
    assert -sq.mean() == pytest.approx(ev.score(df.head(20)))
    assert ev.baseline() < 0


def test_rows_are_capped_by_seeded_samples(planted: Planted) -> None:
    a, b = screening(planted, max_rows=40, seed=1), screening(planted, max_rows=40, seed=1)
    assert a.weights.max() <= 40
    assert a.baseline() == b.baseline()


def test_evaluator_input_errors(planted: Planted) -> None:
    kw: dict[str, object] = dict(target="y", encode=encode, model=TREE5)
    with pytest.raises(InputError, match="lack the target"):
        CrossFitEvaluator([Partition("p", RULES["R0"], planted.train.drop(columns="y"))], **kw)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no partition has rows"):
        CrossFitEvaluator([Partition("p", None, planted.train.iloc[:0])], **kw)  # type: ignore[arg-type]
    part = Partition("p", None, planted.train)
    with pytest.raises(InputError, match="appears twice"):
        CrossFitEvaluator([part, part], **kw)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="at least one partition"):
        CrossFitEvaluator([], **kw)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="lack columns"):
        screening(planted).score(planted.valid.drop(columns="x3").head(5))
