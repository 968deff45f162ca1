"""Tree -> rule translation: exact boundaries, nulls, categories (pandas only, no Spark)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from date_spark.modeling.features import FeatureEncoder
from date_spark.modeling.trees import RuleTree, score_order, shortest_between
from date_spark.rules import Rule
from date_spark.schema import ColumnSpec, Kind, TableSchema


def _mixed_frame(n: int = 3000, seed: int = 1) -> tuple[pd.DataFrame, TableSchema]:
    rng = np.random.default_rng(seed)
    pdf = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "cnt": rng.integers(0, 20, n),
            "cat": rng.choice(np.array(["a", "b", "c", "d", "e"]), n).astype(object),
            "flag": (rng.random(n) < 0.5).astype(object),
            "day": [
                dt.date(2020, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 400, n)
            ],
        }
    )
    y = (
        (pdf["num"] > 0.2)
        ^ pdf["cat"].isin(["b", "d"])
        ^ (pdf["cnt"] >= 12)
        ^ (pd.to_datetime(pdf["day"]) >= pd.Timestamp("2020-07-01"))
    ).astype(int)
    pdf["y"] = np.where(rng.random(n) < 0.05, 1 - y, y)
    # Holes in every kind of column.
    for col, p in (("num", 0.05), ("cat", 0.04), ("flag", 0.03), ("day", 0.02)):
        pdf.loc[rng.random(n) < p, col] = None
    schema = TableSchema(
        (
            ColumnSpec("num", Kind.NUMERIC, "double"),
            ColumnSpec("cnt", Kind.NUMERIC, "bigint", integral=True),
            ColumnSpec("cat", Kind.CATEGORICAL, "string"),
            ColumnSpec("flag", Kind.BOOLEAN, "boolean"),
            ColumnSpec("day", Kind.DATE, "date"),
            ColumnSpec("y", Kind.NUMERIC, "bigint", integral=True),
        ),
        "y",
        "classification",
    )
    return pdf, schema


@pytest.mark.parametrize("order", [True, False])
def test_paths_partition_rows_exactly_as_the_tree_routes_them(order: bool) -> None:
    pdf, schema = _mixed_frame()
    enc = FeatureEncoder.from_pandas(schema, pdf)
    X, y = enc.transform(pdf), enc.target(pdf)
    rt = RuleTree.fit(
        X, y, enc, "classification", max_depth=6, min_samples_leaf=5, order_categories=order
    )
    paths = rt.paths(X)
    masks = np.stack([p.rule.mask(pdf).to_numpy() for p in paths])
    assert (masks.sum(axis=0) == 1).all(), "a row in two paths or in none"
    leaf_by_rule = np.array([paths[i].leaf for i in masks.argmax(axis=0)])
    assert (leaf_by_rule == rt.apply(X)).all()
    # The rules speak in the columns' own terms.
    text = " ".join(p.rule.to_text() for p in paths)
    assert "date '" in text and "cat" in text and "flag = " in text
    # An unseen category and nulls still land in exactly one path, the tree's own.
    probe = pdf.head(50).copy()
    probe.loc[probe.index[:10], "cat"] = "zzz"
    probe.loc[probe.index[10:20], "num"] = None
    pm = np.stack([p.rule.mask(probe).to_numpy() for p in paths])
    assert (pm.sum(axis=0) == 1).all()
    got = np.array([paths[i].leaf for i in pm.argmax(axis=0)])
    assert (got == rt.apply(enc.transform(probe))).all()


def test_split_partitions_put_every_row_in_one_child() -> None:
    pdf, schema = _mixed_frame(seed=2)
    enc = FeatureEncoder.from_pandas(schema, pdf)
    X, y = enc.transform(pdf), enc.target(pdf)
    rt = RuleTree.fit(X, y, enc, "classification", max_depth=4, min_samples_leaf=20)
    splits = rt.splits(X)
    assert splits and splits == sorted(splits, key=lambda s: (-s.gain, s.depth, s.node))
    kinds_seen = set()
    for s in splits:
        kinds_seen.add(enc.features[enc.index(s.column)].kind)
        parts = s.partition(with_nulls=True)
        m = np.stack([Rule.of(p).mask(pdf).to_numpy() for p in parts])
        assert (m.sum(axis=0) == 1).all(), f"{s.column}: overlap or gap in {parts}"
        # The non-null sides agree with sklearn on the training rows.
        left_rule, _ = s.side_rules()
        node_left = left_rule.mask(pdf).to_numpy()
        present = ~np.isnan(rt.transform(X)[:, enc.index(s.column)])
        thr = rt.tree.tree_.threshold[s.node]
        col = rt.transform(X)[:, enc.index(s.column)]
        tree_left = col.astype(np.float32).astype(np.float64) <= thr
        assert (node_left[present] == tree_left[present]).all()
    assert Kind.NUMERIC in kinds_seen and Kind.CATEGORICAL in kinds_seen


def test_categorical_split_is_a_value_set_found_by_score_order() -> None:
    # Two relations chosen by the category, with the same base rate, so mean residuals per
    # category are ~0 and only the score vectors tell {a, c} from {b, d}.
    rng = np.random.default_rng(3)
    n = 4000
    cat = rng.choice(np.array(["a", "b", "c", "d"]), n)
    x1, x2 = rng.random(n), rng.random(n)
    y = np.where(np.isin(cat, ["a", "c"]), x1 - 0.5, x2 - 0.5) + rng.normal(0, 0.01, n)
    pdf = pd.DataFrame({"cat": cat, "x1": x1, "x2": x2, "y": y})
    schema = TableSchema(
        (
            ColumnSpec("cat", Kind.CATEGORICAL, "string"),
            ColumnSpec("x1", Kind.NUMERIC, "double"),
            ColumnSpec("x2", Kind.NUMERIC, "double"),
            ColumnSpec("y", Kind.NUMERIC, "double"),
        ),
        "y",
        "regression",
    )
    enc = FeatureEncoder.from_pandas(schema, pdf)
    X = enc.transform(pdf)
    from sklearn.linear_model import LinearRegression

    r = y - LinearRegression().fit(X[:, 1:], y).predict(X[:, 1:])
    rank = score_order(X, r, enc)[enc.index("cat")]
    groups = {enc.features[0].categories[c] for c in range(4) if rank[c] < 2}
    assert groups in ({"a", "c"}, {"b", "d"})
    # Mean residuals are ~0 in both groups (only the slopes differ); the score vectors
    # (residual x centred feature) separate them in one split, written as the exact value set.
    z = X[:, 1:] - X[:, 1:].mean(axis=0)
    scores = np.column_stack([r, r[:, None] * z])
    rt = RuleTree.fit(X, scores, enc, "regression", max_depth=1, recode=score_order(X, r, enc))
    (split,) = rt.splits(X)
    assert split.column == "cat"
    pos, neg = split.partition(with_nulls=False)
    assert pos.op == "in" and set(pos.value) in ({"a", "c"}, {"b", "d"})  # type: ignore[arg-type]
    assert neg.op == "not in" and neg.value == pos.value


@given(
    a=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    gap=st.floats(1e-9, 1e3, allow_nan=False, allow_infinity=False),
)
@settings(max_examples=200, deadline=None)
def test_shortest_between_lies_in_the_gap(a: float, gap: float) -> None:
    b = a + gap
    if not a < b:
        return
    d = shortest_between(a, b)
    assert a < d <= b


def test_shortest_between_reads_well() -> None:
    assert shortest_between(0.2996, 0.30004) == 0.3
    assert shortest_between(12.0, 13.0, integral=True) == 13.0
    assert shortest_between(-0.51, -0.2) == -0.5
    with pytest.raises(ValueError):
        shortest_between(1.0, 1.0)
