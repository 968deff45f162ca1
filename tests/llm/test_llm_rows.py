"""RowSchema: the JSON schema per dialect, tolerant extraction and row validation."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from date_spark.errors import RuleError
from date_spark.llm.rows import RowColumn, RowSchema, extract_rows
from date_spark.rules import parse_rule
from date_spark.schema import ColumnSpec, Kind, TableSchema

from .support import TABLE, make_schema


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


def test_json_schema_is_narrowed_by_the_rule() -> None:
    s = make_schema("age > 30 and age < 50 and income <= 60000.0 and city in ('Paris', 'Rome')")
    js = s.json_schema()
    rows = js["properties"]["rows"]
    assert rows["minItems"] == rows["maxItems"] == 5
    props = rows["items"]["properties"]
    assert props["age"] == {"type": "integer", "minimum": 31, "maximum": 49}
    assert props["income"] == {"type": "number", "minimum": 0.0, "maximum": 60000.0}
    assert props["city"] == {"type": "string", "enum": ["Paris", "Rome"]}
    assert props["label"] == {"type": "string", "enum": ["no", "yes"]}
    assert props["vip"] == {"type": "boolean"}
    assert props["joined"]["format"] == "date"
    assert "2020-01-01" in props["joined"]["description"]
    assert rows["items"]["required"] == ["age", "income", "city", "joined", "vip", "label"]
    assert rows["items"]["additionalProperties"] is False
    assert "age > 30" in js["description"]


def test_open_float_bounds_use_exclusive_keywords() -> None:
    props = make_schema("income > 10.5 and income < 20.0").json_schema()["properties"]["rows"]
    inc = props["items"]["properties"]["income"]
    assert inc == {"type": "number", "exclusiveMinimum": 10.5, "exclusiveMaximum": 20.0}


def test_request_kwargs_per_dialect() -> None:
    s = make_schema()
    js = s.json_schema()
    rf = s.request_kwargs("json_schema")["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["schema"] == js
    assert s.request_kwargs("json_object") == {
        "response_format": {"type": "json_object", "schema": js}
    }
    assert s.request_kwargs("vllm") == {"extra_body": {"structured_outputs": {"json": js}}}
    assert s.request_kwargs("none") == {}
    assert json.dumps(js) in s.instruction()
    with pytest.raises(ValueError, match="dialect"):
        s.request_kwargs("xml")


def test_roundtrip_json() -> None:
    s = make_schema()
    back = RowSchema.from_json(s.to_json())
    assert back == s
    assert back.column("joined").low == dt.date(2020, 1, 1)
    assert back.json_schema() == s.json_schema()


def test_rule_must_only_use_known_columns() -> None:
    with pytest.raises(RuleError, match="lacks"):
        RowSchema(columns=(RowColumn("a", Kind.NUMERIC),), rule=parse_rule("b > 1"))


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
    res = make_schema().validate_rows([row, good_row()])
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
    res = make_schema().validate_rows([raw])
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
    res = make_schema().validate_rows([good_row(age="x", city="Berlin")])
    assert dict(res.rejected) == {"wrong_type": 1}


def test_regression_label_bounds() -> None:
    table = TableSchema(
        (ColumnSpec("x", Kind.NUMERIC, "double"), ColumnSpec("y", Kind.NUMERIC, "double")),
        target="y",
        task="regression",
    )
    s = RowSchema.from_table(table, "x > 0.0", ranges={"x": (0.0, 10.0), "y": (-5.0, 5.0)})
    res = s.validate_rows([{"x": 1.0, "y": 9.0}, {"x": 1.0, "y": "a"}, {"x": 1.0, "y": 2.0}])
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
    res = s.validate_rows(
        [{"x": 1, "y": 1}, {"x": 1, "y": "0"}, {"x": 1, "y": 2}, {"x": 1, "y": True}]
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
    res = make_schema().validate(text[: text.rfind("{") + 10])
    assert res.n_valid == 2 and dict(res.rejected) == {"parse_error": 1}


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_validate_never_raises_on_text(text: str) -> None:
    res = make_schema().validate(text)
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
    res = make_schema().validate(json.dumps({"rows": rows}, default=str))
    assert res.n_valid + sum(res.rejected.values()) == len(rows)
    for r in res.rows:
        assert make_schema().validate_rows([r]).n_valid == 1
