"""Privacy: exact copies by a null-safe join, DCR against a holdout baseline, the too_close flag.
Near copies (no exact copy, flagged by distance alone) are shown end to end in test_eval_cli."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from date_spark.evaluation import EvaluationResult, nearest_distances
from date_spark.evaluation.privacy import _encode
from date_spark.schema import ColumnSpec, Kind


def test_identical_rows_are_all_exact_copies_and_flagged(
    identical_result: EvaluationResult,
) -> None:
    p = identical_result.privacy
    assert p.exact_copies == identical_result.synthetic_rows == 600
    assert p.exact_copy_rate == 1.0
    assert p.holdout_exact_copy_rate == 0.0
    assert p.dcr_synthetic is not None and p.dcr_synthetic.median == 0.0
    assert p.dcr_holdout is not None and p.dcr_holdout.median > 0.0
    assert p.too_close is True
    assert "copy a training row" in p.reason


def test_a_fresh_draw_is_not_flagged(fresh_result: EvaluationResult) -> None:
    p = fresh_result.privacy
    assert fresh_result.synthetic_rows == 400  # rows were compared: no copy among them
    assert p.exact_copies == 0
    assert p.too_close is False
    assert p.dcr_synthetic is not None and p.dcr_holdout is not None
    # same generator, same distance to the training rows, up to sampling noise
    assert p.dcr_synthetic.median == pytest.approx(p.dcr_holdout.median, rel=0.25)
    assert p.synthetic_share_within_p05 is not None and p.synthetic_share_within_p05 < 0.1


def test_nearest_distances_match_a_brute_force_loop() -> None:
    cont = [ColumnSpec("a", Kind.NUMERIC, "double"), ColumnSpec("d", Kind.DATE, "date")]
    disc = [ColumnSpec("c", Kind.CATEGORICAL, "string")]
    ref = pd.DataFrame(
        {"c0": [0.0, 10.0, np.nan], "c1": [0.0, 100.0, 50.0], "d0": ["x", "y", None]}
    )
    qry = pd.DataFrame(
        {"c0": [1.0, np.nan, 30.0], "c1": [100.0, 50.0, 0.0], "d0": ["y", None, "z"]}
    )
    lo, hi = {"a": 0.0, "d": 0.0}, {"a": 10.0, "d": 100.0}
    enc_ref, enc_q = _encode([ref, qry], cont, disc, lo, hi)

    def dist(q: pd.Series, r: pd.Series) -> float:
        total = 0.0
        for col, span in (("c0", 10.0), ("c1", 100.0)):
            a, b = q[col], r[col]
            if pd.isna(a) and pd.isna(b):
                d = 0.0
            elif pd.isna(a) or pd.isna(b):
                d = 1.0
            else:
                d = min(abs(a - b) / span, 1.0)
            total += d
        total += 0.0 if (q["d0"] == r["d0"]) or (q["d0"] is None and r["d0"] is None) else 1.0
        return total / 3

    want = [min(dist(q, r) for _, r in ref.iterrows()) for _, q in qry.iterrows()]
    got = nearest_distances(enc_q, enc_ref, chunk=2)
    assert got.tolist() == pytest.approx(want)
    assert got[1] == 0.0  # missing equals missing, on every kind
    assert got[2] == pytest.approx((1.0 + 0.0 + 1.0) / 3)  # 30 is 3 ranges away: capped at 1


def wide_table(n_rows: int, n_cols: int, seed: int) -> pd.DataFrame:
    """Mixed kinds (numeric, text, boolean, date) with nulls, `n_cols` columns."""
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(n_cols):
        kind = i % 4
        if kind == 0:
            v = pd.Series(rng.normal(size=n_rows).round(3))
        elif kind == 1:
            v = pd.Series(rng.choice(["a", "b", "c"], n_rows))
        elif kind == 2:
            v = pd.Series(rng.random(n_rows) < 0.5)
        else:
            v = pd.Series(
                pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n_rows), "D")
            ).dt.date
        cols[f"c{i}"] = v.where(rng.random(n_rows) > 0.05, None)
    return pd.DataFrame(cols)


def test_exact_copies_plan_one_join_key_at_300_columns(
    spark: Any, capsys: Any, tmp_path: Path
) -> None:
    """Before (issue 12), the copies join had one `eqNullSafe` term per column over frames that
    carry the split's hash/pmod filters; over a file source, Catalyst's work on that condition ran
    the 1 GB driver heap out at 20 columns (measured: OutOfMemoryError; the packed key: 17 s).
    Now the row is one packed value at any width, and the counts are still exact (nulls equal,
    one differing column is no copy)."""
    from pyspark.sql import functions as F

    from date_spark.evaluation import exact_copies_frame
    from date_spark.io.read import normalize
    from date_spark.io.split import SPLIT_COL, TEST, assign_split

    pdf = wide_table(400, 300, seed=4)
    names = list(pdf.columns)
    pdf.to_parquet(tmp_path / "wide.parquet", index=False)  # a file source, as in the job
    source = spark.read.parquet(str(tmp_path / "wide.parquet"))
    data = normalize(source).transform(assign_split(names, 0.2, 0.25, 42))
    train = data.where(F.col(SPLIT_COL) != TEST).select(*names)
    holdout = data.where(F.col(SPLIT_COL) == TEST).select(*names)
    train_pdf = train.toPandas()
    copies = train_pdf.iloc[:7]
    changed = train_pdf.iloc[7:10].copy()
    changed["c0"] = changed["c0"].fillna(0.0) + 1000.0  # one column differs
    syn = spark.createDataFrame(
        pd.concat([copies, changed], ignore_index=True), schema=train.schema
    )
    frame = exact_copies_frame([syn, holdout], train, names)
    frame.explain(mode="extended")
    plan = capsys.readouterr().out
    analyzed = plan.split("== Analyzed Logical Plan ==")[1].split("== Optimized Logical Plan")[0]
    optimized = plan.split("== Optimized Logical Plan ==")[1].split("== Physical Plan ==")[0]
    assert analyzed.count("<=>") == 1, analyzed[:2000]  # was one term per column
    assert optimized.count("<=>") <= 1, optimized[:2000]
    got = {int(r["_tag"]): (int(r["n"]), int(r["hits"])) for r in frame.collect()}
    n_hold = holdout.count()
    assert n_hold > 0
    assert got[0] == (10, 7)
    assert got[1] == (n_hold, 0)  # the split keeps duplicate rows together: no test row copies
