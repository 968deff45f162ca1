"""Column kinds: the vocabulary every stage shares (rules, prompts, validation, output cast)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pyspark.sql import types as T

from date_spark.errors import InputError

__all__ = [
    "ColumnSpec",
    "Kind",
    "TableSchema",
    "column_specs",
    "is_integral",
    "kind_of",
    "parse_timestamp",
    "to_timestamp",
]


class Kind(str, Enum):
    NUMERIC = "numeric"
    BOOLEAN = "boolean"
    CATEGORICAL = "categorical"
    DATE = "date"
    TIMESTAMP = "timestamp"

    @property
    def ordered(self) -> bool:
        return self in (Kind.NUMERIC, Kind.DATE, Kind.TIMESTAMP)


_UNSUPPORTED = (T.ArrayType, T.MapType, T.StructType, T.BinaryType)


def kind_of(dtype: T.DataType) -> Kind | None:
    """Map a Spark type to a kind; None means unsupported."""
    if isinstance(dtype, T.BooleanType):
        return Kind.BOOLEAN
    if isinstance(dtype, T.NumericType):
        return Kind.NUMERIC
    if isinstance(dtype, (T.StringType, T.VarcharType, T.CharType)):
        return Kind.CATEGORICAL
    if isinstance(dtype, T.TimestampType) or type(dtype).__name__ == "TimestampNTZType":
        return Kind.TIMESTAMP
    if isinstance(dtype, T.DateType):
        return Kind.DATE
    return None


def is_integral(dtype: T.DataType) -> bool:
    return isinstance(dtype, T.IntegralType)


def parse_timestamp(text: str) -> dt.datetime:
    """ISO 8601 text as a timestamp value: naive, in UTC, as every stage holds timestamps (the
    session time zone is UTC, `runtime/spark.py`; aware values are converted to UTC and made
    naive wherever they are compared). A `Z` suffix or a `+hh:mm` offset is converted to UTC;
    naive text is taken as it is; a date alone is its midnight. Raises ValueError otherwise."""
    s = text.strip()
    if s[-1:] in ("Z", "z"):
        s = s[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read `Z`
    ts = dt.datetime.fromisoformat(s)
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return ts


def to_timestamp(value: object) -> dt.datetime:
    """A timestamp column's value from a datetime, a date (its midnight) or ISO text
    (`parse_timestamp`); ValueError for anything else. Rules and generated rows read values the
    same way, each raising its own error."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        return parse_timestamp(value)
    raise ValueError(f"not a timestamp: {value!r}")


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: Kind
    spark_type: str  # Spark's simpleString, e.g. "bigint", "double", "string"
    nullable: bool = True
    integral: bool = False


@dataclass(frozen=True)
class TableSchema:
    """Feature columns plus the target; the order is the input table's order."""

    columns: tuple[ColumnSpec, ...]
    target: str
    task: str  # "classification" | "regression"
    classes: tuple[Any, ...] = field(default=())

    @property
    def kinds(self) -> dict[str, Kind]:
        return {c.name: c.kind for c in self.columns}

    @property
    def features(self) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.columns if c.name != self.target)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> str:
        return json.dumps(
            {
                "target": self.target,
                "task": self.task,
                "classes": list(self.classes),
                "columns": [
                    {
                        "name": c.name,
                        "kind": c.kind.value,
                        "spark_type": c.spark_type,
                        "nullable": c.nullable,
                        "integral": c.integral,
                    }
                    for c in self.columns
                ],
            },
            default=str,
        )

    @staticmethod
    def from_json(text: str) -> TableSchema:
        d = json.loads(text)
        cols = tuple(
            ColumnSpec(c["name"], Kind(c["kind"]), c["spark_type"], c["nullable"], c["integral"])
            for c in d["columns"]
        )
        return TableSchema(cols, d["target"], d["task"], tuple(d.get("classes", ())))


def column_specs(struct: T.StructType) -> tuple[ColumnSpec, ...]:
    specs = []
    for f in struct.fields:
        kind = kind_of(f.dataType)
        if kind is None:
            raise InputError(
                f"column {f.name!r} has unsupported type {f.dataType.simpleString()}; "
                f"drop it with input.exclude: [{f.name}] or flatten it before running"
            )
        specs.append(
            ColumnSpec(f.name, kind, f.dataType.simpleString(), f.nullable, is_integral(f.dataType))
        )
    return tuple(specs)
