"""The output's commit protocol: exact schema, date replacement, failure safety."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from date_spark.config import OutputConfig
from date_spark.io.output import PROVENANCE_COLS, input_frame, output_schema, synthetic_frame, write

INPUT = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("age", T.IntegerType()),
        T.StructField("score", T.DecimalType(10, 2)),
        T.StructField("region", T.StringType()),
        T.StructField("opened", T.DateType()),
        T.StructField("flag", T.BooleanType()),
        T.StructField("y", T.LongType()),
    ]
)


def synth_rows(n: int = 3) -> pd.DataFrame:
    # what selection hands over: the run's columns (no `id`, it was excluded) plus the arm
    return pd.DataFrame(
        {
            "age": [30 + i for i in range(n)],
            "score": [1.25 * i for i in range(n)],
            "region": ["north"] * n,
            "opened": [dt.date(2020, 1, 1 + i) for i in range(n)],
            "flag": [True] * n,
            "y": [i % 2 for i in range(n)],
            "_date_arm": ["a1"] * n,
            "_date_rule": ["age >= 30"] * n,
            "_date_round": [1] * n,
            "_date_generator": ["llm"] * n,
        }
    )


def input_df(spark: Any) -> Any:
    from decimal import Decimal

    return spark.createDataFrame(
        [(1, 40, Decimal("3.50"), "south", dt.date(2019, 5, 1), False, 1)], INPUT
    )


def test_schema_is_input_plus_provenance(spark: Any) -> None:
    out = synthetic_frame(spark, synth_rows(), INPUT, run_id="r1", run_date=dt.date(2026, 1, 2))
    assert out.columns == output_schema(INPUT)
    assert [f.dataType for f in out.schema.fields[: len(INPUT.fields)]] == [
        f.dataType for f in INPUT.fields
    ]
    rows = out.collect()
    assert all(r["_date_synthetic"] and r["_date_run_id"] == "r1" for r in rows)
    assert all(r["id"] is None for r in rows)  # excluded input column: null in synthetic rows
    assert str(rows[1]["score"]) == "1.25"
    aug = input_frame(input_df(spark), run_id="r1", run_date=dt.date(2026, 1, 2)).unionByName(out)
    assert aug.where(~F.col("_date_synthetic")).count() == 1
    assert aug.columns == output_schema(INPUT)


def test_rerun_replaces_only_its_date(spark: Any, tmp_path: Path) -> None:
    cfg = OutputConfig(path=str(tmp_path / "out"), run_date=dt.date(2026, 1, 1))
    d1 = synthetic_frame(spark, synth_rows(3), INPUT, run_id="r1", run_date=dt.date(2026, 1, 1))
    d2 = synthetic_frame(spark, synth_rows(5), INPUT, run_id="r2", run_date=dt.date(2026, 1, 2))
    write(d1, cfg, staging_dir=tmp_path / "s1")
    write(d2, cfg, staging_dir=tmp_path / "s2")
    again = synthetic_frame(spark, synth_rows(4), INPUT, run_id="r3", run_date=dt.date(2026, 1, 1))
    write(again, cfg, staging_dir=tmp_path / "s3")
    back = spark.read.parquet(cfg.path)
    counts = {str(r["run_date"]): r["count"] for r in back.groupBy("run_date").count().collect()}
    assert counts == {"2026-01-01": 4, "2026-01-02": 5}
    assert {r["_date_run_id"] for r in back.where("run_date = '2026-01-01'").collect()} == {"r3"}


def test_failure_during_write_keeps_previous_output(spark: Any, tmp_path: Path) -> None:
    cfg = OutputConfig(path=str(tmp_path / "out"), run_date=dt.date(2026, 1, 1))
    good = synthetic_frame(spark, synth_rows(3), INPUT, run_id="r1", run_date=dt.date(2026, 1, 1))
    write(good, cfg, staging_dir=tmp_path / "s1")
    before = sorted(map(tuple, spark.read.parquet(cfg.path).collect()))

    @F.udf("string")
    def explode_on_row(region: str) -> str:
        raise RuntimeError("injected failure during the write")

    bad = synthetic_frame(spark, synth_rows(6), INPUT, run_id="r2", run_date=dt.date(2026, 1, 1))
    bad = bad.withColumn("region", explode_on_row("region"))
    with pytest.raises(Exception, match="injected failure"):
        write(bad, cfg, staging_dir=tmp_path / "s2")
    after = sorted(map(tuple, spark.read.parquet(cfg.path).collect()))
    assert after == before


def test_catalog_table_output(spark: Any, tmp_path: Path) -> None:
    name = "date_spark_test_out"
    spark.sql(f"DROP TABLE IF EXISTS {name}")
    cfg = OutputConfig(table=name, run_date=dt.date(2026, 1, 1))
    d1 = synthetic_frame(spark, synth_rows(2), INPUT, run_id="r1", run_date=dt.date(2026, 1, 1))
    write(d1, cfg, staging_dir=tmp_path / "s1")
    d2 = synthetic_frame(spark, synth_rows(3), INPUT, run_id="r2", run_date=dt.date(2026, 1, 1))
    write(d2, cfg, staging_dir=tmp_path / "s2")
    assert spark.table(name).count() == 3
    assert set(PROVENANCE_COLS) <= set(spark.table(name).columns)
    spark.sql(f"DROP TABLE IF EXISTS {name}")


def test_no_kept_rows_give_the_same_schema_without_python_data(spark: Any) -> None:
    """An empty selection is built in the JVM (`spark.range(0)`), not from a Python RDD whose
    read would start Python workers, and has the schema a non-empty one has."""
    run_date = dt.date(2026, 1, 2)
    some = synthetic_frame(spark, synth_rows(2), INPUT, run_id="r1", run_date=run_date)
    none = synthetic_frame(spark, synth_rows(0), INPUT, run_id="r1", run_date=run_date)
    assert some.count() == 2 and none.count() == 0
    assert none.schema == some.schema
    plan = none._jdf.queryExecution().optimizedPlan().toString()
    assert "ExistingRDD" not in plan and "LogicalRDD" not in plan, plan


def test_rerun_that_keeps_nothing_clears_its_date(spark: Any, tmp_path: Path) -> None:
    cfg = OutputConfig(path=str(tmp_path / "out"), run_date=dt.date(2026, 1, 1))
    write(
        synthetic_frame(spark, synth_rows(3), INPUT, run_id="r1", run_date=dt.date(2026, 1, 1)),
        cfg,
        staging_dir=tmp_path / "s1",
    )
    other = OutputConfig(path=str(tmp_path / "out"), run_date=dt.date(2026, 1, 2))
    write(
        synthetic_frame(spark, synth_rows(2), INPUT, run_id="r2", run_date=dt.date(2026, 1, 2)),
        other,
        staging_dir=tmp_path / "s2",
    )
    empty = synthetic_frame(spark, synth_rows(0), INPUT, run_id="r3", run_date=dt.date(2026, 1, 1))
    res = write(empty, cfg, staging_dir=tmp_path / "s3")
    assert res["rows"] == 0 and "removed" in res["note"]
    left = spark.read.parquet(cfg.path)
    assert {str(r["run_date"]) for r in left.collect()} == {"2026-01-02"}
