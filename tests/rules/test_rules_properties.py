"""Property: a rule's Spark filter and its pandas mask select exactly the same rows, and its text
and JSON forms parse back to the same rule. Values are drawn from small pools so that table values
sit exactly on rule thresholds, with nulls everywhere."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import types as T

from date_spark.rules import Conjunction, Predicate, Rule, parse_rule
from date_spark.schema import Kind

FLOATS = [-1.5, 0.0, 0.1, 0.30000000000000004, 1e-300, 2.5, 1e10, -0.0]
INTS = [-2, 0, 1, 3, 2**40]
STRINGS = ["", "a", "b", "it's", "Ä", "a b", "A"]
DATES = [dt.date(2020, 1, 1), dt.date(2020, 1, 2), dt.date(1999, 12, 31)]

SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("f", T.DoubleType()),
        T.StructField("g", T.FloatType()),
        T.StructField("i", T.LongType()),
        T.StructField("s", T.StringType()),
        T.StructField("b", T.BooleanType()),
        T.StructField("d", T.DateType()),
        T.StructField("weird name", T.DoubleType()),
    ]
)
KINDS = {
    "f": Kind.NUMERIC,
    "g": Kind.NUMERIC,
    "i": Kind.NUMERIC,
    "s": Kind.CATEGORICAL,
    "b": Kind.BOOLEAN,
    "d": Kind.DATE,
    "weird name": Kind.NUMERIC,
}
POOLS: dict[str, list[Any]] = {
    "f": FLOATS,
    "g": FLOATS,
    "i": [*INTS, 0.5, 1.0],
    "s": STRINGS,
    "b": [True, False],
    "d": DATES,
    "weird name": FLOATS,
}
ORDERED = ("<", "<=", ">", ">=", "=", "!=", "in", "not in", "is null", "is not null")
UNORDERED = ("=", "!=", "in", "not in", "is null", "is not null")


def maybe_null(pool: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.sampled_from(pool))


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=0, max_value=25))
    cols: dict[str, Any] = {"id": np.arange(n, dtype=np.int64)}
    for c in ("f", "weird name"):
        vals = [draw(maybe_null(FLOATS)) for _ in range(n)]
        cols[c] = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
    g = [draw(maybe_null(FLOATS)) for _ in range(n)]
    cols["g"] = np.array([np.nan if v is None else v for v in g], dtype=np.float32)
    cols["i"] = pd.array([draw(maybe_null(INTS)) for _ in range(n)], dtype="Int64")
    cols["s"] = pd.Series([draw(maybe_null(STRINGS)) for _ in range(n)], dtype=object)
    cols["b"] = pd.Series([draw(maybe_null([True, False])) for _ in range(n)], dtype=object)
    cols["d"] = pd.Series([draw(maybe_null(DATES)) for _ in range(n)], dtype=object)
    return pd.DataFrame(cols)[[f.name for f in SCHEMA.fields]]


@st.composite
def predicates(draw: st.DrawFn) -> Predicate:
    col = draw(st.sampled_from(sorted(KINDS)))
    ops = ORDERED if KINDS[col].ordered else UNORDERED
    op = draw(st.sampled_from(ops))
    pool = POOLS[col]
    if op in ("in", "not in"):
        value: Any = tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3)))
    elif op in ("is null", "is not null"):
        value = None
    else:
        value = draw(st.sampled_from(pool))
    return Predicate(col, op, value)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    conjs = draw(st.lists(st.lists(predicates(), min_size=0, max_size=3), min_size=0, max_size=3))
    return Rule(tuple(Conjunction(tuple(c)) for c in conjs))


@pytest.mark.usefixtures("spark")
@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(pdf=tables(), rs=st.lists(rules(), min_size=1, max_size=4))
def test_spark_filter_equals_pandas_mask(spark: Any, pdf: pd.DataFrame, rs: list[Rule]) -> None:
    sdf = spark.createDataFrame(pdf, SCHEMA)
    picked = sdf.select("id", *[r.to_column().alias(f"r{k}") for k, r in enumerate(rs)]).collect()
    by_id = {row["id"]: row for row in picked}
    for k, r in enumerate(rs):
        expected = r.mask(pdf).tolist()
        got = [bool(by_id[i][f"r{k}"]) for i in pdf["id"]]
        assert got == expected, f"rule {r.to_text()!r}"
        # the simplified rule selects the same rows
        assert r.simplify().mask(pdf).tolist() == expected, f"simplify({r.to_text()!r})"


@settings(max_examples=1000, deadline=None)
@given(r=rules())
def test_text_and_json_round_trip(r: Rule) -> None:
    assert parse_rule(r.to_text(), KINDS) == r
    assert parse_rule(r.to_text()) == r
    assert Rule.from_json(r.to_json(), KINDS) == r
    assert Rule.from_json(r.dumps()) == r
