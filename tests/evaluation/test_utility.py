"""The utility evaluation (`date_spark.evaluation.utility`): the gains are told apart, their
intervals mean what they say, and a user's named segment is measured on its own test rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from date_spark.evaluation.utility import bootstrap_interval, utility
from date_spark.modeling.features import FeatureEncoder
from date_spark.modeling.models import ModelSpec
from date_spark.rules import parse_rule
from date_spark.schema import ColumnSpec, Kind, TableSchema

SCHEMA = TableSchema(
    (ColumnSpec("a", Kind.NUMERIC, "double"),
     ColumnSpec("b", Kind.NUMERIC, "double"),
     ColumnSpec("y", Kind.NUMERIC, "bigint", integral=True)),
    "y", "classification", (0, 1),
)  # fmt: skip
ENC = FeatureEncoder.fit(SCHEMA, {})
MODEL = ModelSpec("decision_tree", "classification", classes=(0, 1), n_features=2, max_depth=4)


def label(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # two regimes: a < 0.5 follows b, a >= 0.5 a diagonal (hard to learn from a few rows)
    return np.where(a < 0.5, b > 0.5, b > 2 * (a - 0.5)).astype(int)


def frame(n: int, seed: int, *, a_low: float = 0.0, a_high: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(a_low, a_high, n), rng.random(n)
    return pd.DataFrame({"a": a, "b": b, "y": label(a, b)})


def run(train: pd.DataFrame, test: pd.DataFrame, synth: pd.DataFrame, **kw):  # type: ignore[no-untyped-def]
    rules = {"left": parse_rule("a < 0.5"), "right": parse_rule("a >= 0.5")}
    return utility(train, test, rules, synth, SCHEMA, ENC.transform, MODEL, resamples=500, **kw)


def test_clean_rows_in_a_thin_region_help_there_and_the_interval_says_so() -> None:
    # the right regime has 8 training rows: its model is poor; 300 clean rows fix it
    train = pd.concat([frame(300, 1, a_high=0.5), frame(8, 2, a_low=0.5)], ignore_index=True)
    test = frame(600, 3)
    synth = frame(300, 4, a_low=0.5)
    segment = {"mine": parse_rule("a >= 0.5 and b < 0.9")}
    u = run(train, test, synth, named=segment)
    assert u.synthetic_rows == 300 and u.test_rows == 600
    g = u.synthetic_gain
    assert g.after < g.before and g.significant == 1 and g.low > 0
    assert u.global_gain.significant == 1
    right = next(s for s in u.segments if s.segment == "right")
    left = next(s for s in u.segments if s.segment == "left")
    assert right.synthetic_rows == 300 and right.gain.significant == 1
    assert left.synthetic_rows == 0 and left.gain.gain == 0  # no rows there: nothing changes
    (mine,) = u.named
    in_seg = (test["a"] >= 0.5) & (test["b"] < 0.9)
    assert mine.gain.rows == int(in_seg.sum()) > 0
    assert mine.synthetic_rows == int(((synth["a"] >= 0.5) & (synth["b"] < 0.9)).sum())
    assert mine.gain.significant == 1
    assert "segment mine:" in u.headline()
    assert u.metrics()["segment.mine.rows"] == float(in_seg.sum())
    assert u.to_dict()["named_segments"][0]["segment"] == "mine"


def test_wrong_labels_make_it_worse_and_the_interval_says_so() -> None:
    train = frame(400, 1)
    test = frame(500, 3)
    bad = frame(400, 4).assign(y=lambda d: 1 - d["y"])
    u = run(train, test, bad)
    assert u.synthetic_gain.significant == -1 and u.global_gain.significant == -1
    assert "WORSE" in u.headline()


def test_no_synthetic_rows_say_so_and_change_nothing() -> None:
    u = run(frame(300, 1), frame(200, 3), frame(0, 4))
    assert u.synthetic_rows == 0
    assert u.synthetic_gain.gain == 0 and u.synthetic_gain.significant == 0
    assert "none kept" in u.headline()


def test_the_bootstrap_interval_covers_the_mean_and_shrinks_with_rows() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_interval(rng.normal(0.1, 1, 100), resamples=1000)
    large = bootstrap_interval(rng.normal(0.1, 1, 10_000), resamples=1000)
    assert small[0] < 0.1 < small[1] or small[0] < 0 < small[1]
    assert large[0] > 0 and (large[1] - large[0]) < (small[1] - small[0]) / 5
    assert bootstrap_interval(np.zeros(0)) == pytest.approx((0.0, 0.0)) or all(
        np.isnan(bootstrap_interval(np.zeros(0)))
    )
