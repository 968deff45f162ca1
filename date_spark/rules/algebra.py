"""DGR rule algebra: predicates, conjunctions and DNF rules.

One rule has four faces that must agree row for row: a Spark `Column` (the filter on big tables), a
pandas mask (inside UDFs and for generated rows), a one-line text form (what the LLM reads and
writes, e.g. ``age >= 40 and region in ('north', 'east')``; parsed by `date_spark.rules.text`) and
JSON (what runs persist).

Null policy, identical in both engines: SQL semantics. Any comparison with a missing value is
false, including ``!=`` and ``not in``; only ``is null`` matches a missing value. NaN counts as
missing (the input reader turns NaN into null).

Numeric policy: Spark compares a float column with a literal in double precision and an integer
column with an integer literal exactly; the pandas mask does the same (a float32 column is widened
to float64 first, as Spark does, rather than narrowing the literal as numpy would).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

from date_spark.columns import named_col
from date_spark.errors import RuleError
from date_spark.rules.values import (
    CategorySet,
    Interval,
    Scalar,
    Value,
    View,
    check_scalar,
    coerce_literal,
    identifier_text,
    less_than,
    literal_text,
    merge_views,
    spark_literal,
)
from date_spark.schema import Kind, parse_timestamp

__all__ = ["COMPARISONS", "NULL_OPS", "OPS", "SET_OPS", "Conjunction", "Predicate", "Rule"]


COMPARISONS = ("<", "<=", ">", ">=", "=", "!=")
SET_OPS = ("in", "not in")
NULL_OPS = ("is null", "is not null")
OPS = COMPARISONS + SET_OPS + NULL_OPS
_ORDERING = ("<", "<=", ">", ">=")
# Canonical predicate order inside a conjunction: lower bounds, equality, upper bounds, the rest.
_OP_RANK = {
    op: i
    for i, op in enumerate(
        (">", ">=", "=", "in", "<", "<=", "!=", "not in", "is null", "is not null")
    )
}
_MAX_DNF_TERMS = 256


@dataclass(frozen=True, order=False)
class Predicate:
    column: str
    op: str
    value: Value = None

    def __post_init__(self) -> None:
        op = self.op.lower().strip()
        op = {"==": "=", "<>": "!="}.get(op, op)
        op = " ".join(op.split())
        if op not in OPS:
            raise RuleError(f"unknown operator {self.op!r}; use one of {', '.join(OPS)}")
        object.__setattr__(self, "op", op)
        if op in NULL_OPS:
            object.__setattr__(self, "value", None)
        elif op in SET_OPS:
            raw: Any = self.value
            items: Iterable[Any] = raw if isinstance(raw, (tuple, list, set, frozenset)) else (raw,)
            vals = tuple(check_scalar(v) for v in items if v is not None)
            if not vals:
                raise RuleError(f"{self.column} {op} () needs at least one non-null value")
            try:
                vals = tuple(sorted(set(vals), key=_sort_key))
            except TypeError:
                vals = tuple(dict.fromkeys(vals))
            object.__setattr__(self, "value", vals)
        else:
            if self.value is None:
                raise RuleError(
                    f"{self.column} {op} null is never true in SQL; write {self.column} is null"
                )
            if isinstance(self.value, (tuple, list)):
                raise RuleError(f"{self.column} {op} takes one value; use 'in' for a list")
            object.__setattr__(self, "value", check_scalar(self.value))

    # -- forms ------------------------------------------------------------------------------
    def to_text(self) -> str:
        col = identifier_text(self.column)
        if self.op in NULL_OPS:
            return f"{col} {self.op}"
        if self.op in SET_OPS:
            assert isinstance(self.value, tuple)
            return f"{col} {self.op} (" + ", ".join(literal_text(v) for v in self.value) + ")"
        assert not isinstance(self.value, tuple) and self.value is not None
        return f"{col} {self.op} {literal_text(self.value)}"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"column": self.column, "op": self.op}
        if self.op in SET_OPS:
            assert isinstance(self.value, tuple)
            d["value"] = [_json_value(v) for v in self.value]
        elif self.op in COMPARISONS:
            d["value"] = _json_value(self.value)
        return d

    @staticmethod
    def from_json(d: Mapping[str, Any], kinds: Mapping[str, Kind] | None = None) -> Predicate:
        if not isinstance(d, Mapping) or "column" not in d or "op" not in d:
            raise RuleError(f"predicate JSON {d!r} needs 'column' and 'op'")
        raw = d.get("value")
        value: Value
        if isinstance(raw, list):
            value = tuple(_from_json_value(v) for v in raw)
        else:
            value = None if raw is None else _from_json_value(raw)
        return Predicate(str(d["column"]), str(d["op"]), value).bind(kinds)

    def bind(self, kinds: Mapping[str, Kind] | None) -> Predicate:
        """Check the column exists and coerce the literal to its kind."""
        if kinds is None:
            return self
        if self.column not in kinds:
            known = ", ".join(sorted(kinds)) or "(none)"
            raise RuleError(f"unknown column {self.column!r} in rule; known columns: {known}")
        kind = kinds[self.column]
        if self.op in NULL_OPS:
            return self
        if self.op in _ORDERING and not kind.ordered:
            raise RuleError(
                f"column {self.column!r} is {kind.value}; '{self.op}' needs an ordered column, "
                f"use = or in for {kind.value} values"
            )
        if isinstance(self.value, tuple):
            vals = tuple(coerce_literal(v, kind, self.column, self.op) for v in self.value)
            return Predicate(self.column, self.op, vals)
        assert self.value is not None
        return Predicate(
            self.column, self.op, coerce_literal(self.value, kind, self.column, self.op)
        )

    def to_column(self) -> Column:
        c = named_col(self.column)
        op, v = self.op, self.value
        if op == "is null":
            return c.isNull()
        if op == "is not null":
            return c.isNotNull()
        if op == "in":
            assert isinstance(v, tuple)
            return c.isin(*[spark_literal(x) for x in v])
        if op == "not in":
            assert isinstance(v, tuple)
            return ~c.isin(*[spark_literal(x) for x in v])
        lit = spark_literal(v)
        return {
            "<": c < lit,
            "<=": c <= lit,
            ">": c > lit,
            ">=": c >= lit,
            "=": c == lit,
            "!=": c != lit,
        }[op]

    def mask(self, pdf: pd.DataFrame) -> pd.Series:
        if self.column not in pdf.columns:
            raise RuleError(f"unknown column {self.column!r}: the frame has {list(pdf.columns)}")
        s = pdf[self.column]
        present = s.notna().to_numpy(dtype=bool)
        if self.op == "is null":
            return pd.Series(~present, index=pdf.index)
        if self.op == "is not null":
            return pd.Series(present, index=pdf.index)
        out = np.zeros(len(s), dtype=bool)
        if present.any():
            vals = _comparable(s[present], self.value)
            out[present] = _apply_op(vals, self.op, self.value)
        return pd.Series(out, index=pdf.index)

    def view(self, kind: Kind | None = None) -> View:
        """This predicate's per-column view (interval for ordered kinds, set otherwise)."""
        ordered = kind.ordered if kind is not None else _looks_ordered(self)
        if self.op == "is null":
            return Interval(null_only=True) if ordered else CategorySet(null_only=True)
        if self.op == "is not null":
            return Interval() if ordered else CategorySet()
        v = self.value
        if not ordered:
            if self.op in ("=", "in"):
                return CategorySet(frozenset(v if isinstance(v, tuple) else (v,)))
            if self.op in ("!=", "not in"):
                return CategorySet(None, frozenset(v if isinstance(v, tuple) else (v,)))
            return CategorySet()
        if self.op == "<":
            return Interval(high=v, high_closed=False)
        if self.op == "<=":
            return Interval(high=v, high_closed=True)
        if self.op == ">":
            return Interval(low=v, low_closed=False)
        if self.op == ">=":
            return Interval(low=v, low_closed=True)
        if self.op == "=":
            return Interval(v, v, True, True)
        if self.op == "!=":
            return Interval(excluded=frozenset((v,)))
        if self.op == "in":
            assert isinstance(v, tuple)
            lo, hi = min(v, key=_sort_key), max(v, key=_sort_key)
            return Interval(lo, hi, True, True)
        assert isinstance(v, tuple)
        return Interval(excluded=frozenset(v))


def _looks_ordered(p: Predicate) -> bool:
    if p.op in _ORDERING:
        return True
    v = p.value[0] if isinstance(p.value, tuple) else p.value
    return isinstance(v, (int, float, dt.date)) and not isinstance(v, bool)


def _sort_key(v: Any) -> tuple[int, Any]:
    if isinstance(v, bool):
        return (0, v)
    if isinstance(v, (int, float)):
        return (1, v)
    if isinstance(v, dt.datetime):
        return (3, v)
    if isinstance(v, dt.date):
        return (2, v)
    return (4, str(v))


def _json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return {"timestamp": v.isoformat()}
    if isinstance(v, dt.date):
        return {"date": v.isoformat()}
    return v


def _from_json_value(v: Any) -> Scalar:
    if isinstance(v, Mapping):
        if "timestamp" in v:
            return parse_timestamp(str(v["timestamp"]))
        if "date" in v:
            return dt.date.fromisoformat(str(v["date"]))
        raise RuleError(f"unsupported JSON value {v!r}; use a number, string, boolean or date")
    return check_scalar(v)


def _comparable(s: pd.Series, value: Value) -> np.ndarray:
    """The non-null values of `s` in the representation Spark compares them in."""
    probe = value[0] if isinstance(value, tuple) else value
    if isinstance(probe, bool):
        return s.astype(bool).to_numpy()
    if isinstance(probe, (int, float)):
        if pd.api.types.is_bool_dtype(s.dtype):
            return s.astype("int64").to_numpy()
        if pd.api.types.is_integer_dtype(s.dtype):
            allint = all(
                isinstance(x, int) for x in (value if isinstance(value, tuple) else (value,))
            )
            if allint:
                return s.astype("int64").to_numpy()
        if pd.api.types.is_numeric_dtype(s.dtype):
            return s.astype("float64").to_numpy()
        return pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
    if isinstance(probe, (dt.datetime, dt.date)):
        ts = pd.to_datetime(s, errors="coerce")
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        return ts.to_numpy()
    return s.astype(object).to_numpy()


def _as_cmp(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)) and not isinstance(value, bool):
        return np.datetime64(pd.Timestamp(value).to_datetime64())
    return value


def _apply_op(vals: np.ndarray, op: str, value: Value) -> np.ndarray:
    if op in SET_OPS:
        assert isinstance(value, tuple)
        members = [_as_cmp(v) for v in value]
        hit = np.zeros(len(vals), dtype=bool)
        for m in members:
            hit |= _eq(vals, m)
        return hit if op == "in" else ~hit
    v = _as_cmp(value)
    if op == "=":
        return _eq(vals, v)
    if op == "!=":
        return ~_eq(vals, v)
    try:
        if op == "<":
            return np.asarray(vals < v, dtype=bool)
        if op == "<=":
            return np.asarray(vals <= v, dtype=bool)
        if op == ">":
            return np.asarray(vals > v, dtype=bool)
        return np.asarray(vals >= v, dtype=bool)
    except TypeError as err:
        raise RuleError(f"cannot compare values with {literal_text(value)}: {err}") from None  # type: ignore[arg-type]


def _eq(vals: np.ndarray, v: Any) -> np.ndarray:
    if vals.dtype == object:
        return np.fromiter((x == v for x in vals), dtype=bool, count=len(vals))
    return np.asarray(vals == v, dtype=bool)


# ----------------------------------------------------------------------------------------------
# Conjunction and Rule
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conjunction:
    """AND of predicates; the empty conjunction matches every row."""

    predicates: tuple[Predicate, ...] = ()

    def __post_init__(self) -> None:
        preds = tuple(dict.fromkeys(self.predicates))
        preds = tuple(sorted(preds, key=lambda p: (p.column, _OP_RANK[p.op], p.to_text())))
        object.__setattr__(self, "predicates", preds)

    def and_(self, *more: Predicate | Conjunction) -> Conjunction:
        extra: list[Predicate] = []
        for m in more:
            extra.extend(m.predicates if isinstance(m, Conjunction) else (m,))
        return Conjunction(self.predicates + tuple(extra))

    def columns(self) -> set[str]:
        return {p.column for p in self.predicates}

    def to_text(self) -> str:
        return " and ".join(p.to_text() for p in self.predicates) if self.predicates else "true"

    def to_json(self) -> dict[str, Any]:
        return {"all": [p.to_json() for p in self.predicates]}

    def to_column(self) -> Column:
        if not self.predicates:
            return F.lit(True)
        cols = [p.to_column() for p in self.predicates]
        out = cols[0]
        for c in cols[1:]:
            out = out & c
        return out

    def mask(self, pdf: pd.DataFrame) -> pd.Series:
        out = np.ones(len(pdf), dtype=bool)
        for p in self.predicates:
            out &= p.mask(pdf).to_numpy(dtype=bool)
        return pd.Series(out, index=pdf.index)

    def bounds(self, kinds: Mapping[str, Kind] | None = None) -> dict[str, View]:
        """Per-column views: what each mentioned column may hold for a row to match."""
        views: dict[str, View] = {}
        for p in self.predicates:
            kind = kinds.get(p.column) if kinds else None
            v = p.view(kind)
            cur = views.get(p.column)
            if cur is None:
                views[p.column] = v
            elif (merged := merge_views(cur, v, "intersect")) is not None:
                views[p.column] = merged
        return views

    def is_contradiction(self) -> bool:
        return self.simplify() is None

    def simplify(self) -> Conjunction | None:
        """Merge redundant bounds; None when no row can match."""
        by_col: dict[str, list[Predicate]] = {}
        for p in self.predicates:
            by_col.setdefault(p.column, []).append(p)
        out: list[Predicate] = []
        for col, preds in by_col.items():
            merged = _simplify_column(col, preds)
            if merged is None:
                return None
            out.extend(merged)
        return Conjunction(tuple(out))


def _simplify_column(col: str, preds: list[Predicate]) -> list[Predicate] | None:
    ops = {p.op for p in preds}
    if "is null" in ops:
        return None if ops - {"is null"} else [Predicate(col, "is null")]
    others = [p for p in preds if p.op != "is not null"]
    if not others:
        return [Predicate(col, "is not null")]
    try:
        low: tuple[Any, bool] | None = None  # (value, closed)
        high: tuple[Any, bool] | None = None
        members: set[Any] | None = None
        excluded: set[Any] = set()
        for p in others:
            v = p.value
            if p.op in (">", ">="):
                closed = p.op == ">="
                if low is None or less_than(low[0], v) or (low[0] == v and not closed):
                    low = (v, closed)
            elif p.op in ("<", "<="):
                closed = p.op == "<="
                if high is None or less_than(v, high[0]) or (high[0] == v and not closed):
                    high = (v, closed)
            elif p.op in ("=", "in"):
                vals = set(v) if isinstance(v, tuple) else {v}
                members = vals if members is None else members & vals
            else:
                excluded |= set(v) if isinstance(v, tuple) else {v}
        iv = Interval(
            low[0] if low else None,
            high[0] if high else None,
            low[1] if low else False,
            high[1] if high else False,
        )
        if members is not None:
            kept = sorted(
                (m for m in members if m not in excluded and iv.contains(m)), key=_sort_key
            )
            if not kept:
                return None
            if len(kept) == 1:
                return [Predicate(col, "=", kept[0])]
            return [Predicate(col, "in", tuple(kept))]
        if iv.is_empty():
            return None
        out: list[Predicate] = []
        if low and high and low[0] == high[0]:
            if low[0] in excluded:
                return None
            return [Predicate(col, "=", low[0])]
        if low:
            out.append(Predicate(col, ">=" if low[1] else ">", low[0]))
        if high:
            out.append(Predicate(col, "<=" if high[1] else "<", high[0]))
        ex = sorted((e for e in excluded if iv.contains(e)), key=_sort_key)
        if len(ex) == 1:
            out.append(Predicate(col, "!=", ex[0]))
        elif ex:
            out.append(Predicate(col, "not in", tuple(ex)))
        return out
    except TypeError:
        # Mixed literal types on one column cannot be merged; keep them as written.
        return list(preds)


@dataclass(frozen=True)
class Rule:
    """A DGR condition in disjunctive normal form: OR of conjunctions. No conjunction = FALSE."""

    conjunctions: tuple[Conjunction, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "conjunctions", tuple(dict.fromkeys(self.conjunctions)))

    @staticmethod
    def true() -> Rule:
        return Rule((Conjunction(),))

    @staticmethod
    def false() -> Rule:
        return Rule(())

    @staticmethod
    def of(*predicates: Predicate) -> Rule:
        return Rule((Conjunction(tuple(predicates)),))

    def or_(self, other: Rule | Conjunction) -> Rule:
        extra = other.conjunctions if isinstance(other, Rule) else (other,)
        return Rule(tuple(dict.fromkeys(self.conjunctions + extra)))

    def and_(self, other: Rule | Conjunction | Predicate) -> Rule:
        if isinstance(other, Predicate):
            other = Conjunction((other,))
        rhs = other.conjunctions if isinstance(other, Rule) else (other,)
        terms = tuple(dict.fromkeys(a.and_(b) for a in self.conjunctions for b in rhs))
        if len(terms) > _MAX_DNF_TERMS:
            raise RuleError(f"rule expands to {len(terms)} OR-terms (limit {_MAX_DNF_TERMS})")
        return Rule(terms)

    def columns(self) -> set[str]:
        return (
            set().union(*(c.columns() for c in self.conjunctions)) if self.conjunctions else set()
        )

    def is_true(self) -> bool:
        return any(not c.predicates for c in self.conjunctions)

    def to_text(self) -> str:
        if not self.conjunctions:
            return "false"
        if len(self.conjunctions) == 1:
            return self.conjunctions[0].to_text()
        parts = []
        for c in self.conjunctions:
            t = c.to_text()
            parts.append(f"({t})" if len(c.predicates) > 1 else t)
        return " or ".join(parts)

    def __str__(self) -> str:
        return self.to_text()

    def to_json(self) -> dict[str, Any]:
        return {"any": [c.to_json() for c in self.conjunctions]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @staticmethod
    def from_json(d: Mapping[str, Any] | str, kinds: Mapping[str, Kind] | None = None) -> Rule:
        if isinstance(d, str):
            try:
                d = json.loads(d)
            except json.JSONDecodeError as err:
                raise RuleError(
                    f"rule JSON is malformed: {err.msg} at position {err.pos}"
                ) from None
        if not isinstance(d, Mapping) or not isinstance(d.get("any"), list):
            raise RuleError('rule JSON must look like {"any": [{"all": [predicate, ...]}, ...]}')
        conjs = []
        for c in d["any"]:
            if not isinstance(c, Mapping) or not isinstance(c.get("all"), list):
                raise RuleError('each conjunction in rule JSON must look like {"all": [...]}')
            conjs.append(Conjunction(tuple(Predicate.from_json(p, kinds) for p in c["all"])))
        return Rule(tuple(conjs))

    def bind(self, kinds: Mapping[str, Kind]) -> Rule:
        return Rule(
            tuple(
                Conjunction(tuple(p.bind(kinds) for p in c.predicates)) for c in self.conjunctions
            )
        )

    def to_column(self) -> Column:
        """Boolean Spark column, never null (SQL null comparisons count as no match)."""
        if not self.conjunctions:
            return F.lit(False)
        out = self.conjunctions[0].to_column()
        for c in self.conjunctions[1:]:
            out = out | c.to_column()
        return F.coalesce(out, F.lit(False))

    def mask(self, pdf: pd.DataFrame) -> pd.Series:
        out = np.zeros(len(pdf), dtype=bool)
        for c in self.conjunctions:
            out |= c.mask(pdf).to_numpy(dtype=bool)
        return pd.Series(out, index=pdf.index)

    def simplify(self) -> Rule:
        """Drop contradictory and absorbed conjunctions, merge bounds inside each."""
        kept = [s for c in self.conjunctions if (s := c.simplify()) is not None]
        kept = list(dict.fromkeys(kept))
        sets = [set(c.predicates) for c in kept]
        out = [
            c
            for i, c in enumerate(kept)
            if not any(j != i and sets[j] < sets[i] for j in range(len(kept)))
        ]
        return Rule(tuple(out))

    def bounds(self, kinds: Mapping[str, Kind] | None = None) -> dict[str, View]:
        """Per-column hull over the conjunctions: every matching row lies inside these views.
        A column left unconstrained by any conjunction is absent."""
        if not self.conjunctions:
            return {}
        per = [c.bounds(kinds) for c in self.conjunctions]
        common = set(per[0]).intersection(*per[1:])
        out: dict[str, View] = {}
        for col in sorted(common):
            acc = per[0][col]
            ok = True
            for b in per[1:]:
                merged = merge_views(acc, b[col], "hull")
                if merged is not None:
                    acc = merged
                else:
                    ok = False
                    break
            if ok:
                out[col] = acc
        return out
