"""The scan meter counts full passes over a table from Spark's observed metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import functions as F

from date_spark.discovery.scans import ScanMeter, format_passes

ROWS = 5000


def table(spark: Any, tmp_path: Path) -> Any:
    pdf = pd.DataFrame({"a": [i % 7 for i in range(ROWS)], "x": [i / ROWS for i in range(ROWS)]})
    path = tmp_path / "t.parquet"
    spark.createDataFrame(pdf).write.parquet(str(path))
    return spark.read.parquet(str(path))


def test_each_query_over_the_table_is_one_pass(spark: Any, tmp_path: Path) -> None:
    df = table(spark, tmp_path)
    meter = ScanMeter()
    assert meter.passes(ROWS) == 0.0
    assert meter.observe(df).agg(F.sum("x")).first() is not None
    assert meter.passes(ROWS) == 1.0
    # A selective filter still reads every row: a full pass.
    assert meter.observe(df).filter(F.col("x") < 0.01).count() == 50
    assert meter.passes(ROWS) == 2.0


def test_a_cached_frame_read_twice_is_one_pass(spark: Any, tmp_path: Path) -> None:
    df = table(spark, tmp_path)
    meter = ScanMeter()
    sample = meter.observe(df).filter(F.col("a") == 3).cache()
    try:
        first = sample.count()
        assert first > 0
        assert sample.groupBy("a").count().first() is not None  # reads the cache
        assert meter.passes(ROWS) == 1.0
    finally:
        sample.unpersist()
    uncached = meter.observe(df).filter(F.col("a") == 3)
    assert uncached.count() == first
    assert meter.passes(ROWS) == 2.0


def test_metrics_that_never_arrive_are_not_measured(spark: Any, tmp_path: Path) -> None:
    df = table(spark, tmp_path)
    meter = ScanMeter(timeout_s=1.0)
    assert meter.observe(df).agg(F.count(F.lit(1))).first() is not None
    assert meter.passes(ROWS) == 1.0
    meter.observe(df)  # a query that never runs reports no metrics
    assert meter.passes(ROWS) is None
    assert meter.passes(ROWS) is None  # and stays unmeasured: a partial sum is not a count
    assert format_passes(None) == "full scans not measured"


def test_format_passes() -> None:
    assert format_passes(2.0) == "2 full scans"
    assert format_passes(1.0) == "1 full scan"
    assert format_passes(0.0) == "0 full scans"
    assert format_passes(1.5) == "1.5 full scans"
