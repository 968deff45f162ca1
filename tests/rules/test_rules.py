from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest
from chispa import assert_df_equality

from date_spark.errors import RuleError
from date_spark.rules import (
    CategorySet,
    Interval,
    Predicate,
    Rule,
    assign_rules,
    count_rules,
    parse_rule,
)
from date_spark.schema import Kind, parse_timestamp

KINDS = {
    "age": Kind.NUMERIC,
    "income": Kind.NUMERIC,
    "region": Kind.CATEGORICAL,
    "owner": Kind.BOOLEAN,
    "opened": Kind.DATE,
}


def test_text_form_is_the_llm_grammar() -> None:
    r = parse_rule("age >= 40 and region in ('north', 'east')", KINDS)
    assert r.to_text() == "age >= 40 and region in ('east', 'north')"
    r2 = parse_rule("opened >= date '2020-01-31' and owner = true", KINDS)
    assert r2.to_text() == "opened >= date '2020-01-31' and owner = true"


def test_llm_friendly_input_is_accepted() -> None:
    # double quotes, ==, <>, upper-case keywords and plain date strings all parse
    r = parse_rule("region == \"north\" AND age <> 3 AND opened < '2021-01-01'", KINDS)
    assert r.to_text() == "age != 3 and opened < date '2021-01-01' and region = 'north'"


def test_nested_parentheses_expand_to_dnf() -> None:
    r = parse_rule("(age < 30 or age > 60) and (region = 'north' or owner = true)", KINDS)
    assert len(r.conjunctions) == 4


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("agee > 3", "unknown column 'agee'"),
        ("age ~ 3", "cannot read rule"),
        ("age >", "expected a value"),
        ("age > 'x'", "is numeric"),
        ("region < 'a'", "needs an ordered column"),
        ("region = 3", "is categorical"),
        ("owner = 'yes'", "is boolean"),
        ("opened > date '2020-13-01'", "invalid date literal"),
        ("age = null", "is null"),
        ("", "empty rule"),
        ("age > 3 and", "expected a condition"),
        ("age > 3 region = 'a'", "expected 'and', 'or'"),
    ],
)
def test_parse_errors_are_one_line_and_name_the_problem(text: str, needle: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_rule(text, KINDS)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_json_errors() -> None:
    with pytest.raises(RuleError, match="malformed"):
        Rule.from_json("{not json")
    with pytest.raises(RuleError, match="any"):
        Rule.from_json({"all": []})
    with pytest.raises(RuleError, match="unknown operator"):
        Rule.from_json({"any": [{"all": [{"column": "age", "op": "~", "value": 1}]}]})
    with pytest.raises(RuleError, match="unknown column"):
        Rule.from_json({"any": [{"all": [{"column": "x", "op": "=", "value": 1}]}]}, KINDS)


@pytest.mark.parametrize(
    ("text", "simplified"),
    [
        ("age > 1 and age >= 2 and age < 10 and age <= 10", "age >= 2 and age < 10"),
        ("age >= 5 and age <= 5", "age = 5"),
        ("age > 1 and age != 0 and age != 7", "age > 1 and age != 7"),
        ("region in ('a', 'b', 'c') and region != 'b'", "region in ('a', 'c')"),
        ("region in ('a', 'b') and region in ('b', 'c')", "region = 'b'"),
        ("age is not null and age > 3", "age > 3"),
        ("(age > 3) or (age > 3 and region = 'a')", "age > 3"),
    ],
)
def test_simplify_merges_redundant_bounds(text: str, simplified: str) -> None:
    assert parse_rule(text, KINDS).simplify().to_text() == simplified


@pytest.mark.parametrize(
    "text",
    [
        "age > 3 and age < 2",
        "age >= 3 and age < 3",
        "age = 3 and age != 3",
        "region = 'a' and region = 'b'",
        "region in ('a') and region not in ('a')",
        "age is null and age > 1",
    ],
)
def test_contradictions_are_detected(text: str) -> None:
    r = parse_rule(text, KINDS)
    assert r.conjunctions[0].is_contradiction()
    assert r.simplify() == Rule.false()


def test_per_column_views() -> None:
    r = parse_rule(
        "(age >= 30 and age < 40 and region = 'a') or (age >= 50 and region in ('b', 'c'))", KINDS
    )
    b = r.bounds(KINDS)
    assert b["age"] == Interval(30, None, True, False) or b["age"].low == 30
    assert isinstance(b["region"], CategorySet) and b["region"].values() == {"a", "b", "c"}
    a = Interval(0, 10, True, False)
    assert a.overlap_ratio(Interval(5, 15, True, False)) == pytest.approx(5 / 15)
    assert a.overlap_ratio(Interval(10, 20, True, False)) == 0.0
    assert a.overlap_ratio(a) == 1.0
    assert CategorySet(frozenset("ab")).overlap_ratio(
        CategorySet(frozenset("bc"))
    ) == pytest.approx(1 / 3)
    # unbounded sides are measured inside a domain
    dom = Interval(0, 100, True, True)
    assert (
        Interval(low=50, low_closed=True).overlap_ratio(Interval(high=50, high_closed=False), dom)
        == 0.0
    )


def test_null_semantics_in_pandas() -> None:
    pdf = pd.DataFrame({"age": [None, 10.0], "region": [None, "a"]})
    assert parse_rule("age != 3").mask(pdf).tolist() == [False, True]
    assert parse_rule("region not in ('b')").mask(pdf).tolist() == [False, True]
    assert parse_rule("age is null").mask(pdf).tolist() == [True, False]


def test_float32_is_widened_like_spark(spark: Any) -> None:
    import numpy as np

    pdf = pd.DataFrame({"g": np.array([0.1], dtype=np.float32)})
    rule = Rule.of(Predicate("g", "<=", 0.1))
    # Spark widens float32 0.1 to 0.10000000149 > 0.1; numpy would narrow 0.1 instead.
    assert rule.mask(pdf).tolist() == [False]
    got = spark.createDataFrame(pdf).select(rule.to_column().alias("m")).first()["m"]
    assert got is False


def test_assign_rules_first_and_all(spark: Any) -> None:
    df = spark.createDataFrame(
        [(1, 25, "a"), (2, 45, "b"), (3, 65, None), (4, None, "a")],
        "id int, age int, region string",
    )
    rules = {
        "young": parse_rule("age < 30"),
        "a": parse_rule("region = 'a'"),
        "old": parse_rule("age >= 60"),
    }
    first = df.transform(assign_rules(rules, mode="first", column="rid")).select("id", "rid")
    expected = spark.createDataFrame(
        [(1, "young"), (2, None), (3, "old"), (4, "a")], "id int, rid string"
    )
    assert_df_equality(first, expected, ignore_row_order=True, ignore_nullable=True)
    every = df.transform(assign_rules(rules, mode="all", column="rids")).orderBy("id").collect()
    assert [r["rids"] for r in every] == [["young", "a"], [], ["old"], ["a"]]
    assert count_rules(df, rules) == {"young": 1, "a": 2, "old": 1}
    assert count_rules(df, [Rule.true(), Rule.false()]) == {0: 4, 1: 0}


def test_column_names_needing_quotes(spark: Any) -> None:
    df = spark.createDataFrame([(1.0, 2)], "`a.b` double, `x y` int")
    r = parse_rule("`a.b` > 0.5 and `x y` = 2")
    assert r.to_text() == "`a.b` > 0.5 and `x y` = 2"
    assert df.where(r.to_column()).count() == 1


def test_dates_and_timestamps(spark: Any) -> None:
    df = spark.createDataFrame(
        [
            (dt.date(2020, 1, 1), dt.datetime(2020, 1, 1, 12)),
            (dt.date(2021, 6, 1), dt.datetime(2021, 1, 1)),
        ],
        "d date, t timestamp",
    )
    r = parse_rule("d < date '2021-01-01' and t >= timestamp '2020-01-01 12:00:00'")
    assert df.where(r.to_column()).count() == 1
    assert r.mask(df.toPandas()).tolist() == [True, False]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-31T10:00:00Z", dt.datetime(2024, 1, 31, 10)),  # Z: UTC
        ("2024-01-31T10:00:00z", dt.datetime(2024, 1, 31, 10)),
        ("2024-01-31T10:00:00+02:00", dt.datetime(2024, 1, 31, 8)),  # an offset: to UTC
        ("2024-01-31T23:30:00-01:00", dt.datetime(2024, 2, 1, 0, 30)),  # across midnight
        ("2024-01-31 10:00:00.250", dt.datetime(2024, 1, 31, 10, 0, 0, 250_000)),  # naive: as is
        (" 2024-01-31T10:00 ", dt.datetime(2024, 1, 31, 10)),
        ("2024-01-31", dt.datetime(2024, 1, 31)),  # a date alone: its midnight
    ],
)
def test_one_iso_timestamp_parser_gives_naive_utc(text: str, expected: dt.datetime) -> None:
    """`schema.parse_timestamp`, the one reading of ISO timestamps (rule text, rule literals,
    rules read back from JSON): naive values in UTC, the session's zone."""
    got = parse_timestamp(text)
    assert got == expected and got.tzinfo is None


@pytest.mark.parametrize("text", ["", "Z", "2024-13-01", "yesterday", "2024-01-31T10:00:00+25:00"])
def test_the_iso_timestamp_parser_refuses_what_is_not_one(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_timestamp_literals_with_a_zone_are_naive_utc_in_every_form() -> None:
    """Rule text, a literal coerced to a timestamp column, and a rule read back from JSON agree:
    an aware literal is the naive UTC value (it compares with the naive values of the table)."""
    kinds = {"t": Kind.TIMESTAMP}
    naive = parse_rule("t >= timestamp '2024-01-01 12:00:00'", kinds)
    for text in (
        "t >= timestamp '2024-01-01T14:00:00+02:00'",
        "t >= timestamp '2024-01-01T12:00:00Z'",
        "t >= '2024-01-01T12:00:00Z'",  # a string literal coerced by the column's kind
    ):
        assert parse_rule(text, kinds) == naive, text
    back = Predicate.from_json(
        {"column": "t", "op": ">=", "value": {"timestamp": "2024-01-01T12:00:00+00:00"}}
    )
    assert back.value == dt.datetime(2024, 1, 1, 12)


@pytest.fixture()
def driver_in_new_york() -> Any:
    """The driver's local zone differs from the session's (UTC): a laptop, or a cluster whose
    driver is not in UTC."""
    import os
    import time

    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.usefixtures("driver_in_new_york")
def test_timestamp_literals_follow_the_session_zone_not_the_driver_zone(spark: Any) -> None:
    pdf = pd.DataFrame({"t": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 14:00"])})
    df = spark.createDataFrame(pdf)
    kinds = {"t": Kind.TIMESTAMP}
    for text in (
        "t >= timestamp '2024-01-01 12:00:00'",
        "t in (timestamp '2024-01-01 14:00:00')",
        "t not in (timestamp '2024-01-01 14:00:00')",
    ):
        r = parse_rule(text, kinds)
        in_spark = df.where(r.to_column()).toPandas()["t"].tolist()
        assert len(in_spark) == 1, text  # each literal splits the two rows
        assert in_spark == pdf[r.mask(df.toPandas())]["t"].tolist(), text
