"""A planted-regime table with thinned regimes and synthetic arms, shared by the selection tests.

Regimes R2 (y = x3 + x4 > 1, a diagonal a tree needs many rows for) keeps 6 training rows and R3
(y = x6 > 0.7) 14, so their partition models are poor. Helpful arms are rows drawn from the true
relation of R2 / R3 inside one tree path; harmful arms are the same rows with flipped labels. With
this thinning every harmful arm alone raises its partition's validation error and every helpful arm
but one lowers it (good-R3-0 is neutral). Harmful arms get a *higher* generation-time gain than the
helpful ones, so only validation can tell them apart (a prior-only ranking would keep them).

Thinning R3 to 6 rows instead (`build_planted({2: 6, 3: 6})`) leaves R3's model worse than
predicting the majority class; there, one "harmful" arm (all labels 0) really lowers the error,
which one test uses to show how first-improvement acceptance can lock in a weaker arm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from date_spark.modeling.models import ModelSpec
from date_spark.rules import CategorySet, Interval, Rule, View, parse_rule
from date_spark.schema import Kind
from date_spark.selection import Arm, CrossFitEvaluator, Partition
from date_spark.testing.planted import CATEGORIES, planted_regimes

NF = 10
FEATURES = [f"x{i}" for i in range(NF)]
KINDS: dict[str, Kind] = {c: Kind.NUMERIC for c in FEATURES} | {
    "c0": Kind.CATEGORICAL,
    "y": Kind.NUMERIC,
}
RULES: dict[str, Rule] = {
    "R0": parse_rule("x0 < 0.3", KINDS),
    "R1": parse_rule("x0 >= 0.3 and x0 < 0.6 and c0 in ('a', 'b')", KINDS),
    "R2": parse_rule("x0 >= 0.3 and x0 < 0.6 and c0 in ('c', 'd')", KINDS),
    "R3": parse_rule("x0 >= 0.6 and x5 < 0.5", KINDS),
    "R4": parse_rule("x0 >= 0.6 and x5 >= 0.5", KINDS),
}
DOMAINS: dict[str, View] = {c: Interval(0.0, 1.0, True, False) for c in FEATURES} | {
    "c0": CategorySet(frozenset(CATEGORIES))
}
PATHS = {"R2": ("x3 < 0.5", "x3 >= 0.5"), "R3": ("x6 < 0.7", "x6 >= 0.7")}
THINNED = {2: 6, 3: 14}
_CODES = {c: float(i) for i, c in enumerate(CATEGORIES)}


def encode(frame: pd.DataFrame) -> np.ndarray:
    """Feature matrix for the planted table (stands in for date_spark.modeling.features)."""
    codes = frame["c0"].map(_CODES).to_numpy(dtype=float)
    return np.column_stack([frame[FEATURES].to_numpy(dtype=float), codes])


def true_rows(regime: int, n: int, seed: int, path: Rule | None = None) -> pd.DataFrame:
    """n noise-free rows of one planted regime (inside `path` when given)."""
    pool = planted_regimes(n_rows=n * 60, n_features=NF, noise=0.0, seed=seed)
    pool = pool[pool["regime"] == regime]
    if path is not None:
        pool = pool[path.mask(pool).to_numpy()]
    assert len(pool) >= n
    return pool.head(n).drop(columns="regime").reset_index(drop=True)


def flipped(rows: pd.DataFrame) -> pd.DataFrame:
    out = rows.copy()
    out["y"] = 1 - out["y"]
    return out


@dataclass(frozen=True)
class Planted:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    helpful: tuple[Arm, ...]
    harmful: tuple[Arm, ...]

    @property
    def arms(self) -> list[Arm]:
        return [*self.helpful, *self.harmful]

    def evaluator(self, holdout: pd.DataFrame | None = None) -> CrossFitEvaluator:
        """Validation evaluator; `holdout` swaps in other rows to *measure* (tests only)."""
        return make_evaluator(self.train, self.valid if holdout is None else holdout)


@dataclass(frozen=True)
class FullTree(ModelSpec):
    """A fully grown tree (pure leaves): its Brier score is twice its 0/1 error, so the strategy
    tests below count validation rows that became right or wrong."""

    def make(self) -> DecisionTreeClassifier:
        return DecisionTreeClassifier(random_state=self.seed)


TREE = FullTree("decision_tree", "classification", classes=(0, 1), n_features=NF + 1, seed=0)


def partitions(train: pd.DataFrame, valid: pd.DataFrame) -> list[Partition]:
    """Rows scored = `valid`, trained on = `train`, split by the first matching planted rule; the
    rest partition (rows no rule covers) is served by the global model."""
    parts: list[Partition] = []
    t_left = np.ones(len(train), dtype=bool)
    v_left = np.ones(len(valid), dtype=bool)
    for key, rule in RULES.items():
        tm = rule.mask(train).to_numpy(dtype=bool) & t_left
        vm = rule.mask(valid).to_numpy(dtype=bool) & v_left
        t_left &= ~tm
        v_left &= ~vm
        parts.append(Partition(key, rule, valid[vm], fixed=train[tm]))
    parts.append(Partition("_rest", None, valid[v_left], fixed=train))
    return parts


def make_evaluator(
    train: pd.DataFrame, valid: pd.DataFrame, model: ModelSpec = TREE, folds: int = 1
) -> CrossFitEvaluator:
    """A holdout evaluator (train on `train`, score `valid`) with a decision tree: the strategy
    tests below were measured with it."""
    return CrossFitEvaluator(
        partitions(train, valid), target="y", encode=encode, model=model, folds=folds
    )


@pytest.fixture(scope="session")
def planted() -> Planted:
    return build_planted()


@pytest.fixture(scope="session")
def degenerate() -> Planted:
    """R2 and R3 both thinned to 6 training rows: R3's model is worse than the majority class."""
    return build_planted({2: 6, 3: 6})


def build_planted(thinned: dict[int, int] | None = None) -> Planted:
    df = planted_regimes(n_rows=8000, n_features=NF, noise=0.03, seed=3)
    order = np.random.default_rng(0).permutation(len(df))
    test, rest = df.iloc[order[:1600]], df.iloc[order[1600:]]
    valid, train = rest.iloc[: len(rest) // 4], rest.iloc[len(rest) // 4 :]
    keep = np.ones(len(train), dtype=bool)
    for regime, n in (THINNED if thinned is None else thinned).items():
        keep[np.flatnonzero((train["regime"] == regime).to_numpy())[n:]] = False
    train = train[keep]
    train, valid, test = (d.drop(columns="regime") for d in (train, valid, test))
    helpful, harmful = [], []
    for name, paths in PATHS.items():
        regime = int(name[1])
        for k, text in enumerate(paths):
            path = parse_rule(text, KINDS)
            rule = RULES[name].and_(path)
            rows = true_rows(regime, 20, seed=100 + 10 * regime + k, path=path)
            helpful.append(Arm(f"good-{name}-{k}", name, 1, rule, rows, gain=0.05))
            harmful.append(Arm(f"bad-{name}-{k}", name, 1, rule, flipped(rows), gain=0.06))
    return Planted(train, valid, test, tuple(helpful), tuple(harmful))
