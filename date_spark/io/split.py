"""Deterministic row splits. A row's split comes from a hash of its values and the seed, so it does
not depend on partitioning, executor count or reruns; duplicate rows land in the same split, which
keeps exact copies from leaking between train and test."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

__all__ = ["SPLIT_COL", "assign_split", "holdout_mask", "row_uniform"]


SPLIT_COL = "_date_split"
TRAIN, VALIDATION, TEST = "train", "validation", "test"
_BUCKETS = 10_000
_UNIFORM = 1 << 40


def _bucket(columns: Sequence[str], seed: int) -> Column:
    cols = [F.col("`" + c.replace("`", "``") + "`") for c in columns]
    return F.pmod(F.xxhash64(F.lit(seed), *cols), F.lit(_BUCKETS))


def row_uniform(columns: Sequence[str], seed: int) -> Column:
    """A draw in [0, 1) from a hash of the row's values and `seed`. Unlike `F.rand`, whose stream
    depends on each row's partition and position, a row gets the same draw however the table is
    partitioned (a local session, a cluster, another input file layout), so samples are too."""
    cols = [F.col("`" + c.replace("`", "``") + "`") for c in columns]
    # the salt keeps draws independent of the split's buckets even when the seeds coincide
    h = F.xxhash64(F.lit(seed), F.lit("date-spark-sample"), *cols)
    return F.pmod(h, F.lit(_UNIFORM)) / F.lit(float(_UNIFORM))


def assign_split(
    columns: Sequence[str],
    test_fraction: float,
    validation_fraction: float,
    seed: int,
    column: str = SPLIT_COL,
) -> Callable[[DataFrame], DataFrame]:
    """`DataFrame -> DataFrame` adding `column` in {train, validation, test}: `test_fraction` of
    rows go to test, then `validation_fraction` of the rest to validation (the paper's 80/20 then
    75/25)."""
    test_cut = round(test_fraction * _BUCKETS)
    val_cut = round(validation_fraction * _BUCKETS)

    def transform(df: DataFrame) -> DataFrame:
        b1 = _bucket(columns, seed)
        b2 = _bucket(columns, seed + 7919)
        label = (
            F.when(b1 < test_cut, F.lit(TEST))
            .when(b2 < val_cut, F.lit(VALIDATION))
            .otherwise(F.lit(TRAIN))
        )
        return df.withColumn(column, label)

    return transform


def holdout_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded boolean holdout mask for small in-memory frames (inside UDFs)."""
    rng = np.random.default_rng(seed)
    k = round(fraction * n)
    mask = np.zeros(n, dtype=bool)
    if 0 < k < n:
        mask[rng.choice(n, size=k, replace=False)] = True
    return mask
