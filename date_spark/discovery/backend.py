"""Where discovery's rows live. The search only sees counts, samples and small results through
`SearchBackend`; `SparkBackend` keeps the table in Spark (one aggregation per count, one pass per
sample, every query on the table metered)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from date_spark.columns import named_col, pandas_safe, restore_names
from date_spark.discovery.scans import ScanMeter
from date_spark.errors import DiscoveryError
from date_spark.io.split import row_uniform
from date_spark.rules import Conjunction, Rule, count_rules
from date_spark.runtime.placement import apply_grouped, on_driver
from date_spark.runtime.spark import to_pandas
from date_spark.schema import TableSchema

__all__ = ["CAND_COL", "KEY_COL", "SearchBackend", "SparkBackend", "TableStats"]

CAND_COL = "_date_cand"
KEY_COL = "_date_key"
_RAND_COL = "_date_r"


# ================================================================================================
# Backends: where rows live. The search below only sees counts, samples and small results.
# ================================================================================================


@dataclass(frozen=True)
class TableStats:
    n_rows: int
    null_counts: Mapping[str, int]
    target_min: Any
    target_max: Any


class SearchBackend(Protocol):
    """The four data operations of one search level."""

    def stats(self) -> TableStats: ...

    def count(self, conjunctions: Sequence[Conjunction]) -> list[int]: ...

    def draw(
        self, level: int, conjunctions: Sequence[Conjunction], fractions: Sequence[float]
    ) -> Any: ...

    def apply(
        self,
        sample: Any,
        fn: Callable[[pd.DataFrame], pd.DataFrame],
        ddl: str,
        only: Sequence[int] | None = None,
    ) -> pd.DataFrame: ...

    def release(self, sample: Any) -> None: ...

    def passes(self) -> float | None:
        """Full passes over the table so far, measured; None where it cannot be measured."""
        ...


class SparkBackend:
    """The table stays in Spark: one aggregation per count, one pass per sample."""

    def __init__(self, df: DataFrame, schema: TableSchema, seed: int) -> None:
        cols = [f.name for f in schema.features] + [schema.target]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DiscoveryError(
                f"columns {missing} of the schema are missing from the training frame"
            )
        types = {f.name: f.dataType for f in df.schema.fields}
        proj = []
        for c in cols:
            col = named_col(c)
            if isinstance(types[c], (T.FloatType, T.DoubleType)):
                # NaN counts as null, as in rules.mask: the Spark filter and the pandas mask agree.
                col = F.when(F.isnan(col), F.lit(None)).otherwise(col)
            proj.append(col.alias(c))
        self.df = df.select(*proj).filter(named_col(schema.target).isNotNull())
        self.schema = schema
        self.cols = cols
        self.seed = seed
        self.meter = ScanMeter()  # every query on self.df goes through meter.observe
        self.n_rows = 0

    def stats(self) -> TableStats:
        feats = [f.name for f in self.schema.features]
        tgt = named_col(self.schema.target)
        aggs = [F.count(F.lit(1)).alias("n"), F.min(tgt).alias("tmin"), F.max(tgt).alias("tmax")]
        aggs += [
            F.count(F.when(named_col(c).isNull(), 1)).alias(f"null{i}") for i, c in enumerate(feats)
        ]
        row = self.meter.observe(self.df).agg(*aggs).first()
        assert row is not None
        self.n_rows = int(row["n"])
        return TableStats(
            int(row["n"]),
            {c: int(row[f"null{i}"]) for i, c in enumerate(feats)},
            row["tmin"],
            row["tmax"],
        )

    def count(self, conjunctions: Sequence[Conjunction]) -> list[int]:
        got = count_rules(self.meter.observe(self.df), [Rule((c,)) for c in conjunctions])
        return [got[i] for i in range(len(conjunctions))]

    def draw(
        self, level: int, conjunctions: Sequence[Conjunction], fractions: Sequence[float]
    ) -> DataFrame | pd.DataFrame:
        r = F.col(_RAND_COL)
        draw = row_uniform(self.cols, self.seed * 1_000_003 + level)  # layout-independent
        tagged = self.meter.observe(self.df).withColumn(_RAND_COL, draw)
        top = max(fractions)
        if top < 1.0:
            tagged = tagged.filter(r < F.lit(float(top)))  # cheap: most rows stop here
        ids = F.array(
            *[
                F.when(c.to_column() & (r < F.lit(float(f))), F.lit(i))
                for i, (c, f) in enumerate(zip(conjunctions, fractions, strict=True))
            ]
        )
        sample = tagged.select(
            F.explode(F.filter(ids, lambda x: x.isNotNull())).alias(CAND_COL),
            F.xxhash64(*[named_col(c) for c in self.cols]).alias(KEY_COL),
            *[named_col(c) for c in self.cols],
        )
        if on_driver(self.n_rows, len(self.cols)):
            # a small table's sample is smaller still: one collect, then the level's models are
            # trained on the driver (`placement`), with no shuffle or Python worker per level
            return to_pandas(sample)
        return sample.cache()

    def apply(
        self,
        sample: DataFrame | pd.DataFrame,
        fn: Callable[[pd.DataFrame], pd.DataFrame],
        ddl: str,
        only: Sequence[int] | None = None,
    ) -> pd.DataFrame:
        if isinstance(sample, pd.DataFrame):
            src_pd = sample if only is None else sample[sample[CAND_COL].isin(list(only))]
            return apply_grouped(src_pd, CAND_COL, fn, ddl)
        src = sample if only is None else sample.filter(F.col(CAND_COL).isin(*list(only)))
        src, back = pandas_safe(src)  # dotted or backticked names: aliased through the UDF

        def named(pdf: pd.DataFrame) -> pd.DataFrame:
            return fn(restore_names(pdf, back))

        return to_pandas(src.groupBy(CAND_COL).applyInPandas(named, ddl))

    def release(self, sample: DataFrame | pd.DataFrame) -> None:
        if not isinstance(sample, pd.DataFrame):
            sample.unpersist()

    def passes(self) -> float | None:
        return self.meter.passes(self.n_rows)
