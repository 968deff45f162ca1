"""Privacy of a synthetic table: how close its rows sit to the training rows, against a holdout.

- Exact copies: synthetic rows equal to a training row on every column (null-safe join), on the
  full tables.
- DCR (distance to closest record): per column, |a - b| / (real max - real min) capped at 1 for
  ordered columns and 0/1 mismatch for discrete ones (missing vs missing 0, missing vs value 1);
  the row distance is the mean over columns. Measured from a sample of at most `dcr_query_rows`
  synthetic rows, and as many holdout rows, to a sample of at most `dcr_reference_rows` training
  rows (numpy on the driver, chunked).
- `too_close` (None without a holdout) is true when either test fires, see `FLAG_RULE`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from date_spark.columns import named_col
from date_spark.evaluation.settings import EvaluationSettings
from date_spark.evaluation.stats import Stats
from date_spark.evaluation.tables import discrete_col, numeric_col, sample_table
from date_spark.runtime.spark import to_pandas
from date_spark.schema import ColumnSpec

FLAG_RULE = (
    "too_close = tail OR copies. tail: q = 5th percentile of DCR(holdout sample -> training "
    "sample); a = share of synthetic sample rows with DCR <= q, b = the same share for the holdout "
    "sample; fires when a - b > max(0.05, 3*sqrt(b(1-b)(1/n_synthetic + 1/n_holdout))). copies: "
    "c_s = exact-copy rate of the synthetic table, c_h = the holdout's (rows equal to a training "
    "row); fires when c_s - c_h > max(0.05, 3*sqrt(c_h(1-c_h)(1/N_synthetic + 1/N_holdout)))."
)
_FLAG_FLOOR = 0.05
_FLAG_Z = 3.0


@dataclass(frozen=True)
class DcrStats:
    rows: int
    p05: float
    median: float
    mean: float
    zero_share: float


@dataclass(frozen=True)
class Privacy:
    exact_copies: int
    exact_copy_rate: float
    holdout_exact_copy_rate: float | None
    reference_rows: int
    dcr_synthetic: DcrStats | None
    dcr_holdout: DcrStats | None
    holdout_p05: float | None
    synthetic_share_within_p05: float | None
    holdout_share_within_p05: float | None
    too_close: bool | None
    reason: str
    rule: str = FLAG_RULE


def _packed(df: DataFrame, names: Sequence[str]) -> Column:
    """The row as one struct value: a join or a distinct keyed on it compares every column
    (null equal to null) through one expression, whatever the column count."""
    return F.struct(*[named_col(n).alias(f"c{i}") for i, n in enumerate(names)])


def exact_copies_frame(
    queries: Sequence[DataFrame], reference: DataFrame, names: Sequence[str]
) -> DataFrame:
    """`_tag, n, hits` per query table: its rows, and those equal to some reference row on every
    column (null equal to null). One join of the queries' union against the distinct reference
    rows, keyed on the packed row: Spark hashes it to place rows and compares the structs of a
    bucket to verify, so the plan holds one join key however wide the table is. (A condition of
    one `eqNullSafe` term per column made Catalyst's constraint inference grow with the
    columns: a 20-column evaluation ran the driver out of heap.)"""
    q = reduce(
        DataFrame.unionByName,
        [
            df.select(F.lit(t).alias("_tag"), _packed(df, names).alias("_row"))
            for t, df in enumerate(queries)
        ],
    )
    r = (
        reference.select(_packed(reference, names).alias("_ref"))
        .distinct()
        .withColumn("_hit", F.lit(1))
    )
    return (
        q.join(r, q["_row"].eqNullSafe(r["_ref"]), "left")
        .groupBy("_tag")
        .agg(F.count(F.lit(1)).alias("n"), F.count("_hit").alias("hits"))
    )


def _exact_copies(
    queries: Sequence[DataFrame], reference: DataFrame, names: Sequence[str]
) -> list[tuple[int, int]]:
    """(rows, exact copies of a reference row) for each query table, in one job."""
    got = {
        int(row["_tag"]): (int(row["n"]), int(row["hits"]))
        for row in exact_copies_frame(queries, reference, names).collect()
    }
    return [got.get(t, (0, 0)) for t in range(len(queries))]


def _samples(
    frames: Sequence[tuple[DataFrame, int, int]], cols: Sequence[Column], seed: int
) -> list[pd.DataFrame]:
    """At most `cap` random rows of each (frame, rows, cap), collected in one job: a Bernoulli
    pre-sample of about 1.2 x cap rows of each (small by construction), cut at the cap on the
    driver. No window and no filter over the union: a filter there (`row_number <= cap`) made
    Catalyst's constraint inference multiply the split's hash condition by every normalised
    column, and a 20-column evaluation ran the driver out of heap."""
    parts = []
    for t, (df, rows, cap) in enumerate(frames):
        part = sample_table(df, rows, int(cap * 1.2) + 10, seed + t)
        parts.append(part.select(F.lit(t).alias("_tag"), *cols))
    pdf = to_pandas(reduce(DataFrame.unionByName, parts))
    rng = np.random.default_rng(seed + 100)
    out = []
    for t, (_, _, cap) in enumerate(frames):
        got = pdf[pdf["_tag"] == t].drop(columns="_tag")
        if len(got) > cap:
            got = got.iloc[np.sort(rng.choice(len(got), size=cap, replace=False))]
        out.append(got.reset_index(drop=True))
    return out


@dataclass(frozen=True)
class _Encoded:
    num: np.ndarray  # float64 (n, k_num), scaled by the real range, NaN = missing
    cat: np.ndarray  # int32 (n, k_cat), -1 = missing


def _encode(
    frames: Sequence[pd.DataFrame],
    cont: Sequence[ColumnSpec],
    disc: Sequence[ColumnSpec],
    lo: Mapping[str, float | None],
    hi: Mapping[str, float | None],
) -> list[_Encoded]:
    vocab: list[dict[str, int]] = []
    for j in range(len(disc)):
        values: set[str] = set()
        for f in frames:
            values.update(str(v) for v in f[f"d{j}"].dropna().unique())
        vocab.append({v: i for i, v in enumerate(sorted(values))})
    out = []
    for f in frames:
        n = len(f)
        num = np.empty((n, len(cont)), dtype=np.float64)
        for j, s in enumerate(cont):
            x = f[f"c{j}"].to_numpy(dtype="float64", na_value=np.nan)
            a, b = lo[s.name], hi[s.name]
            span = (b - a) if a is not None and b is not None and b > a else 1.0
            num[:, j] = (x - (a or 0.0)) / span
        cat = np.full((n, len(disc)), -1, dtype=np.int32)
        for j in range(len(disc)):
            col = f[f"d{j}"]
            mask = col.notna().to_numpy()
            cat[mask, j] = [vocab[j][str(v)] for v in col[mask]]
        out.append(_Encoded(num, cat))
    return out


def nearest_distances(query: _Encoded, reference: _Encoded, chunk: int = 256) -> np.ndarray:
    """Distance from each query row to its closest reference row: the mean over columns of the
    per-column distance (ordered: |a - b| on the range-scaled values, capped at 1; discrete: 0/1;
    missing vs missing 0, missing vs value 1)."""
    n_cols = query.num.shape[1] + query.cat.shape[1]
    nq, nr = query.num.shape[0], reference.num.shape[0]
    out = np.full(nq, np.nan)
    if nq == 0 or nr == 0 or n_cols == 0:
        return out
    rn_nan = np.isnan(reference.num)
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        acc = np.zeros((stop - start, nr), dtype=np.float64)
        for j in range(query.num.shape[1]):
            a = query.num[start:stop, j][:, None]
            b = reference.num[:, j][None, :]
            an, bn = np.isnan(a), rn_nan[:, j][None, :]
            d = np.minimum(np.abs(a - b), 1.0)
            d = np.where(an | bn, np.where(an & bn, 0.0, 1.0), d)
            acc += d
        for j in range(query.cat.shape[1]):
            acc += query.cat[start:stop, j][:, None] != reference.cat[:, j][None, :]
        out[start:stop] = acc.min(axis=1) / n_cols
    return out


def _dcr_stats(d: np.ndarray) -> DcrStats | None:
    if not len(d):
        return None
    return DcrStats(
        rows=len(d),
        p05=float(np.quantile(d, 0.05)),
        median=float(np.median(d)),
        mean=float(np.mean(d)),
        zero_share=float(np.mean(d == 0)),
    )


def _exceeds(a: float, b: float, n_a: int, n_b: int) -> bool:
    """a - b beyond max(5 points, 3 standard errors of the difference under b)."""
    se = math.sqrt(max(b * (1 - b), 0.0) * (1 / max(n_a, 1) + 1 / max(n_b, 1)))
    return a - b > max(_FLAG_FLOOR, _FLAG_Z * se)


def measure_privacy(
    syn: DataFrame,
    syn_rows: int,
    train: DataFrame,
    train_rows: int,
    holdout: DataFrame | None,
    shared: Sequence[ColumnSpec],
    cont: Sequence[ColumnSpec],
    disc: Sequence[ColumnSpec],
    rs: Stats,
    st: EvaluationSettings,
) -> Privacy:
    names = [s.name for s in shared]
    queries = [syn] + ([holdout] if holdout is not None else [])
    counted = _exact_copies(queries, train, names)
    copies = counted[0][1]
    copy_rate = copies / syn_rows if syn_rows else 0.0
    hold_rows = counted[1][0] if holdout is not None else 0
    hold_rate = counted[1][1] / hold_rows if hold_rows else None

    cols = [numeric_col(s).alias(f"c{j}") for j, s in enumerate(cont)] + [
        discrete_col(s).alias(f"d{j}") for j, s in enumerate(disc)
    ]
    wanted = [(train, train_rows, st.dcr_reference_rows), (syn, syn_rows, st.dcr_query_rows)]
    if holdout is not None and hold_rows:
        wanted.append((holdout, hold_rows, st.dcr_query_rows))
    frames = _samples(wanted, cols, st.seed + 11)
    ref_pdf = frames[0]
    enc = _encode(frames, cont, disc, rs.lo, rs.hi)
    d_syn = nearest_distances(enc[1], enc[0])
    d_hold = nearest_distances(enc[2], enc[0]) if len(enc) > 2 else np.array([])
    dcr_syn, dcr_hold = _dcr_stats(d_syn), _dcr_stats(d_hold)

    too_close: bool | None = None
    q = a = b = None
    reason = "no holdout given: nothing to compare the synthetic rows with"
    if dcr_hold is not None and dcr_syn is not None and hold_rate is not None:
        q = float(np.quantile(d_hold, 0.05))
        a = float(np.mean(d_syn <= q))
        b = float(np.mean(d_hold <= q))
        tail = _exceeds(a, b, len(d_syn), len(d_hold))
        copy = _exceeds(copy_rate, hold_rate, syn_rows, hold_rows)
        too_close = tail or copy
        parts = []
        if tail:
            parts.append(
                f"{a:.1%} of synthetic rows lie within the holdout's 5th-percentile distance "
                f"({q:.4g}) of a training row, against {b:.1%} of holdout rows"
            )
        if copy:
            parts.append(
                f"{copy_rate:.1%} of synthetic rows copy a training row, against "
                f"{hold_rate:.1%} of holdout rows"
            )
        reason = "; ".join(parts) if parts else "synthetic rows are no closer than the holdout"
    return Privacy(
        exact_copies=copies,
        exact_copy_rate=copy_rate,
        holdout_exact_copy_rate=hold_rate,
        reference_rows=len(ref_pdf),
        dcr_synthetic=dcr_syn,
        dcr_holdout=dcr_hold,
        holdout_p05=q,
        synthetic_share_within_p05=a,
        holdout_share_within_p05=b,
        too_close=too_close,
        reason=reason,
    )


__all__ = [
    "FLAG_RULE",
    "DcrStats",
    "Privacy",
    "exact_copies_frame",
    "measure_privacy",
    "nearest_distances",
]
