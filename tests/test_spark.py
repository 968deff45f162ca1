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
