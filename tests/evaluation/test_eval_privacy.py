"""Privacy: exact copies by a null-safe join, DCR against a holdout baseline, the too_close flag.
Near copies (no exact copy, flagged by distance alone) are shown end to end in test_eval_cli."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from date_spark.evaluation import (
    EvaluationResult,
    _encode,
    nearest_distances,
)
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
