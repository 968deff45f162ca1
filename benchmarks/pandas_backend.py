"""The same search on one machine: pandas masks instead of Spark aggregations (the baseline)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from date_spark.discovery import CAND_COL, KEY_COL, TableStats
from date_spark.rules import Conjunction
from date_spark.schema import TableSchema


class PandasBackend:
    """Holds the whole table in memory; every operation is a plain pandas/numpy loop."""

    def __init__(self, pdf: pd.DataFrame, schema: TableSchema, seed: int) -> None:
        cols = [f.name for f in schema.features] + [schema.target]
        self.pdf = pdf[cols][pdf[schema.target].notna()].reset_index(drop=True)
        self.schema = schema
        self.seed = seed
        self.key = pd.util.hash_pandas_object(self.pdf, index=False).to_numpy().astype(np.int64)

    def stats(self) -> TableStats:
        t = self.pdf[self.schema.target]
        feats = [f.name for f in self.schema.features]
        return TableStats(
            len(self.pdf), {c: int(self.pdf[c].isna().sum()) for c in feats}, t.min(), t.max()
        )

    def count(self, conjunctions: Sequence[Conjunction]) -> list[int]:
        return [int(c.mask(self.pdf).sum()) for c in conjunctions]

    def draw(
        self, level: int, conjunctions: Sequence[Conjunction], fractions: Sequence[float]
    ) -> pd.DataFrame:
        r = np.random.default_rng(self.seed * 1_000_003 + level).random(len(self.pdf))
        parts = []
        for i, (c, f) in enumerate(zip(conjunctions, fractions, strict=True)):
            m = c.mask(self.pdf).to_numpy() & (r < f)
            part = self.pdf[m].copy()
            part.insert(0, KEY_COL, self.key[m])
            part.insert(0, CAND_COL, i)
            parts.append(part)
        return pd.concat(parts, ignore_index=True)

    def apply(
        self,
        sample: pd.DataFrame,
        fn: Callable[[pd.DataFrame], pd.DataFrame],
        ddl: str,
        only: Sequence[int] | None = None,
    ) -> pd.DataFrame:
        src = sample if only is None else sample[sample[CAND_COL].isin(list(only))]
        out = [fn(g) for _, g in src.groupby(CAND_COL, sort=True)]
        return pd.concat(out, ignore_index=True) if out else pd.DataFrame()

    def release(self, sample: Any) -> None:
        return None

    def passes(self) -> float | None:
        """Not measured: every count is one mask per conjunction, not one pass."""
        return None
