"""Validation of the rows an LLM returns against the request's `RowSchema` (rule, domains, label).

It lives in `llm/` beside the schema because the gateway runs it inside the Spark task that made
the request, and `llm/` never imports `generation/`; this module imports `llm.rows`, never the
other way. Validation never trusts the endpoint: even with schema-constrained decoding a small
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

An ordered value past the range widened by the column's margin (`RowColumn.accepted`) is rejected
(`out_of_domain`), or with `RowColumn.clip` moved to the nearest accepted bound and counted in
`ValidationResult.clipped`. Categories never get a margin: an unseen category is a schema
violation, not an extrapolation.

A column read from a decimal type (`RowColumn.decimal`: precision, scale) also refuses a value
that, rounded half up to its scale as the output writes it, has more digits than the precision
holds (`999.996` in a `decimal(5,2)`): `out_of_domain`, or with `clip` the largest decimal the
column holds, like any value past the range.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

from date_spark.llm.extract import extract_rows
from date_spark.llm.rows import (
    BadValue,
    RowColumn,
    RowSchema,
    parse_date,
    parse_timestamp,
    to_json_value,
)
from date_spark.schema import Kind

__all__ = [
    "EXTRA_COLUMN",
    "REASONS",
    "REPLY_COLUMN",
    "ROW_COLUMN",
    "RULE_COLUMN",
    "ValidationResult",
    "coerce",
    "domain_value",
    "in_domain",
    "validate_reply",
    "validate_rows",
]


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
# Rows
# ----------------------------------------------------------------------------------------------


def validate_reply(schema: RowSchema, text: str | None) -> ValidationResult:
    """Parse a reply and validate every row. Never raises on bad model output."""
    rows, parse_errors = extract_rows(text, schema.names)
    res = validate_rows(schema, rows)
    if parse_errors:
        res.rejected["parse_error"] += parse_errors
        res.count(REPLY_COLUMN, "parse_error", parse_errors)
    return res


def validate_rows(schema: RowSchema, rows: Sequence[Any]) -> ValidationResult:
    """Validate rows already read from a reply (every item, in order); never raises."""
    res = ValidationResult([])
    names = schema.names
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
        for c in schema.columns:
            v = raw.get(c.name)
            if c.name not in raw or (v is None and not c.nullable):
                failures.append((c.name, "missing_field"))
                continue
            if v is None:
                out[c.name] = None
                continue
            try:
                out[c.name], was_clipped = _check(schema, c, v)
            except BadValue as bad:
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
    kept = _apply_rule(schema, candidates, clips, res)
    res.rows.extend({k: to_json_value(v) for k, v in r.items()} for r in kept)
    return res


def _check(schema: RowSchema, c: RowColumn, v: Any) -> tuple[Any, bool]:
    """(canonical value, clipped) for one present value, or `BadValue(reason)`."""
    if c.name == schema.label:
        try:
            value = coerce(c, v)
        except BadValue:
            raise BadValue("invalid_label") from None
        if schema.task == "classification" and schema.label_values:
            for allowed in schema.label_values:
                if value == allowed:
                    return allowed, False
            if isinstance(value, str):
                folded = value.strip().casefold()
                hits = [a for a in schema.label_values if str(a).casefold() == folded]
                if len(hits) == 1:
                    return hits[0], False
            raise BadValue("invalid_label")
        try:
            return domain_value(c, value)
        except BadValue:
            raise BadValue("invalid_label") from None
    return domain_value(c, coerce(c, v))


def _apply_rule(
    schema: RowSchema,
    candidates: list[dict[str, Any]],
    clips: list[list[str]],
    res: ValidationResult,
) -> list[dict[str, Any]]:
    """Rows that satisfy the rule; the others are counted as `violates_rule`, by column, and
    set apart in `res.off_rule`."""
    if not candidates or schema.rule.is_true():
        for clipped in clips:
            res.clipped.update(clipped)
        return candidates
    frame = pd.DataFrame(candidates, columns=schema.names)
    try:
        mask = schema.rule.mask(frame).tolist()
    except Exception:
        # A frame the vectorised mask cannot digest (mixed types): decide row by row.
        mask = []
        for r in candidates:
            try:
                mask.append(bool(schema.rule.mask(pd.DataFrame([r], columns=schema.names)).iloc[0]))
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
        res.off_rule.extend({k: to_json_value(v) for k, v in r.items()} for r in bad_rows)
        for blamed in _rule_blame(schema, bad_rows):
            for col in blamed:
                res.count(col, "violates_rule")
    return kept


def _rule_blame(schema: RowSchema, rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per row outside the rule, the columns whose predicates fail in the rule's nearest
    conjunction (fewest failing columns, the first on a tie)."""
    try:
        frame = pd.DataFrame(rows, columns=schema.names)
        per_conj: list[dict[str, np.ndarray]] = []
        for conj in schema.rule.conjunctions:
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


# ----------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------


def coerce(c: RowColumn, v: Any) -> Any:
    """The value in column `c`'s Python type, or `BadValue("wrong_type")`."""
    k = c.kind
    if k is Kind.NUMERIC:
        if isinstance(v, bool):
            raise BadValue("wrong_type")
        if isinstance(v, str):
            s = v.strip()
            try:
                v = int(s)
            except ValueError:
                try:
                    v = float(s)
                except ValueError:
                    raise BadValue("wrong_type") from None
        if isinstance(v, int):
            return int(v) if c.integral else float(v)
        if isinstance(v, float):
            if not _finite(v):
                raise BadValue("wrong_type")
            if c.integral:
                if not v.is_integer():
                    raise BadValue("wrong_type")
                return int(v)
            return v
        raise BadValue("wrong_type")
    if k is Kind.BOOLEAN:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
        if isinstance(v, int) and v in (0, 1):
            return bool(v)
        raise BadValue("wrong_type")
    if k is Kind.CATEGORICAL:
        if isinstance(v, str):
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        raise BadValue("wrong_type")
    if k is Kind.DATE:
        return parse_date(v)
    return parse_timestamp(v)


def in_domain(c: RowColumn, v: Any) -> Any:
    """The canonical in-domain value, or `BadValue("out_of_domain")`."""
    return domain_value(c, v)[0]


def domain_value(c: RowColumn, v: Any) -> tuple[Any, bool]:
    """(canonical in-domain value, whether it was clipped), or `BadValue("out_of_domain")`."""
    if c.values is not None:
        if v in c.values:
            return v, False
        if isinstance(v, str):
            # Tolerate case and surrounding spaces when that names exactly one category.
            folded = v.strip().casefold()
            hits = [c for c in c.values if isinstance(c, str) and c.casefold() == folded]
            if len(hits) == 1:
                return hits[0], False
        raise BadValue("out_of_domain")
    lo, hi = c.accepted
    try:
        if lo is not None and v < lo:
            if not c.clip:
                raise BadValue("out_of_domain")
            return _fit_decimal(c, _typed_bound(c, lo), True)
        if hi is not None and v > hi:
            if not c.clip:
                raise BadValue("out_of_domain")
            return _fit_decimal(c, _typed_bound(c, hi), True)
    except TypeError:
        raise BadValue("wrong_type") from None
    return _fit_decimal(c, v, False)


def _fit_decimal(c: RowColumn, v: Any, clipped: bool) -> tuple[Any, bool]:
    """`v` when it fits the decimal column's precision once rounded to its scale; past it
    `BadValue("out_of_domain")`, or with `clip` the largest decimal of that sign."""
    if c.decimal is None or v is None:
        return v, clipped
    precision, scale = c.decimal
    try:
        d = Decimal(str(v)).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        fits = d == 0 or d.adjusted() + 1 <= precision - scale
    except (InvalidOperation, ValueError):
        fits = False
    if fits:
        return v, clipped
    if not c.clip:
        raise BadValue("out_of_domain")
    largest = float(Decimal(10) ** (precision - scale) - Decimal(1).scaleb(-scale))
    return (largest if float(v) > 0 else -largest), True


def _typed_bound(c: RowColumn, b: Any) -> Any:
    if c.kind is Kind.NUMERIC:
        return int(b) if c.integral else float(b)
    return b


def _finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))
