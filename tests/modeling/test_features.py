"""The shared feature encoder: one matrix for every stage."""

from __future__ import annotations

import datetime as dt
import pickle

import numpy as np
import pandas as pd

from date_spark.modeling.features import FeatureEncoder
from date_spark.schema import ColumnSpec, Kind, TableSchema

SCHEMA = TableSchema(
    (
        ColumnSpec("n", Kind.NUMERIC, "bigint", integral=True),
        ColumnSpec("c", Kind.CATEGORICAL, "string"),
        ColumnSpec("b", Kind.BOOLEAN, "boolean"),
        ColumnSpec("d", Kind.DATE, "date"),
        ColumnSpec("t", Kind.TIMESTAMP, "timestamp"),
        ColumnSpec("y", Kind.CATEGORICAL, "string"),
    ),
    "y",
    "classification",
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "c": ["z", None, "a"],
            "b": [True, None, False],
            "d": [dt.date(1970, 1, 2), None, dt.date(2000, 1, 1)],
            "t": pd.to_datetime(["1970-01-01 00:00:10", None, "2000-01-01 12:00:00"]),
            "y": ["p", "q", "p"],
        }
    )


def test_encoding_of_each_kind_with_nulls() -> None:
    pdf = _frame()
    enc = FeatureEncoder.from_pandas(SCHEMA, pdf)
    X = enc.transform(pdf)
    assert X.dtype == np.float64 and X.shape == (3, 5)
    assert enc.names == ["n", "c", "b", "d", "t"]
    assert enc.features[1].categories == ("a", "z")  # sorted domain
    np.testing.assert_array_equal(X[0], [1.0, 1.0, 1.0, 1.0, 10.0])
    assert np.isnan(X[1]).all()  # every kind: null -> NaN
    assert X[2, 3] == (dt.date(2000, 1, 1) - dt.date(1970, 1, 1)).days
    assert enc.target(pdf).tolist() == ["p", "q", "p"]
    # Values outside the domain encode like nulls; decoding inverts the encoding.
    other = pdf.assign(c=["new", "a", "z"])
    np.testing.assert_array_equal(enc.transform(other)[:, 1], [np.nan, 0.0, 1.0])
    assert enc.value(3, X[2, 3]) == dt.date(2000, 1, 1)
    assert enc.value(4, X[0, 4]) == dt.datetime(1970, 1, 1, 0, 0, 10)
    assert enc.value(1, 1.0) == "z" and enc.value(0, 3.0) == 3


def test_domain_keeps_the_most_frequent_values() -> None:
    pdf = pd.DataFrame(
        {
            "c": ["a"] * 5 + ["b"] * 3 + ["c"],
            "n": 1,
            "b": True,
            "d": dt.date(2000, 1, 1),
            "t": pd.Timestamp(0),
            "y": "p",
        }
    )
    enc = FeatureEncoder.from_pandas(SCHEMA, pdf, max_categories=2)
    assert enc.features[1].categories == ("a", "b")


def test_json_and_pickle_round_trip() -> None:
    enc = FeatureEncoder.from_pandas(SCHEMA, _frame())
    again = FeatureEncoder.from_json(enc.to_json())
    assert again == enc
    assert pickle.loads(pickle.dumps(enc)) == enc
    np.testing.assert_array_equal(again.transform(_frame()), enc.transform(_frame()))
