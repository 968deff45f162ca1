"""`date_spark.spark`: the per-stage SQL settings put the session's own values back."""

from __future__ import annotations

from typing import Any

import pytest

from date_spark.spark import STAGE_SQL_CONF, sql_conf

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
        caplog.at_level("INFO", logger="date_spark.spark"),
        sql_conf(spark, {static: "/nowhere", KEY: "false"}),
    ):
        ran = True
        assert spark.conf.get(static) == before
        assert spark.conf.get(KEY) == "false"  # the settable one is still set
    assert ran and spark.conf.get(static) == before
    assert any(static in r.getMessage() for r in caplog.records)
    assert spark.conf.get(KEY, None) is None
