"""`date_spark.runtime.spark`: the per-stage SQL settings put the session's own values back."""

from __future__ import annotations

from typing import Any

import pytest

from date_spark.runtime.spark import STAGE_SQL_CONF, sql_conf

KEY = "spark.sql.constraintPropagation.enabled"


def test_stage_settings_hold_inside_the_block_and_are_restored_after(spark: Any) -> None:
    assert KEY in STAGE_SQL_CONF
    spark.conf.unset(KEY)
    assert spark.conf.get(KEY, None) is None  # never set: Spark's default applies
    with sql_conf(spark):
        assert spark.conf.get(KEY) == "false"
    assert spark.conf.get(KEY, None) is None  # unset again, not pinned to a value

    spark.conf.set(KEY, "true")  # a user's own choice survives the stage, even when it fails
    with pytest.raises(RuntimeError), sql_conf(spark):
        assert spark.conf.get(KEY) == "false"
        raise RuntimeError("stage failed")
    assert spark.conf.get(KEY) == "true"
    spark.conf.unset(KEY)


def test_a_setting_the_session_refuses_is_skipped_and_the_block_still_runs(
    spark: Any, caplog: Any
) -> None:
    """Managed clusters expose only some settings; a static one stands in for them here."""
    static = "spark.sql.warehouse.dir"
    before = spark.conf.get(static)
    ran = False
    with (
        caplog.at_level("INFO", logger="date_spark.runtime.spark"),
        sql_conf(spark, {static: "/nowhere", KEY: "false"}),
    ):
        ran = True
        assert spark.conf.get(static) == before
        assert spark.conf.get(KEY) == "false"  # the settable one is still set
    assert ran and spark.conf.get(static) == before
    assert any(static in r.getMessage() for r in caplog.records)
    assert spark.conf.get(KEY, None) is None


class _Conf:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)


class _Session:
    def __init__(self, **values: str) -> None:
        self.conf = _Conf({k.replace("_", "."): v for k, v in values.items()})


def test_task_slots_reads_the_session_config(spark: Any) -> None:
    """The suite's session is local[2,2]; other masters are read from their settings alone."""
    import os

    from date_spark.runtime.spark import task_slots

    assert spark.conf.get("spark.master") == "local[2,2]"  # 2 cores, a failed task retried
    assert task_slots(spark) == 2
    assert task_slots(_Session(spark_master="local[*]")) == (os.cpu_count() or 1)  # type: ignore[arg-type]
    assert task_slots(_Session(spark_master="local")) == 1  # type: ignore[arg-type]
    assert task_slots(_Session(spark_master="local[3,2]")) == 3  # type: ignore[arg-type]
    cluster = {"spark_master": "spark://h:7077", "spark_executor_instances": "4",
               "spark_executor_cores": "4", "spark_task_cpus": "2"}  # fmt: skip
    assert task_slots(_Session(**cluster)) == 8  # type: ignore[arg-type]
    assert task_slots(_Session(spark_master="yarn", spark_default_parallelism="6")) == 6  # type: ignore[arg-type]
    assert task_slots(_Session(spark_master="yarn")) is None  # type: ignore[arg-type]  # unknown
