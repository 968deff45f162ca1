"""The target schema of one LLM request: what it asks for, in each endpoint's dialect.

A `RowSchema` travels with each request as JSON (the `row_schema` column), so an executor can build
the request in the endpoint's structured-output dialect (`request_kwargs`, or the plain-prompt
`instruction`) and check every returned row without any driver state. The JSON schema narrows each
column by the DGR's per-column hull; the rule itself rides in the schema's `description`.

Each column carries the data's own domain (categories seen, ordered ranges). Ordered ranges may
carry a margin (`RowColumn.margin`, a fraction of the observed range added on both sides;
`generation.domain_margin`, see `RowColumn.accepted`): the JSON schema still asks for the observed
range, validation accepts the widened one. A numeric column observed without negative (positive)
values never admits them through the margin, and an integral column's widened bounds stay whole
numbers. Categories never get a margin. A column read from a decimal type carries its (precision,
scale) in `RowColumn.decimal`.

How returned rows are checked against this schema lives in `llm.validation`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from date_spark.errors import RuleError
from date_spark.rules import CategorySet, Interval, Rule, View, parse_rule
from date_spark.schema import Kind, TableSchema, to_timestamp

__all__ = [
    "DIALECTS",
    "OUT_OF_RANGE",
    "RULE_MARKER",
    "SCHEMA_NAME",
    "BadValue",
    "Dialect",
    "RowColumn",
    "RowSchema",
    "parse_date",
    "parse_timestamp",
    "to_json_value",
]


Dialect = Literal["json_schema", "json_object", "vllm", "none"]
DIALECTS: tuple[str, ...] = ("json_schema", "json_object", "vllm", "none")
OUT_OF_RANGE: tuple[str, ...] = ("reject", "clip")
RULE_MARKER = "Every row must satisfy:"
SCHEMA_NAME = "synthetic_rows"


class BadValue(Exception):
    """A value failed coercion or a domain check; `reason` is the reject reason it counts as."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ----------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------


def to_json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        return v.item()
    return v


def parse_date(v: Any) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str):
        s = v.strip()
        try:
            return dt.date.fromisoformat(s)
        except ValueError:
            pass
        try:
            ts = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise BadValue("wrong_type") from None
        if ts.time() == dt.time(0):
            return ts.date()
    raise BadValue("wrong_type")


def parse_timestamp(v: Any) -> dt.datetime:
    try:
        return to_timestamp(v)
    except ValueError:
        raise BadValue("wrong_type") from None


def _from_stored(v: Any, kind: Kind) -> Any:
    """Values read back from RowSchema JSON: dates arrive as ISO strings."""
    if v is None:
        return None
    if kind is Kind.DATE:
        return parse_date(v)
    if kind is Kind.TIMESTAMP:
        return parse_timestamp(v)
    return v


# ----------------------------------------------------------------------------------------------
# Columns
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowColumn:
    """One output column: its kind, and the data's domain (categories) or range (ordered kinds).
    None means "unconstrained"; bounds are inclusive."""

    name: str
    kind: Kind
    integral: bool = False
    values: tuple[Any, ...] | None = None
    low: Any = None
    high: Any = None
    nullable: bool = False
    margin: float = 0.0
    clip: bool = False
    decimal: tuple[int, int] | None = None  # (precision, scale) of a decimal column

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "integral": self.integral,
            "values": None if self.values is None else [to_json_value(v) for v in self.values],
            "low": to_json_value(self.low),
            "high": to_json_value(self.high),
            "nullable": self.nullable,
            "margin": self.margin,
            "clip": self.clip,
            "decimal": None if self.decimal is None else list(self.decimal),
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> RowColumn:
        kind = Kind(d["kind"])
        vals = d.get("values")
        dec = d.get("decimal")
        return RowColumn(
            name=str(d["name"]),
            kind=kind,
            integral=bool(d.get("integral", False)),
            values=None if vals is None else tuple(_from_stored(v, kind) for v in vals),
            low=_from_stored(d.get("low"), kind),
            high=_from_stored(d.get("high"), kind),
            nullable=bool(d.get("nullable", False)),
            margin=float(d.get("margin", 0.0)),
            clip=bool(d.get("clip", False)),
            decimal=None if not dec else (int(dec[0]), int(dec[1])),
        )

    @cached_property
    def accepted(self) -> tuple[Any, Any]:
        """The inclusive bounds a value may take: the observed range widened by `margin`."""
        lo, hi = self.low, self.high
        if not self.margin or lo is None or hi is None or not self.kind.ordered:
            return lo, hi
        if self.kind is Kind.NUMERIC:
            flo, fhi = float(lo), float(hi)
            pad = self.margin * (fhi - flo)
            new_lo, new_hi = flo - pad, fhi + pad
            if flo >= 0:  # never seen negative: the margin does not invent a sign
                new_lo = max(new_lo, 0.0)
            if fhi <= 0:
                new_hi = min(new_hi, 0.0)
            if self.integral:
                return math.ceil(new_lo), math.floor(new_hi)
            return new_lo, new_hi
        pad_t = (hi - lo) * self.margin
        if self.kind is Kind.DATE:
            pad_t = dt.timedelta(days=pad_t.days)
        return lo - pad_t, hi + pad_t


# ----------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------


def _int_low(v: Any, closed: bool) -> int:
    f = math.ceil(v) if closed else math.floor(v) + 1
    return int(f)


def _int_high(v: Any, closed: bool) -> int:
    f = math.floor(v) if closed else math.ceil(v) - 1
    return int(f)


@dataclass(frozen=True)
class RowSchema:
    """What one request asks for: columns, the DGR every row must satisfy, the label and how many
    rows. Serialised into the `row_schema` request column with `to_json()`."""

    columns: tuple[RowColumn, ...]
    rule: Rule = field(default_factory=Rule.true)
    label: str | None = None
    task: Literal["classification", "regression"] | None = None
    label_values: tuple[Any, ...] | None = None
    n_rows: int | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise RuleError(f"duplicate column names in row schema: {names}")
        unknown = self.rule.columns() - set(names)
        if unknown:
            raise RuleError(
                f"rule {self.rule.to_text()!r} uses {sorted(unknown)} which the row schema lacks; "
                f"include those columns"
            )
        if self.label is not None and self.label not in names:
            raise RuleError(f"label column {self.label!r} is not among the columns {names}")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_table(
        cls,
        table: TableSchema,
        rule: Rule | str | None = None,
        *,
        domains: Mapping[str, Iterable[Any]] | None = None,
        ranges: Mapping[str, tuple[Any, Any]] | None = None,
        n_rows: int | None = None,
        columns: Sequence[str] | None = None,
        margin: float = 0.0,
        out_of_range: str = "reject",
        decimals: Mapping[str, tuple[int, int]] | None = None,
    ) -> RowSchema:
        """Build from the table schema plus the data's categorical `domains` and ordered `ranges`
        (min, max). The label's classes come from `table.classes` (or its domain). `margin` widens
        every ordered range by that fraction of its width on both sides when rows are validated
        (the JSON schema still asks for the observed range); past it a value is rejected, or
        clipped to the widened bound with `out_of_range="clip"`. `decimals` holds the (precision,
        scale) of columns read from a decimal type: a value past the precision is out of domain."""
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if out_of_range not in OUT_OF_RANGE:
            raise ValueError(f"out_of_range must be one of {OUT_OF_RANGE}, got {out_of_range!r}")
        domains = domains or {}
        ranges = ranges or {}
        wanted = list(columns) if columns is not None else table.names
        if table.target not in wanted:
            wanted.append(table.target)
        cols: list[RowColumn] = []
        for spec in table.columns:
            if spec.name not in wanted:
                continue
            values: tuple[Any, ...] | None = None
            low = high = None
            if spec.name == table.target and table.task == "classification" and table.classes:
                values = tuple(table.classes)
            elif spec.name in domains:
                values = tuple(sorted(set(domains[spec.name]), key=lambda x: (str(type(x)), x)))
            if spec.kind.ordered and spec.name in ranges:
                low, high = ranges[spec.name]
            ordered = spec.kind.ordered and values is None
            cols.append(
                RowColumn(
                    spec.name,
                    spec.kind,
                    spec.integral,
                    values,
                    low,
                    high,
                    margin=margin if ordered else 0.0,
                    clip=ordered and out_of_range == "clip",
                    decimal=(decimals or {}).get(spec.name),
                )
            )
        if isinstance(rule, str):
            rule = parse_rule(rule, table.kinds)
        label_values = None
        if table.task == "classification":
            label_col = next(c for c in cols if c.name == table.target)
            label_values = label_col.values
        task: Literal["classification", "regression"] = (
            "classification" if table.task == "classification" else "regression"
        )
        return cls(
            columns=tuple(cols),
            rule=rule if rule is not None else Rule.true(),
            label=table.target,
            task=task,
            label_values=label_values,
            n_rows=n_rows,
        )

    def with_rows(self, n_rows: int | None) -> RowSchema:
        return RowSchema(self.columns, self.rule, self.label, self.task, self.label_values, n_rows)

    # -- serialisation --------------------------------------------------------------------------
    def to_json(self) -> str:
        label_kind = self.column(self.label).kind if self.label else None
        return json.dumps(
            {
                "columns": [c.to_json() for c in self.columns],
                "rule": self.rule.to_json(),
                "label": self.label,
                "task": self.task,
                "label_values": None
                if self.label_values is None
                else [to_json_value(v) for v in self.label_values],
                "label_kind": None if label_kind is None else label_kind.value,
                "n_rows": self.n_rows,
            },
            sort_keys=True,
        )

    @staticmethod
    def from_json(text: str | Mapping[str, Any]) -> RowSchema:
        d = json.loads(text) if isinstance(text, str) else text
        cols = tuple(RowColumn.from_json(c) for c in d["columns"])
        kinds = {c.name: c.kind for c in cols}
        lk = d.get("label_kind")
        lv = d.get("label_values")
        return RowSchema(
            columns=cols,
            rule=Rule.from_json(d.get("rule") or Rule.true().to_json(), kinds),
            label=d.get("label"),
            task=d.get("task"),
            label_values=None
            if lv is None
            else tuple(_from_stored(v, Kind(lk)) if lk else v for v in lv),
            n_rows=d.get("n_rows"),
        )

    # -- views ----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def kinds(self) -> dict[str, Kind]:
        return {c.name: c.kind for c in self.columns}

    def column(self, name: str) -> RowColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @cached_property
    def _views(self) -> dict[str, View]:
        return self.rule.bounds(self.kinds)

    def _property(self, c: RowColumn) -> dict[str, Any]:
        """JSON-schema for one column, narrowed by the rule's per-column hull."""
        view = self._views.get(c.name)
        prop: dict[str, Any]
        is_label = c.name == self.label
        if is_label and self.task == "classification" and self.label_values:
            vals = [to_json_value(v) for v in self.label_values]
            jtype = (
                "integer"
                if all(isinstance(v, int) and not isinstance(v, bool) for v in vals)
                else "number"
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
                else "boolean"
                if all(isinstance(v, bool) for v in vals)
                else "string"
            )
            if jtype == "string":
                vals = [str(v) for v in vals]
            prop = {"type": jtype, "enum": vals}
        elif c.kind is Kind.BOOLEAN:
            prop = {"type": "boolean"}
            if isinstance(view, CategorySet) and view.values() is not None:
                allowed = sorted(v for v in (view.values() or ()) if isinstance(v, bool))
                if allowed:
                    prop["enum"] = allowed
        elif c.kind is Kind.CATEGORICAL:
            prop = {"type": "string"}
            vals_set: list[Any] | None = list(c.values) if c.values is not None else None
            if isinstance(view, CategorySet):
                allowed_v = view.values()
                if vals_set is None and allowed_v is not None:
                    vals_set = sorted(allowed_v, key=str)
                elif vals_set is not None:
                    narrowed = [v for v in vals_set if view.contains(v)]
                    vals_set = narrowed or vals_set
            if vals_set is not None:
                prop["enum"] = [str(v) for v in vals_set]
        elif c.kind is Kind.NUMERIC:
            prop = {"type": "integer" if c.integral else "number"}
            lo, lo_closed = c.low, True
            hi, hi_closed = c.high, True
            if isinstance(view, Interval) and not view.null_only:
                iv = view.intersect(Interval(c.low, c.high, True, True))
                if not iv.is_empty():
                    lo, lo_closed, hi, hi_closed = iv.low, iv.low_closed, iv.high, iv.high_closed
            if c.integral:
                if lo is not None:
                    prop["minimum"] = _int_low(lo, lo_closed)
                if hi is not None:
                    prop["maximum"] = _int_high(hi, hi_closed)
            else:
                if lo is not None:
                    prop["minimum" if lo_closed else "exclusiveMinimum"] = float(lo)
                if hi is not None:
                    prop["maximum" if hi_closed else "exclusiveMaximum"] = float(hi)
        else:  # DATE / TIMESTAMP
            fmt = "date" if c.kind is Kind.DATE else "date-time"
            prop = {"type": "string", "format": fmt}
            lo, hi = c.low, c.high
            if isinstance(view, Interval) and not view.null_only:
                iv = view.intersect(Interval(c.low, c.high, True, True))
                if not iv.is_empty():
                    lo, hi = iv.low, iv.high
            if lo is not None or hi is not None:
                prop["description"] = (
                    f"{fmt} from {to_json_value(lo) or 'any'} to {to_json_value(hi) or 'any'}"
                )
        if c.nullable:
            t = prop["type"]
            prop["type"] = [t, "null"]
            if "enum" in prop:
                prop["enum"] = [*prop["enum"], None]
        return prop

    def json_schema(self) -> dict[str, Any]:
        """`{"rows": [{col: ...}]}` with enums and bounds; the rule rides in `description`."""
        row = {
            "type": "object",
            "properties": {c.name: self._property(c) for c in self.columns},
            "required": self.names,
            "additionalProperties": False,
        }
        arr: dict[str, Any] = {"type": "array", "items": row}
        if self.n_rows:
            arr["minItems"] = self.n_rows
            arr["maxItems"] = self.n_rows
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {"rows": arr},
            "required": ["rows"],
            "additionalProperties": False,
        }
        if not self.rule.is_true():
            schema["description"] = f"{RULE_MARKER} {self.rule.to_text()}"
        return schema

    def request_kwargs(self, dialect: str) -> dict[str, Any]:
        """Keyword arguments for `chat.completions.create` that ask for these rows."""
        schema = self.json_schema()
        if dialect == "json_schema":
            return {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema},
                }
            }
        if dialect == "json_object":
            return {"response_format": {"type": "json_object", "schema": schema}}
        if dialect == "vllm":
            return {"extra_body": {"structured_outputs": {"json": schema}}}
        if dialect == "none":
            return {}
        raise ValueError(f"unknown structured-output dialect {dialect!r}; use one of {DIALECTS}")

    def instruction(self) -> str:
        """The plain-prompt form of the schema, appended as a message for dialect `none`."""
        n = f"exactly {self.n_rows} rows" if self.n_rows else "the rows"
        return (
            f'Reply with one JSON object holding {n} under the key "rows", and nothing else. '
            f"It must match this JSON schema:\n```json\n{json.dumps(self.json_schema())}\n```"
        )
