"""The generator without an LLM: rule-bounded SMOTE-style interpolation inside a partition."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from date_spark.columns import PARENTS
from date_spark.rules import Rule
from date_spark.schema import Kind, TableSchema

__all__ = ["exact_ints", "interpolate", "request_parents", "with_parents"]

_PARENT_TAG = "|p"  # request id suffix of an interpolated row: `...|interp|p12.57`

_STEPS = 1 << 53  # the interpolation weight as an exact fraction of this


def exact_ints(values: pd.Series) -> pd.Series:
    """Whole numbers as pandas' nullable Int64, without a float64 detour (which rounds values
    past 2**53: a bigint near 2**60 would come out a multiple of 256)."""
    items = [
        None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else int(v)
        for v in values.tolist()
    ]
    return pd.Series(pd.array(items, dtype="Int64"), index=values.index, name=values.name)


def request_parents(request_id: Any) -> str | None:
    """The parents ("12.57") an interpolated row's request id carries, else None."""
    text = str(request_id)
    at = text.rfind(_PARENT_TAG)
    return text[at + len(_PARENT_TAG) :] if at >= 0 else None


def with_parents(request_id: str, parents: str) -> str:
    return f"{request_id}{_PARENT_TAG}{parents}"


def interpolate(
    train: pd.DataFrame,
    rule: Rule,
    schema: TableSchema,
    n: int,
    seed: int,
    *,
    parents: bool = False,
) -> pd.DataFrame:
    """Rule-bounded SMOTE-style rows from same-label pairs of `train` (which lies in `rule`).
    With `parents`, a `PARENTS` column names each row's two parents by `train`'s index labels:
    a row between two random rows sits nearer to neither than to other rows, so selection
    could not find its parents by distance (its nearest two real rows were the parents for a
    third of the rows on a churn table, and the cross-fitted gain rose from -4% to +27%)."""
    rng = np.random.default_rng(seed)
    empty = train.iloc[:0][schema.names].copy()
    if parents:
        empty[PARENTS] = pd.Series(dtype=object)
    if len(train) < 2 or n <= 0:
        return empty
    target = schema.target
    if schema.task == "classification":
        groups = [g for _, g in train.groupby(target) if len(g) >= 2]
        weights = np.array([len(g) for g in groups], dtype=float)
        if not groups:
            return empty
        picks = rng.choice(len(groups), size=n, p=weights / weights.sum())
    else:
        groups, picks = [train], np.zeros(n, dtype=int)
    rows = []
    pairs = []
    for gi in picks:
        g = groups[gi]
        ab = rng.choice(len(g), size=2, replace=False)
        pairs.append(f"{g.index[ab[0]]}.{g.index[ab[1]]}")
        a, b = g.iloc[ab].to_dict("records")
        lam = rng.random()
        row: dict[str, Any] = {}
        for spec in schema.columns:
            va, vb = a[spec.name], b[spec.name]
            if spec.name == target and schema.task == "classification":
                row[spec.name] = va
            elif spec.kind is Kind.NUMERIC and pd.notna(va) and pd.notna(vb) and spec.integral:
                ia, ib = int(va), int(vb)  # exact: a bigint near 2**60 never passes a float
                row[spec.name] = ia + ((ib - ia) * int(lam * _STEPS) + _STEPS // 2) // _STEPS
            elif spec.kind is Kind.NUMERIC and pd.notna(va) and pd.notna(vb):
                row[spec.name] = float(va) + lam * (float(vb) - float(va))
            elif spec.kind in (Kind.DATE, Kind.TIMESTAMP) and pd.notna(va) and pd.notna(vb):
                ta, tb = pd.Timestamp(va), pd.Timestamp(vb)
                t = ta + (tb - ta) * lam
                # Spark keeps microseconds: floored first, so no nanosecond is dropped with a
                # warning per row (and never below the earlier endpoint, itself in microseconds)
                row[spec.name] = (
                    t.date() if spec.kind is Kind.DATE else t.floor("us").to_pydatetime()
                )
            else:
                row[spec.name] = va if rng.random() < 0.5 else vb
        rows.append(row)
    out = pd.DataFrame(rows, columns=schema.names)
    for spec in schema.columns:
        if spec.kind is Kind.NUMERIC and spec.integral:
            out[spec.name] = exact_ints(out[spec.name])
    inside = rule.mask(out).to_numpy(dtype=bool)
    if parents:
        out[PARENTS] = pairs
    return out[inside].reset_index(drop=True)
