"""Validation of returned rows: each reject reason, coercion, the margin, clipping, per-column
counts, tolerant extraction of the reply."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from date_spark.llm.extract import extract_rows
from date_spark.llm.rows import RowSchema
from date_spark.llm.validation import validate_reply, validate_rows
from date_spark.schema import ColumnSpec, Kind, TableSchema

from .support import TABLE, make_schema, margin_schema


def good_row(**over: Any) -> dict[str, Any]:
    row = {
        "age": 35,
        "income": 1234.5,
        "city": "Paris",
        "joined": "2020-05-01",
        "vip": True,
        "label": "yes",
    }
    row.update(over)
    return row


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({k: v for k, v in good_row().items() if k != "city"}, "missing_field"),
        (good_row(city=None), "missing_field"),
        (good_row(extra=1), "extra_field"),
        (good_row(age="thirty"), "wrong_type"),
        (good_row(age=35.5), "wrong_type"),
        (good_row(age=True), "wrong_type"),
        (good_row(income=float("nan")), "wrong_type"),
        (good_row(vip="maybe"), "wrong_type"),
        (good_row(joined="yesterday"), "wrong_type"),
        (good_row(city=["Paris"]), "wrong_type"),
        (good_row(city="Berlin"), "out_of_domain"),
        (good_row(income=1e9), "out_of_domain"),
        (good_row(joined="2030-01-01"), "out_of_domain"),
        (good_row(label="maybe"), "invalid_label"),
        (good_row(label=3.5), "invalid_label"),
        (good_row(age=55), "violates_rule"),
        (good_row(city="Oslo"), "violates_rule"),
        (good_row(income=70000.0), "violates_rule"),
        ("not an object", "wrong_type"),
    ],
)
def test_each_reason(row: Any, reason: str) -> None:
    res = validate_rows(make_schema(), [row, good_row()])
    assert res.n_valid == 1
    assert dict(res.rejected) == {reason: 1}


def test_coercion_to_canonical_values() -> None:
    raw = good_row(
        age="40",
        income="100",
        vip="false",
        city=" paris ",
        label="YES",
        joined="2020-02-03T00:00:00",
    )
    res = validate_rows(make_schema(), [raw])
    assert res.rows == [
        {
            "age": 40,
            "income": 100.0,
            "city": "Paris",
            "joined": "2020-02-03",
            "vip": False,
            "label": "yes",
        }
    ]


def test_precedence_is_deterministic() -> None:
    # wrong type on one column and out of domain on another: wrong_type wins.
    res = validate_rows(make_schema(), [good_row(age="x", city="Berlin")])
    assert dict(res.rejected) == {"wrong_type": 1}


def test_regression_label_bounds() -> None:
    table = TableSchema(
        (ColumnSpec("x", Kind.NUMERIC, "double"), ColumnSpec("y", Kind.NUMERIC, "double")),
        target="y",
        task="regression",
    )
    s = RowSchema.from_table(table, "x > 0.0", ranges={"x": (0.0, 10.0), "y": (-5.0, 5.0)})
    res = validate_rows(s, [{"x": 1.0, "y": 9.0}, {"x": 1.0, "y": "a"}, {"x": 1.0, "y": 2.0}])
    assert res.rows == [{"x": 1.0, "y": 2.0}]
    assert dict(res.rejected) == {"invalid_label": 2}
    assert s.json_schema()["properties"]["rows"]["items"]["properties"]["y"] == {
        "type": "number",
        "minimum": -5.0,
        "maximum": 5.0,
    }


def test_integer_classes() -> None:
    table = TableSchema(
        (ColumnSpec("x", Kind.NUMERIC, "double"), ColumnSpec("y", Kind.NUMERIC, "int", True, True)),
        target="y",
        task="classification",
        classes=(0, 1),
    )
    s = RowSchema.from_table(table)
    prop = s.json_schema()["properties"]["rows"]["items"]["properties"]["y"]
    assert prop == {"type": "integer", "enum": [0, 1]}
    res = validate_rows(
        s, [{"x": 1, "y": 1}, {"x": 1, "y": "0"}, {"x": 1, "y": 2}, {"x": 1, "y": True}]
    )
    assert [r["y"] for r in res.rows] == [1, 0]
    assert dict(res.rejected) == {"invalid_label": 2}


ROWS = [good_row(), good_row(age=41)]


@pytest.mark.parametrize(
    ("text", "n", "errors"),
    [
        (json.dumps({"rows": ROWS}), 2, 0),
        (json.dumps(ROWS), 2, 0),
        (json.dumps({"data": ROWS}), 2, 0),
        (json.dumps(good_row()), 1, 0),
        ("```json\n" + json.dumps({"rows": ROWS}) + "\n```", 2, 0),
        ("Sure! Here you go:\n" + json.dumps({"rows": ROWS}) + "\nAnything else?", 2, 0),
        ("Here: " + json.dumps(ROWS) + " done", 2, 0),
        (json.dumps({"rows": ROWS})[:-30], 1, 1),
        ('{"rows": [', 0, 1),
        ("I cannot help with that.", 0, 1),
        ("", 0, 1),
        (None, 0, 1),
    ],
)
def test_extract_rows(text: str | None, n: int, errors: int) -> None:
    rows, errs = extract_rows(text, TABLE.names)
    assert (len(rows), errs) == (n, errors)


def test_validate_counts_a_truncated_tail_once() -> None:
    text = json.dumps({"rows": [*ROWS, good_row(age=42)]})
    res = validate_reply(make_schema(), text[: text.rfind("{") + 10])
    assert res.n_valid == 2 and dict(res.rejected) == {"parse_error": 1}


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_validate_never_raises_on_text(text: str) -> None:
    res = validate_reply(make_schema(), text)
    assert res.n_valid + sum(res.rejected.values()) >= 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from([*TABLE.names, "zz"]), json_values), max_size=5))
@example([good_row(), good_row(age="x")])  # random dicts are rarely valid: one that is, for sure
def test_validate_never_raises_on_rows(rows: list[dict[str, Any]]) -> None:
    res = validate_reply(make_schema(), json.dumps({"rows": rows}, default=str))
    assert res.n_valid + sum(res.rejected.values()) == len(rows)
    for r in res.rows:
        assert validate_rows(make_schema(), [r]).n_valid == 1


# -- domains with a margin, per-column rejects -----------------------------------------------


def mrow(**over: Any) -> dict[str, Any]:
    row = {"n": 20, "x": 50.0, "t": -20.0, "d": "2020-06-01", "city": "Oslo", "y": 5.0}
    row.update(over)
    return row


def test_margin_widens_ordered_ranges_but_not_signs_or_categories() -> None:
    s = margin_schema(0.1)
    assert s.column("n").accepted == (5, 65)
    assert s.column("x").accepted == (0.0, 110.0)  # never seen negative: the margin stops at 0
    assert s.column("t").accepted == (-54.8, 0.0)  # never seen positive: stops at 0
    lo, hi = s.column("d").accepted
    assert (lo, hi) == (dt.date(2019, 11, 26), dt.date(2021, 2, 5))  # 36 whole days each side
    assert s.column("city").accepted == (None, None) and s.column("city").margin == 0
    inside = [
        mrow(n=64),
        mrow(n=5.0),  # a whole float in an integral column
        mrow(n="61"),
        mrow(x=109.9),
        mrow(t=-54.5),
        mrow(d="2021-02-04"),
        mrow(y=10.9),  # the regression label has a range like any number
    ]
    res = validate_rows(s, inside)
    assert res.n_valid == len(inside), res.by_column
    assert [r["n"] for r in res.rows[:3]] == [64, 5, 61]
    # the JSON schema still asks for the observed range
    props = s.json_schema()["properties"]["rows"]["items"]["properties"]
    assert props["n"] == {"type": "integer", "minimum": 10, "maximum": 60}
    assert props["x"] == {"type": "number", "minimum": 0.0, "maximum": 100.0}


def test_values_past_the_margin_are_counted_per_column() -> None:
    s = margin_schema(0.1)
    rows = [
        mrow(n=66),
        mrow(x=-0.5),
        mrow(x=111.0, n=4),  # two columns fail: one row, counted under both
        mrow(t=0.5),
        mrow(city="Paris"),  # categories keep their exact domain
        mrow(y=11.5),
        mrow(d="2021-03-01"),
        mrow(n=5.5),  # not whole: a type error, not a range one
        mrow(),
    ]
    res = validate_rows(s, rows)
    assert res.n_valid == 1
    assert dict(res.rejected) == {"out_of_domain": 6, "invalid_label": 1, "wrong_type": 1}
    assert res.by_column_json() == {
        "city": {"out_of_domain": 1},
        "d": {"out_of_domain": 1},
        "n": {"out_of_domain": 2, "wrong_type": 1},
        "t": {"out_of_domain": 1},
        "x": {"out_of_domain": 2},
        "y": {"invalid_label": 1},
    }
    assert not res.clipped


def test_strict_range_without_a_margin() -> None:
    res = validate_rows(margin_schema(0.0), [mrow(n=61), mrow(x=100.5), mrow(n=60, x=100.0)])
    assert res.n_valid == 1
    assert res.by_column_json() == {"n": {"out_of_domain": 1}, "x": {"out_of_domain": 1}}


def test_clip_moves_values_to_the_nearest_accepted_bound() -> None:
    s = margin_schema(0.1, "clip", rule="x < 105.0")
    res = validate_rows(
        s, [mrow(n=500, t=-99.0), mrow(x=-3.0), mrow(d="2030-01-01"), mrow(x=1000.0), mrow()]
    )
    got = [(r["n"], r["x"], r["t"], r["d"]) for r in res.rows]
    assert got == [
        (65, 50.0, -54.8, "2020-06-01"),
        (20, 0.0, -20.0, "2020-06-01"),
        (20, 50.0, -20.0, "2021-02-05"),
        (20, 50.0, -20.0, "2020-06-01"),
    ]
    # x = 1000 clips to 110, which is outside the rule: the rule check still applies
    assert dict(res.rejected) == {"violates_rule": 1}
    assert res.by_column_json() == {"x": {"violates_rule": 1}}
    # valid but for the rule: set apart (clipped value and all) for re-routing, not lost
    assert [r["x"] for r in res.off_rule] == [110.0]
    assert dict(res.clipped) == {"n": 1, "t": 1, "x": 1, "d": 1}  # kept rows only


def test_row_level_failures_by_column() -> None:
    s = make_schema()
    res = validate_rows(
        s,
        [
            {k: v for k, v in good_row(Age=40).items() if k != "age"},  # a renamed key
            good_row(age=55, city="Oslo"),  # two predicates of the rule fail
            good_row(income=70000.0),
            "not a row",
            good_row(),
        ],
    )
    assert res.n_valid == 1
    assert dict(res.rejected) == {"missing_field": 1, "violates_rule": 2, "wrong_type": 1}
    assert res.by_column_json() == {
        "(extra)": {"extra_field": 1},
        "(row)": {"wrong_type": 1},
        "age": {"missing_field": 1, "violates_rule": 1},
        "city": {"violates_rule": 1},
        "income": {"violates_rule": 1},
    }
    text = json.dumps({"rows": [good_row(), good_row(age=41)]})
    cut = validate_reply(s, text[:-40])  # cut inside the last row: one parse error, no column
    assert cut.n_valid == 1 and cut.by_column_json() == {"(reply)": {"parse_error": 1}}


def test_rule_blame_uses_the_nearest_conjunction() -> None:
    s = make_schema("(age < 30 and city = 'Rome') or (age >= 60 and income > 90000.0)")
    res = validate_rows(s, [good_row(age=35, city="Rome"), good_row(age=70, income=10.0)])
    assert res.n_valid == 0
    assert res.by_column_json() == {
        "age": {"violates_rule": 1},
        "income": {"violates_rule": 1},
    }
