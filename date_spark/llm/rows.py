"""The target schema of one LLM request, and the validator for what comes back.

A `RowSchema` travels with each request as JSON (the `row_schema` column), so an executor can build
the request in the endpoint's structured-output dialect and check every returned row without any
driver state. Validation never trusts the endpoint: even with schema-constrained decoding a small
model writes out-of-range numbers (llama.cpp's grammar ignores `minimum`/`maximum`), and servers
without structured output wrap JSON in prose, fences, or run out of tokens mid-array.

Each rejected row is counted under exactly one reason, checked in this order: `missing_field`,
`extra_field`, `wrong_type`, `invalid_label`, `out_of_domain`, `violates_rule`. A response (or its
truncated tail) that cannot be read counts once as `parse_error`. `out_of_domain` is measured
against the data's own domain (categories seen, ordered ranges); `violates_rule` is the DGR's pandas
mask on the coerced rows, so a row inside the data's range but outside the rule is told apart.
Such a row is valid in every other way, so it is not thrown away here: it comes back apart
(`ValidationResult.off_rule`), for the caller to re-route to the rule it does satisfy
(`generation.reroute`); it still counts once as `violates_rule`.

Rejects are also counted per column (`ValidationResult.by_column`, column -> reason -> rows), so a
user sees which column kills rows: a rejected row counts once under every column that failed, with
that column's reason (a row can fail on several columns; the per-reason count takes it once).
`violates_rule` goes to the columns of the failing predicates of the rule's nearest conjunction
(the one with the fewest failing columns). Failures that belong to no column are counted under
`(reply)` (parse errors), `(row)` (an item that is not an object) and `(extra)` (fields the schema
does not have).

Ordered ranges may carry a margin (`RowColumn.margin`, a fraction of the observed range added on
both sides; `generation.domain_margin`): a model that writes a value slightly past the largest
value seen is not refused for it. A numeric column observed without negative (positive) values
never admits them through the margin, and an integral column's widened bounds stay whole numbers.
Past the margin a value is rejected (`out_of_domain`), or with `RowColumn.clip` moved to the
nearest accepted bound and counted in `ValidationResult.clipped`. Categories never get a margin:
an unseen category is a schema violation, not an extrapolation.

A column read from a decimal type (`RowColumn.decimal`: precision, scale) also refuses a value
that, rounded half up to its scale as the output writes it, has more digits than the precision
holds (`999.996` in a `decimal(5,2)`): `out_of_domain`, or with `clip` the largest decimal the
column holds, like any value past the range.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from date_spark.errors import RuleError
from date_spark.llm.extract import extract_rows
from date_spark.rules import CategorySet, Interval, Rule, View, parse_rule
from date_spark.schema import Kind, TableSchema

__all__ = [
    "DIALECTS",
    "EXTRA_COLUMN",
    "OUT_OF_RANGE",
    "REASONS",
    "REPLY_COLUMN",
    "ROW_COLUMN",
    "RULE_COLUMN",
    "RULE_MARKER",
    "SCHEMA_NAME",
    "Dialect",
    "RowColumn",
    "RowSchema",
    "ValidationResult",
]


Dialect = Literal["json_schema", "json_object", "vllm", "none"]
DIALECTS: tuple[str, ...] = ("json_schema", "json_object", "vllm", "none")
REASONS: tuple[str, ...] = (
    "parse_error",
    "missing_field",
    "extra_field",
    "wrong_type",
    "invalid_label",
    "out_of_domain",
    "violates_rule",
)
_PRECEDENCE = {r: i for i, r in enumerate(REASONS)}
# Per-column counts of failures that belong to no column of the schema.
REPLY_COLUMN = "(reply)"
ROW_COLUMN = "(row)"
EXTRA_COLUMN = "(extra)"
RULE_COLUMN = "(rule)"
OUT_OF_RANGE: tuple[str, ...] = ("reject", "clip")
RULE_MARKER = "Every row must satisfy:"
SCHEMA_NAME = "synthetic_rows"


class _Bad(Exception):
    """Internal: a value failed coercion or a domain check."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ----------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------


def _to_json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        return v.item()
    return v


def _parse_date(v: Any) -> dt.date:
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
            raise _Bad("wrong_type") from None
        if ts.time() == dt.time(0):
            return ts.date()
    raise _Bad("wrong_type")


def _parse_timestamp(v: Any) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day)
    if isinstance(v, str):
        try:
            ts = dt.datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _Bad("wrong_type") from None
        if ts.tzinfo is not None:
            ts = ts.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return ts
    raise _Bad("wrong_type")


def _from_stored(v: Any, kind: Kind) -> Any:
    """Values read back from RowSchema JSON: dates arrive as ISO strings."""
    if v is None:
        return None
    if kind is Kind.DATE:
        return _parse_date(v)
    if kind is Kind.TIMESTAMP:
        return _parse_timestamp(v)
    return v


def _finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


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
            "values": None if self.values is None else [_to_json_value(v) for v in self.values],
            "low": _to_json_value(self.low),
            "high": _to_json_value(self.high),
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

    # -- validation -----------------------------------------------------------------------------
    def coerce(self, v: Any) -> Any:
        """The value in this column's Python type, or `_Bad("wrong_type")`."""
        k = self.kind
        if k is Kind.NUMERIC:
            if isinstance(v, bool):
                raise _Bad("wrong_type")
            if isinstance(v, str):
                s = v.strip()
                try:
                    v = int(s)
                except ValueError:
                    try:
                        v = float(s)
                    except ValueError:
                        raise _Bad("wrong_type") from None
            if isinstance(v, int):
                return int(v) if self.integral else float(v)
            if isinstance(v, float):
                if not _finite(v):
                    raise _Bad("wrong_type")
                if self.integral:
                    if not v.is_integer():
                        raise _Bad("wrong_type")
                    return int(v)
                return v
            raise _Bad("wrong_type")
        if k is Kind.BOOLEAN:
            if isinstance(v, bool):
                return v
            if isinstance(v, str) and v.strip().lower() in ("true", "false"):
                return v.strip().lower() == "true"
            if isinstance(v, int) and v in (0, 1):
                return bool(v)
            raise _Bad("wrong_type")
        if k is Kind.CATEGORICAL:
            if isinstance(v, str):
                return v
            if isinstance(v, int) and not isinstance(v, bool):
                return str(v)
            raise _Bad("wrong_type")
        if k is Kind.DATE:
            return _parse_date(v)
        return _parse_timestamp(v)

    def in_domain(self, v: Any) -> Any:
        """The canonical in-domain value, or `_Bad("out_of_domain")`."""
        return self.domain_value(v)[0]

    def domain_value(self, v: Any) -> tuple[Any, bool]:
        """(canonical in-domain value, whether it was clipped), or `_Bad("out_of_domain")`."""
        if self.values is not None:
            if v in self.values:
                return v, False
            if isinstance(v, str):
                # Tolerate case and surrounding spaces when that names exactly one category.
                folded = v.strip().casefold()
                hits = [c for c in self.values if isinstance(c, str) and c.casefold() == folded]
                if len(hits) == 1:
                    return hits[0], False
            raise _Bad("out_of_domain")
        lo, hi = self.accepted
        try:
            if lo is not None and v < lo:
                if not self.clip:
                    raise _Bad("out_of_domain")
                return self._fit_decimal(self._typed_bound(lo), True)
            if hi is not None and v > hi:
                if not self.clip:
                    raise _Bad("out_of_domain")
                return self._fit_decimal(self._typed_bound(hi), True)
        except TypeError:
            raise _Bad("wrong_type") from None
        return self._fit_decimal(v, False)

    def _fit_decimal(self, v: Any, clipped: bool) -> tuple[Any, bool]:
        """`v` when it fits the decimal column's precision once rounded to its scale; past it
        `_Bad("out_of_domain")`, or with `clip` the largest decimal of that sign."""
        if self.decimal is None or v is None:
            return v, clipped
        precision, scale = self.decimal
        try:
            d = Decimal(str(v)).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
            fits = d == 0 or d.adjusted() + 1 <= precision - scale
        except (InvalidOperation, ValueError):
            fits = False
        if fits:
            return v, clipped
        if not self.clip:
            raise _Bad("out_of_domain")
        largest = float(Decimal(10) ** (precision - scale) - Decimal(1).scaleb(-scale))
        return (largest if float(v) > 0 else -largest), True

    def _typed_bound(self, b: Any) -> Any:
        if self.kind is Kind.NUMERIC:
            return int(b) if self.integral else float(b)
        return b


@dataclass(frozen=True)
class ValidationResult:
    """Rows that passed every check (JSON-ready, in schema column order), rejected rows by reason,
    the same failures by column (column -> reason -> rows) and values clipped per column (kept
    rows only). `off_rule` holds the `violates_rule` rows (JSON-ready, valid but for the rule)."""

    rows: list[dict[str, Any]]
    off_rule: list[dict[str, Any]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    by_column: dict[str, Counter[str]] = field(default_factory=dict)
    clipped: Counter[str] = field(default_factory=Counter)

    @property
    def n_valid(self) -> int:
        return len(self.rows)

    def count(self, column: str, reason: str, n: int = 1) -> None:
        self.by_column.setdefault(column, Counter())[reason] += n

    def by_column_json(self) -> dict[str, dict[str, int]]:
        """Plain, sorted `{column: {reason: rows}}` (what the gateway ships back)."""
        return {
            c: {r: int(n) for r, n in sorted(reasons.items()) if n}
            for c, reasons in sorted(self.by_column.items())
            if any(reasons.values())
        }


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
                else [_to_json_value(v) for v in self.label_values],
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
            vals = [_to_json_value(v) for v in self.label_values]
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
                    f"{fmt} from {_to_json_value(lo) or 'any'} to {_to_json_value(hi) or 'any'}"
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

    # -- validation -----------------------------------------------------------------------------
    def validate(self, text: str | None) -> ValidationResult:
        """Parse a reply and validate every row. Never raises on bad model output."""
        rows, parse_errors = extract_rows(text, self.names)
        res = self.validate_rows(rows)
        if parse_errors:
            res.rejected["parse_error"] += parse_errors
            res.count(REPLY_COLUMN, "parse_error", parse_errors)
        return res

    def validate_rows(self, rows: Sequence[Any]) -> ValidationResult:
        res = ValidationResult([])
        names = self.names
        nameset = set(names)
        candidates: list[dict[str, Any]] = []
        clips: list[list[str]] = []
        for raw in rows:
            if not isinstance(raw, dict):
                res.rejected["wrong_type"] += 1
                res.count(ROW_COLUMN, "wrong_type")
                continue
            failures: list[tuple[str, str]] = []
            out: dict[str, Any] = {}
            clipped: list[str] = []
            for c in self.columns:
                v = raw.get(c.name)
                if c.name not in raw or (v is None and not c.nullable):
                    failures.append((c.name, "missing_field"))
                    continue
                if v is None:
                    out[c.name] = None
                    continue
                try:
                    out[c.name], was_clipped = self._check(c, v)
                except _Bad as bad:
                    failures.append((c.name, bad.reason))
                    continue
                if was_clipped:
                    clipped.append(c.name)
            if set(raw) - nameset:
                failures.append((EXTRA_COLUMN, "extra_field"))
            if failures:
                res.rejected[min((r for _, r in failures), key=_PRECEDENCE.__getitem__)] += 1
                for col, reason in dict.fromkeys(failures):
                    res.count(col, reason)
                continue
            candidates.append(out)
            clips.append(clipped)
        kept = self._apply_rule(candidates, clips, res)
        res.rows.extend({k: _to_json_value(v) for k, v in r.items()} for r in kept)
        return res

    def _check(self, c: RowColumn, v: Any) -> tuple[Any, bool]:
        """(canonical value, clipped) for one present value, or `_Bad(reason)`."""
        if c.name == self.label:
            try:
                value = c.coerce(v)
            except _Bad:
                raise _Bad("invalid_label") from None
            if self.task == "classification" and self.label_values:
                for allowed in self.label_values:
                    if value == allowed:
                        return allowed, False
                if isinstance(value, str):
                    folded = value.strip().casefold()
                    hits = [a for a in self.label_values if str(a).casefold() == folded]
                    if len(hits) == 1:
                        return hits[0], False
                raise _Bad("invalid_label")
            try:
                return c.domain_value(value)
            except _Bad:
                raise _Bad("invalid_label") from None
        return c.domain_value(c.coerce(v))

    def _apply_rule(
        self, candidates: list[dict[str, Any]], clips: list[list[str]], res: ValidationResult
    ) -> list[dict[str, Any]]:
        """Rows that satisfy the rule; the others are counted as `violates_rule`, by column, and
        set apart in `res.off_rule`."""
        if not candidates or self.rule.is_true():
            for clipped in clips:
                res.clipped.update(clipped)
            return candidates
        frame = pd.DataFrame(candidates, columns=self.names)
        try:
            mask = self.rule.mask(frame).tolist()
        except Exception:
            # A frame the vectorised mask cannot digest (mixed types): decide row by row.
            mask = []
            for r in candidates:
                try:
                    mask.append(bool(self.rule.mask(pd.DataFrame([r], columns=self.names)).iloc[0]))
                except Exception:
                    mask.append(False)
        kept = []
        bad_rows = []
        for r, clipped, ok in zip(candidates, clips, mask, strict=True):
            if ok:
                kept.append(r)
                res.clipped.update(clipped)
            else:
                bad_rows.append(r)
        if bad_rows:
            res.rejected["violates_rule"] += len(bad_rows)
            res.off_rule.extend({k: _to_json_value(v) for k, v in r.items()} for r in bad_rows)
            for blamed in self._rule_blame(bad_rows):
                for col in blamed:
                    res.count(col, "violates_rule")
        return kept

    def _rule_blame(self, rows: list[dict[str, Any]]) -> list[list[str]]:
        """Per row outside the rule, the columns whose predicates fail in the rule's nearest
        conjunction (fewest failing columns, the first on a tie)."""
        try:
            frame = pd.DataFrame(rows, columns=self.names)
            per_conj: list[dict[str, np.ndarray]] = []
            for conj in self.rule.conjunctions:
                fails: dict[str, np.ndarray] = {}
                for p in conj.predicates:
                    bad = ~p.mask(frame).to_numpy(dtype=bool)
                    fails[p.column] = fails[p.column] | bad if p.column in fails else bad
                per_conj.append(fails)
        except Exception:
            return [[RULE_COLUMN] for _ in rows]
        out: list[list[str]] = []
        for i in range(len(rows)):
            best: list[str] | None = None
            for fails in per_conj:
                cols = sorted(c for c, f in fails.items() if f[i])
                if cols and (best is None or len(cols) < len(best)):
                    best = cols
            out.append(best or [RULE_COLUMN])
        return out
