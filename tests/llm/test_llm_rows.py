"""RowSchema: the JSON schema per dialect, its JSON round trip and its construction checks."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from date_spark.errors import RuleError
from date_spark.llm.rows import RowColumn, RowSchema
from date_spark.rules import parse_rule
from date_spark.schema import Kind

from .support import make_schema, margin_schema


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


def test_margin_and_clip_survive_the_json_roundtrip() -> None:
    s = margin_schema(0.25, "clip")
    back = RowSchema.from_json(s.to_json())
    assert back == s and back.column("n").accepted == (0, 72)
    assert back.column("x").clip and not back.column("city").clip


def test_bad_margin_arguments() -> None:
    with pytest.raises(ValueError, match="margin"):
        margin_schema(-0.1)
    with pytest.raises(ValueError, match="out_of_range"):
        margin_schema(0.1, "wrap")
