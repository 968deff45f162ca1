"""Validity on a small, deliberately messy synthetic table whose every answer is known by hand."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from date_spark.columns import RULE
from date_spark.errors import InputError
from date_spark.evaluation import EvaluationResult, evaluate, infer_schema
from date_spark.schema import TableSchema

REAL = pd.DataFrame(
    {
        "age": [25, 30, 35, 40, 45, 50, 55, 60],
        "region": ["north", "south", "east", "west"] * 2,
        "income": [1000.0 * i for i in range(1, 9)],
        "opened": [dt.date(2020, 1, i) for i in range(1, 9)],
        "default": [0, 1] * 4,
    }
)
MARS = '{"any": [{"all": [{"column": "region", "op": "=", "value": "mars"}]}]}'
SYNTHETIC = pd.DataFrame(
    {
        "age": ["30", "41", "abc", "70", None, "20"],  # text, one value not a number
        "region": ["north", "mars", "east", None, "west", "south"],
        "income": [1500.0, 9000.0, 3000.0, np.nan, 4000.0, 500.0],
        "default": [0, 1, 2, 1, 0, 1],
        "note": ["x"] * 6,  # not in the real table; "opened" is missing
        RULE: ["age >= 40", MARS, "age >>> 3", None, "age >= 40", "income < 1000"],
    }
)


@pytest.fixture(scope="module")
def real(spark: Any) -> Any:
    return spark.createDataFrame(REAL)


@pytest.fixture(scope="module")
def schema(real: Any) -> TableSchema:
    return infer_schema(real, "default")


@pytest.fixture(scope="module")
def messy(spark: Any, real: Any, schema: TableSchema) -> EvaluationResult:
    syn = spark.createDataFrame(SYNTHETIC)
    return evaluate(real, syn, schema, rule_column=RULE)


def test_rule_validity(messy: EvaluationResult) -> None:
    v = messy.validity
    by_rule = {r.rule: r for r in v.rules}
    assert (by_rule["age >= 40"].rows, by_rule["age >= 40"].satisfied) == (2, 0)  # 30; missing
    assert (by_rule[MARS].rows, by_rule[MARS].satisfied) == (1, 1)  # JSON form
    assert (by_rule["income < 1000"].rows, by_rule["income < 1000"].satisfied) == (1, 1)
    bad = by_rule["age >>> 3"]
    assert (bad.rows, bad.satisfied) == (1, 0) and bad.error and "cannot parse" in bad.error
    assert v.rows_without_rule == 1
    assert (v.rule_rows, v.rule_satisfied) == (5, 2)
    assert v.rule_share == pytest.approx(0.4)


def test_schema_adherence(messy: EvaluationResult) -> None:
    v = messy.validity
    assert v.missing_columns == ["opened"]
    assert v.extra_columns == ["note"]
    assert v.type_mismatches == {"age": "string -> bigint"}
    assert v.uncastable_values == {"age": 1}
    assert v.castable_rows == 5
    assert v.schema_adherence == pytest.approx(4 / 5 * 5 / 6)
    assert messy.columns == ["age", "region", "income", "default"]
    assert {s.column for s in messy.fidelity.column_shapes} == set(messy.columns)


def test_category_and_boundary_adherence(messy: EvaluationResult) -> None:
    v = messy.validity
    # region: "mars" is unknown, and a missing value adheres only where the real column has some
    assert v.category_adherence["region"] == pytest.approx(4 / 6)
    assert v.category_adherence["default"] == pytest.approx(5 / 6)  # label 2 never occurs
    assert v.category_adherence_score == pytest.approx((4 / 6 + 5 / 6) / 2)
    # missing values are ignored: age 30, 41 of 30, 41, 70, 20 lie in [25, 60]
    assert v.boundary_adherence["age"] == pytest.approx(2 / 4)
    assert v.boundary_adherence["income"] == pytest.approx(3 / 5)
    assert v.boundary_adherence_score == pytest.approx((0.5 + 0.6) / 2)


def test_result_serialises(messy: EvaluationResult) -> None:
    d = messy.to_dict()
    assert d["validity"]["rule_share"] == pytest.approx(0.4)
    m = messy.metrics()
    assert m["validity.rule_share"] == pytest.approx(0.4)
    assert m["validity.schema_adherence"] == pytest.approx(2 / 3)
    assert "privacy.too_close" not in m  # no holdout: no flag, nothing logged
    assert all(isinstance(x, float) for x in m.values())


def test_without_holdout_there_is_no_privacy_flag(messy: EvaluationResult) -> None:
    p = messy.privacy
    assert p.too_close is None and "no holdout" in p.reason
    assert p.holdout_exact_copy_rate is None and p.dcr_holdout is None
    assert p.exact_copies == 0 and p.dcr_synthetic is not None


def test_bad_inputs_are_input_errors(spark: Any, real: Any, schema: TableSchema) -> None:
    other = spark.createDataFrame(pd.DataFrame({"zzz": [1, 2]}))
    with pytest.raises(InputError, match="shares no column"):
        evaluate(real, other, schema)
    with pytest.raises(InputError, match="rule column 'why'"):
        evaluate(real, spark.createDataFrame(SYNTHETIC), schema, rule_column="why")
    with pytest.raises(InputError, match="target column 'nope'"):
        infer_schema(real, "nope")
    empty = spark.createDataFrame(REAL.iloc[:0], schema=real.schema)
    with pytest.raises(InputError, match="synthetic table has no rows"):
        evaluate(real, empty, schema)
