"""Fidelity against known answers: identical tables, a shuffled column, and a direct
pandas/scipy computation of every SDMetrics metric on small tables."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from date_spark.evaluation import EvaluationResult, EvaluationSettings, evaluate, infer_schema

from .conftest import correlated, days

CONTINUOUS = ["age", "income", "utilization", "num_accounts", "account_opened"]
DISCRETE = ["region", "homeowner", "default"]
EXACT = 1e-9


def numeric(df: pd.DataFrame, col: str) -> pd.Series:
    s = df[col]
    return days(s).astype(float) if col == "account_opened" else s.astype(float)


def key(real: pd.DataFrame, df: pd.DataFrame, col: str, bins: int = 10) -> list[Any]:
    """The contingency key of a value, written independently of the library: categories as
    text, numbers in 10 equal-width bins of the real range, 'below'/'above' outside it, None if
    missing."""
    if col in DISCRETE:
        return [None if pd.isna(v) else str(v) for v in df[col]]
    x, r = numeric(df, col), numeric(real, col)
    lo, hi = r.min(), r.max()
    out: list[Any] = []
    for v in x:
        if pd.isna(v):
            out.append(None)
        elif v < lo:
            out.append("below")
        elif v > hi:
            out.append("above")
        else:
            out.append(str(min(int((v - lo) / ((hi - lo) / bins)), bins - 1)))
    return out


def v(x: float | None) -> float:
    """A score that must exist."""
    assert x is not None
    return x


def tvd(a: pd.Series, b: pd.Series) -> float:
    pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    idx = pa.index.union(pb.index)
    return float(0.5 * (pa.reindex(idx, fill_value=0) - pb.reindex(idx, fill_value=0)).abs().sum())


def test_identical_tables_have_fidelity_one(identical_result: EvaluationResult) -> None:
    f = identical_result.fidelity
    assert f.overall == pytest.approx(1.0, abs=EXACT)
    assert f.column_shapes_score == pytest.approx(1.0, abs=EXACT)
    assert f.column_pair_trends_score == pytest.approx(1.0, abs=EXACT)
    assert {s.column for s in f.column_shapes} == set(CONTINUOUS + DISCRETE)
    assert all(s.score == pytest.approx(1.0, abs=EXACT) for s in f.column_shapes)
    assert len(f.pair_trends) == 8 * 7 // 2
    assert all(p.score == pytest.approx(1.0, abs=EXACT) for p in f.pair_trends)


def test_metric_kinds_follow_sdmetrics(fresh_result: EvaluationResult) -> None:
    metric = {s.column: s.metric for s in fresh_result.fidelity.column_shapes}
    assert {c for c, m in metric.items() if m == "KSComplement"} == set(CONTINUOUS)
    # booleans, strings and the classification label are categories
    assert {c for c, m in metric.items() if m == "TVComplement"} == set(DISCRETE)
    n = len(CONTINUOUS + DISCRETE)
    assert len(fresh_result.fidelity.pair_trends) == n * (n - 1) // 2
    for p in fresh_result.fidelity.pair_trends:
        both_continuous = p.column_1 in CONTINUOUS and p.column_2 in CONTINUOUS
        want = "CorrelationSimilarity" if both_continuous else "ContingencySimilarity"
        assert p.metric == want, p


def test_values_match_pandas_and_scipy(
    fresh_result: EvaluationResult, credit: dict[str, pd.DataFrame]
) -> None:
    real, syn = credit["train"], credit["fresh"]
    shapes = {s.column: s for s in fresh_result.fidelity.column_shapes}
    for col in CONTINUOUS:
        ks = ks_2samp(numeric(real, col).dropna(), numeric(syn, col).dropna()).statistic
        assert shapes[col].score == pytest.approx(1 - ks, abs=EXACT), col
        assert shapes[col].real_non_null == real[col].notna().sum()
    for col in DISCRETE:
        want = 1 - tvd(real[col].dropna().astype(str), syn[col].dropna().astype(str))
        assert shapes[col].score == pytest.approx(want, abs=EXACT), col

    pairs = {(p.column_1, p.column_2): p for p in fresh_result.fidelity.pair_trends}
    order = list(real.columns)
    for a, b in itertools.combinations(order, 2):
        got = pairs[(a, b)]
        if a in CONTINUOUS and b in CONTINUOUS:
            r = numeric(real, a).corr(numeric(real, b))
            s = numeric(syn, a).corr(numeric(syn, b))
            assert got.real_correlation == pytest.approx(r, abs=EXACT)
            assert got.synthetic_correlation == pytest.approx(s, abs=EXACT)
            assert got.score == pytest.approx(1 - abs(r - s) / 2, abs=EXACT), (a, b)
        else:
            jr = pd.Series(list(zip(key(real, real, a), key(real, real, b), strict=True)))
            js = pd.Series(list(zip(key(real, syn, a), key(real, syn, b), strict=True)))
            assert got.score == pytest.approx(1 - tvd(jr, js), abs=EXACT), (a, b)

    f = fresh_result.fidelity
    assert f.column_shapes_score == pytest.approx(np.mean([s.score for s in f.column_shapes]))
    assert f.overall == pytest.approx(
        (v(f.column_shapes_score) + v(f.column_pair_trends_score)) / 2
    )
    assert 0.85 < v(f.overall) < 1.0  # a fresh draw is close, never identical


def test_shuffling_a_column_lowers_pair_trends_not_its_shape(spark: Any) -> None:
    real = correlated(500, seed=0)
    syn = real.copy()
    syn["y"] = np.random.default_rng(1).permutation(syn["y"].to_numpy())
    rdf, sdf = spark.createDataFrame(real), spark.createDataFrame(syn)
    result = evaluate(rdf, sdf, infer_schema(rdf))
    f = result.fidelity
    assert {s.column for s in f.column_shapes} == set(real.columns)
    assert all(s.score == pytest.approx(1.0, abs=EXACT) for s in f.column_shapes)
    pairs = {(p.column_1, p.column_2): p for p in f.pair_trends}
    assert v(pairs[("x", "y")].real_correlation) > 0.9
    assert v(pairs[("x", "y")].score) < 0.6  # the correlation is gone
    assert v(pairs[("y", "c")].score) < 0.7  # so is the link to the category derived from x
    assert pairs[("x", "z")].score == pytest.approx(1.0, abs=EXACT)  # untouched pairs stay
    assert pairs[("x", "c")].score == pytest.approx(1.0, abs=EXACT)
    assert v(f.column_pair_trends_score) < 0.9
    assert v(f.overall) < v(f.column_shapes_score)


def test_ks_on_a_coarse_grid_stays_close_to_exact(spark: Any) -> None:
    """Large-table path: the grid holds far fewer points than distinct values. ECDFs are counted
    exactly at the grid points, so the result is a lower bound within about 1/levels of scipy."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 20_000), rng.normal(0.1, 1.2, 20_000)
    rdf = spark.createDataFrame(pd.DataFrame({"v": a}))
    sdf = spark.createDataFrame(pd.DataFrame({"v": b}))
    st = EvaluationSettings(ks_grid_levels=101, dcr_reference_rows=2_000, dcr_query_rows=200)
    result = evaluate(rdf, sdf, infer_schema(rdf), settings=st)
    got = 1 - (result.fidelity.column_shapes[0].score or 0.0)
    exact = ks_2samp(a, b).statistic
    assert got <= exact + EXACT
    assert exact - got < 0.01
    assert result.fidelity.column_pair_trends_score is None  # one column: no pairs
    assert result.fidelity.overall == result.fidelity.column_shapes_score


def test_wide_tables_compute_correlations_in_bounded_jobs(spark: Any) -> None:
    """13 numeric columns: 78 pairs, more than one aggregation's share; every coefficient still
    matches pandas."""
    from date_spark.evaluation.stats import _CORR_PAIRS_PER_JOB, first_pass
    from date_spark.evaluation.tables import is_discrete

    rng = np.random.default_rng(3)
    base = rng.normal(size=(300, 1))
    wide = pd.DataFrame(base + rng.normal(size=(300, 13)), columns=[f"w{i}" for i in range(13)])
    df = spark.createDataFrame(wide)
    schema = infer_schema(df)
    cont = [s for s in schema.columns if not is_discrete(s, schema)]
    assert len(cont) * (len(cont) - 1) // 2 > _CORR_PAIRS_PER_JOB
    rs, ss = first_pass(df, df, cont, [], EvaluationSettings(ks_grid_levels=11))
    want = wide.corr()
    assert len(rs.corr) == 78
    for (a, b), r in rs.corr.items():
        assert r == pytest.approx(want.loc[a, b], abs=EXACT)
        assert ss.corr[(a, b)] == r


def test_pair_trends_sample_pairs_beyond_max_pairs() -> None:
    """300 columns have 44,850 pairs: a seeded uniform sample of `max_pairs` keeps the jobs and
    plans bounded; below the cap every pair is scored."""
    from date_spark.evaluation import choose_pairs
    from date_spark.schema import ColumnSpec, Kind

    cols = [ColumnSpec(f"c{i}", Kind.NUMERIC, "double") for i in range(300)]
    chosen, total = choose_pairs(cols, EvaluationSettings(max_pairs=500))
    assert total == 44_850 and len(chosen) == 500
    idx = [(int(a.name[1:]), int(b.name[1:])) for a, b in chosen]
    assert len(set(idx)) == 500 and all(0 <= i < j < 300 for i, j in idx)
    assert idx == sorted(idx)
    assert min(i for i, _ in idx) < 30 and max(j for _, j in idx) > 270  # the whole table
    assert choose_pairs(cols, EvaluationSettings(max_pairs=500))[0] == chosen
    few, total = choose_pairs(cols[:20], EvaluationSettings(max_pairs=500))
    assert total == 190 and len(few) == 190
