"""Shared tables and evaluation results for the evaluation tests. Each `evaluate` call costs a
handful of Spark jobs, so the results the tests inspect are computed once per module run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from date_spark.evaluation import EvaluationResult, evaluate, infer_schema
from date_spark.schema import TableSchema
from date_spark.testing.planted import demo_credit


@pytest.fixture(scope="session")
def credit() -> dict[str, pd.DataFrame]:
    """Training rows, a holdout and a fresh draw from the same generator (a stand-in for a
    faithful synthesizer that copies nothing)."""
    return {
        "train": demo_credit(600, seed=1),
        "holdout": demo_credit(400, seed=2),
        "fresh": demo_credit(400, seed=3),
    }


@pytest.fixture(scope="session")
def credit_frames(spark: Any, credit: dict[str, pd.DataFrame]) -> dict[str, Any]:
    return {k: spark.createDataFrame(v) for k, v in credit.items()}


@pytest.fixture(scope="session")
def credit_schema(credit_frames: dict[str, Any]) -> TableSchema:
    return infer_schema(credit_frames["train"], "default")


@pytest.fixture(scope="session")
def identical_result(credit_frames: dict[str, Any], credit_schema: TableSchema) -> EvaluationResult:
    """The synthetic table IS the training table."""
    f = credit_frames
    return evaluate(f["train"], f["train"], credit_schema, holdout=f["holdout"])


@pytest.fixture(scope="session")
def fresh_result(credit_frames: dict[str, Any], credit_schema: TableSchema) -> EvaluationResult:
    f = credit_frames
    return evaluate(f["train"], f["fresh"], credit_schema, holdout=f["holdout"])


def days(s: pd.Series) -> pd.Series:
    """Dates as days since the epoch, as the evaluation compares them."""
    return (pd.to_datetime(s) - pd.Timestamp("1970-01-01")).dt.days


def correlated(n: int, seed: int) -> pd.DataFrame:
    """x and y strongly correlated, c a function of x, z independent."""
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    return pd.DataFrame(
        {
            "x": x,
            "y": 2 * x + rng.normal(0, 0.1, n),
            "c": np.where(x > 0.5, "hi", "lo"),
            "z": rng.random(n),
        }
    )
