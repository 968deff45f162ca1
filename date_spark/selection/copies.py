"""Copies are not new rows: a generated row equal to a real row (training, validation or the job's
own test split) teaches a model nothing new and, when it copies a test row, inflates every
held-out figure (LLMs reproduce famous tables row by row). Exact copies are dropped before
scoring; near copies (every column within `NEAR` of the real row's value, as a share of the
column's range, categories equal) are counted beside them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["NEAR", "CopyCount", "find_copies"]

NEAR = 0.01  # a near copy: every numeric column within 1% of its range, every category equal


@dataclass(frozen=True)
class CopyCount:
    """Generated rows that copy a real row, by where the real row lives."""

    rows: int = 0
    exact_train: int = 0  # copies of a training or validation row (dropped)
    exact_test: int = 0  # copies of a row of the job's own test split (dropped)
    near: int = 0  # near copies of a real row (counted, kept)

    @property
    def dropped(self) -> int:
        return self.exact_train + self.exact_test

    def text(self) -> str:
        if not self.rows:
            return "no generated rows"
        return (
            f"{self.dropped} of {self.rows} generated rows copied a real row and were dropped "
            f"({self.exact_train} training, {self.exact_test} test); {self.near} near copies "
            f"(every column within {NEAR:.0%} of its range) kept"
        )


def _matrix(
    frame: pd.DataFrame, target: str, encode: Callable[[pd.DataFrame], np.ndarray]
) -> np.ndarray:
    x = np.asarray(encode(frame.drop(columns=[target])), dtype=float).reshape(len(frame), -1)
    y = frame[target]
    num = pd.to_numeric(y, errors="coerce")
    if num.notna().all() and len(y):
        yv = num.to_numpy(dtype=float)
    else:  # labels as codes: only equality matters
        codes = {v: i for i, v in enumerate(sorted({str(v) for v in y}))}
        yv = np.array([codes[str(v)] for v in y], dtype=float)
    return np.column_stack([x, yv]) if len(frame) else np.zeros((0, x.shape[1] + 1))


def find_copies(
    generated: pd.DataFrame,
    references: Sequence[pd.DataFrame],
    *,
    target: str,
    encode: Callable[[pd.DataFrame], np.ndarray],
    categorical: Sequence[int] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Per generated row: the index of the first reference frame it copies exactly (-1: none),
    and whether it is a near copy of a row of any reference (module doc). Columns are compared on
    the model's encoding (categories as codes) plus the target; missing equals missing."""
    n = len(generated)
    exact = np.full(n, -1, dtype=int)
    near = np.zeros(n, dtype=bool)
    refs = [r for r in references if len(r)]
    if not n or not refs:
        return exact, near
    from sklearn.neighbors import NearestNeighbors

    g = _matrix(generated, target, encode)
    mats = [_matrix(r, target, encode) for r in references]
    allref = np.vstack([m for m in mats if len(m)])
    with np.errstate(all="ignore"):
        lo, hi = np.nanmin(allref, axis=0), np.nanmax(allref, axis=0)
    scale = np.where(np.isfinite(hi - lo) & (hi - lo > 0), hi - lo, 1.0)
    cat = [i for i in categorical if i < g.shape[1] - 1]
    scale[cat] = 1.0 / 10  # a different category is 10 ranges away: never near
    scale[-1] = scale[-1] if generated[target].dtype.kind in "fiu" else 1.0 / 10
    lo = np.nan_to_num(lo)

    def scaled(m: np.ndarray) -> np.ndarray:
        out = (m - lo) / scale
        return np.where(np.isnan(out), -1e6, out)  # missing equals missing, far from any value

    gs = scaled(g)
    for i, m in enumerate(mats):
        if not len(m):
            continue
        nn = NearestNeighbors(n_neighbors=1, metric="chebyshev").fit(scaled(m))
        dist = nn.kneighbors(gs, return_distance=True)[0][:, 0]
        exact[(exact < 0) & (dist <= 1e-9)] = i
        near |= dist <= NEAR
    near &= exact < 0
    return exact, near
