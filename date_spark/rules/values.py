"""Rule values and per-column views: the literals a predicate compares with (checked, coerced
to the column's kind, written back as text) and the set of values a rule admits in one column
(`Interval` for ordered columns, `CategorySet` for the rest), which generation and selection
read."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F

from date_spark.errors import RuleError
from date_spark.schema import Kind, to_timestamp

__all__ = [
    "CategorySet",
    "Interval",
    "Scalar",
    "Value",
    "View",
    "check_scalar",
    "coerce_literal",
    "identifier_text",
    "less_than",
    "literal_text",
    "merge_views",
    "spark_literal",
]

Scalar: TypeAlias = int | float | str | bool | dt.date | dt.datetime
Value: TypeAlias = Scalar | tuple[Scalar, ...] | None


# ----------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------


def check_scalar(v: Any) -> Scalar:
    if isinstance(v, (bool, str, dt.date, dt.datetime)):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f) or math.isinf(f):
            raise RuleError(f"rule value {v!r} is not a finite number; use 'is null' for missing")
        return f
    raise RuleError(f"unsupported rule value {v!r} of type {type(v).__name__}")


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, dt.datetime):
        return "timestamp"
    if isinstance(v, dt.date):
        return "date"
    return "string"


def spark_literal(v: Any) -> Column:
    """A literal for Spark. A naive timestamp is cast from its text, so Spark reads it in the
    session time zone, as `toPandas` shows timestamps; `F.lit(datetime)` would read it in the
    driver's local zone, and the Spark filter and the pandas mask would disagree."""
    if isinstance(v, dt.datetime) and v.tzinfo is None:
        return F.lit(v.isoformat(sep=" ")).cast("timestamp")
    return F.lit(v)


def literal_text(v: Scalar) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = repr(v)
        return text
    if isinstance(v, dt.datetime):
        return f"timestamp '{v.isoformat(sep=' ')}'"
    if isinstance(v, dt.date):
        return f"date '{v.isoformat()}'"
    return "'" + v.replace("'", "''") + "'"


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false", "date", "timestamp"}


def identifier_text(name: str) -> str:
    if _IDENT.match(name) and name.lower() not in _KEYWORDS:
        return name
    return "`" + name.replace("`", "``") + "`"


def coerce_literal(value: Scalar, kind: Kind, column: str, op: str) -> Scalar:
    """Fit a literal to its column's kind; wrong types are errors, not silent casts."""
    if kind is Kind.NUMERIC:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RuleError(
                f"column {column!r} is numeric but the rule compares it with "
                f"{literal_text(value)}; write a number, e.g. {column} {op} 10"
            )
        return value
    if kind is Kind.BOOLEAN:
        if not isinstance(value, bool):
            raise RuleError(
                f"column {column!r} is boolean but the rule compares it with "
                f"{literal_text(value)}; write true or false"
            )
        return value
    if kind is Kind.CATEGORICAL:
        if not isinstance(value, str):
            raise RuleError(
                f"column {column!r} is categorical but the rule compares it with "
                f"{literal_text(value)}; quote the value, e.g. {column} = 'a'"
            )
        return value
    if kind is Kind.DATE:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise RuleError(
            f"column {column!r} is a date but the rule compares it with "
            f"{literal_text(value)}; write date 'YYYY-MM-DD'"
        )
    # TIMESTAMP
    try:
        return to_timestamp(value)
    except ValueError:
        pass
    raise RuleError(
        f"column {column!r} is a timestamp but the rule compares it with "
        f"{literal_text(value)}; write timestamp 'YYYY-MM-DD HH:MM:SS'"
    )


# ----------------------------------------------------------------------------------------------
# Per-column views
# ----------------------------------------------------------------------------------------------


def less_than(a: Any, b: Any) -> bool:
    return bool(a < b)


@dataclass(frozen=True)
class Interval:
    """Values of an ordered column a rule admits. None bounds are unbounded; `excluded` holds
    points removed by ``!=``; `null_only` is the view of ``x is null``."""

    low: Any = None
    high: Any = None
    low_closed: bool = False
    high_closed: bool = False
    excluded: frozenset[Any] = frozenset()
    null_only: bool = False

    def is_empty(self) -> bool:
        if self.null_only:
            return False
        if self.low is None or self.high is None:
            return False
        if less_than(self.high, self.low):
            return True
        if self.low == self.high:
            return not (self.low_closed and self.high_closed) or self.low in self.excluded
        return False

    def contains(self, v: Any) -> bool:
        if v is None:
            return self.null_only
        if self.null_only or v in self.excluded:
            return False
        if self.low is not None and (
            less_than(v, self.low) or (v == self.low and not self.low_closed)
        ):
            return False
        return not (
            self.high is not None
            and (less_than(self.high, v) or (v == self.high and not self.high_closed))
        )

    def intersect(self, other: Interval) -> Interval:
        if self.null_only or other.null_only:
            return Interval(null_only=self.null_only and other.null_only, low=0, high=-1)
        low, lc = self.low, self.low_closed
        if other.low is not None and (
            low is None or less_than(low, other.low) or (low == other.low and not other.low_closed)
        ):
            low, lc = other.low, other.low_closed
        high, hc = self.high, self.high_closed
        if other.high is not None and (
            high is None
            or less_than(other.high, high)
            or (high == other.high and not other.high_closed)
        ):
            high, hc = other.high, other.high_closed
        return Interval(low, high, lc, hc, self.excluded | other.excluded)

    def hull(self, other: Interval) -> Interval:
        """Smallest interval containing both: the bound a row of either side must respect."""
        if self.null_only:
            return other
        if other.null_only:
            return self
        if self.low is None or other.low is None:
            low, lc = None, False
        elif self.low == other.low:
            low, lc = self.low, self.low_closed or other.low_closed
        else:
            low, lc = (
                (self.low, self.low_closed)
                if less_than(self.low, other.low)
                else (other.low, other.low_closed)
            )
        if self.high is None or other.high is None:
            high, hc = None, False
        elif self.high == other.high:
            high, hc = self.high, self.high_closed or other.high_closed
        else:
            high, hc = (
                (self.high, self.high_closed)
                if less_than(other.high, self.high)
                else (other.high, other.high_closed)
            )
        return Interval(low, high, lc, hc, self.excluded & other.excluded)

    def overlap_ratio(self, other: Interval, domain: Interval | None = None) -> float:
        """Length of the intersection over the length of the union, inside `domain` (needed to
        measure unbounded sides); 1.0 for identical intervals, 0.0 for disjoint ones."""
        a, b = self, other
        if domain is not None:
            a, b = a.intersect(domain), b.intersect(domain)
        if a.null_only or b.null_only:
            return 1.0 if a.null_only and b.null_only else 0.0
        inter = a.intersect(b)
        if inter.is_empty():
            return 0.0
        union = a.hull(b)
        lu, li = _length(union), _length(inter)
        if lu is None or li is None:
            return 1.0 if a == b else 0.5
        if lu == 0:
            return 1.0
        return float(li / lu)


def _length(iv: Interval) -> float | None:
    if iv.low is None or iv.high is None:
        return None
    lo, hi = iv.low, iv.high
    if isinstance(lo, dt.datetime):
        return (hi - lo).total_seconds()
    if isinstance(lo, dt.date):
        return float((hi - lo).days)
    if isinstance(lo, (int, float)) and not isinstance(lo, bool):
        return float(hi) - float(lo)
    return None


@dataclass(frozen=True)
class CategorySet:
    """Values of an unordered column a rule admits: `allowed` (None = any value) minus
    `excluded`; `null_only` is the view of ``x is null``."""

    allowed: frozenset[Any] | None = None
    excluded: frozenset[Any] = frozenset()
    null_only: bool = False

    def is_empty(self) -> bool:
        return (
            not self.null_only and self.allowed is not None and not (self.allowed - self.excluded)
        )

    def contains(self, v: Any) -> bool:
        if v is None:
            return self.null_only
        if self.null_only or v in self.excluded:
            return False
        return self.allowed is None or v in self.allowed

    def values(self) -> frozenset[Any] | None:
        return None if self.allowed is None else self.allowed - self.excluded

    def intersect(self, other: CategorySet) -> CategorySet:
        if self.null_only or other.null_only:
            both = self.null_only and other.null_only
            return CategorySet(allowed=None if both else frozenset(), null_only=both)
        if self.allowed is None:
            allowed = other.allowed
        elif other.allowed is None:
            allowed = self.allowed
        else:
            allowed = self.allowed & other.allowed
        return CategorySet(allowed, self.excluded | other.excluded)

    def hull(self, other: CategorySet) -> CategorySet:
        if self.null_only:
            return other
        if other.null_only:
            return self
        a, b = self.values(), other.values()
        if a is None or b is None:
            return CategorySet(None, self.excluded & other.excluded)
        return CategorySet(a | b)

    def overlap_ratio(self, other: CategorySet, domain: frozenset[Any] | None = None) -> float:
        """Jaccard overlap of the admitted values (within `domain` when given)."""
        if self.null_only or other.null_only:
            return 1.0 if self.null_only and other.null_only else 0.0
        a, b = self.values(), other.values()
        if domain is not None:
            a = (domain - self.excluded) if a is None else a & domain
            b = (domain - other.excluded) if b is None else b & domain
        if a is None or b is None:
            if a is None and b is None:
                return 1.0
            return 0.5
        union = a | b
        return 1.0 if not union else len(a & b) / len(union)


View: TypeAlias = Interval | CategorySet


def merge_views(a: View, b: View, how: Literal["intersect", "hull"]) -> View | None:
    """Intersect or hull two views of one column; None when their kinds differ."""
    if isinstance(a, Interval) and isinstance(b, Interval):
        return a.intersect(b) if how == "intersect" else a.hull(b)
    if isinstance(a, CategorySet) and isinstance(b, CategorySet):
        return a.intersect(b) if how == "intersect" else a.hull(b)
    return None


# ----------------------------------------------------------------------------------------------
# Predicate
# ----------------------------------------------------------------------------------------------
