"""Row-hash splits and draws: the same for a row however the table is partitioned."""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.sql import functions as F

from date_spark.io.split import SPLIT_COL, TEST, assign_split, row_uniform
from date_spark.testing.planted import planted_regimes


def test_row_uniform_is_uniform_layout_free_and_apart_from_the_split(spark: Any) -> None:
    pdf = planted_regimes(20_000, n_features=8, seed=1).drop(columns="regime")
    cols = list(pdf.columns)
    df = spark.createDataFrame(pdf).transform(assign_split(cols, 0.2, 0.25, seed=0))

    def draws(frame: Any) -> Any:
        out = frame.select(*cols, SPLIT_COL, row_uniform(cols, 0).alias("u")).toPandas()
        return out.sort_values(cols).reset_index(drop=True)

    a = draws(df.coalesce(1))
    b = draws(df.repartition(9))
    np.testing.assert_array_equal(a["u"].to_numpy(), b["u"].to_numpy())
    u = a["u"].to_numpy()
    assert u.min() >= 0 and u.max() < 1
    assert np.abs(np.histogram(u, bins=10, range=(0, 1))[0] / len(u) - 0.1).max() < 0.01
    # same seed as the split: a 20% draw still holds about 20% test rows
    share = (a.loc[u < 0.2, SPLIT_COL] == TEST).mean()
    assert abs(share - (a[SPLIT_COL] == TEST).mean()) < 0.02
    assert df.where(row_uniform(cols, 0) < 0.5).count() == int((u < 0.5).sum())
    assert df.select(F.min(row_uniform(cols, 5))).first()[0] >= 0
