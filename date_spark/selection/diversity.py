"""How alike two arms' rules are: the diversity half of selection's utility (`search.py`).

Overlap of two rules is the product over the columns either constrains of the per-column overlap
ratio (`Interval.overlap_ratio` / `CategorySet.overlap_ratio` of the `Rule.bounds` views, measured
inside the table's domain; a column only one rule constrains is compared with the whole domain).
Disjoint on any column -> 0, identical -> 1, nested boxes -> the ratio of their volumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from date_spark.rules import CategorySet, Interval, Rule, View
from date_spark.schema import Kind
from date_spark.selection.result import Arm

__all__ = ["diversity", "infer_domains", "rule_overlap"]


def _full_like(other: View, domain: View | None) -> View:
    """The view of a column a rule leaves unconstrained: the whole domain."""
    if domain is not None and type(domain) is type(other):
        return domain
    return Interval() if isinstance(other, Interval) else CategorySet()


def _view_overlap(a: View | None, b: View | None, domain: View | None) -> float:
    if a is None and b is None:
        return 1.0
    if a is None:
        assert b is not None
        a = _full_like(b, domain)
    if b is None:
        b = _full_like(a, domain)
    if isinstance(a, Interval) and isinstance(b, Interval):
        return a.overlap_ratio(b, domain if isinstance(domain, Interval) else None)
    if isinstance(a, CategorySet) and isinstance(b, CategorySet):
        dom = domain.values() if isinstance(domain, CategorySet) else None
        return a.overlap_ratio(b, dom)
    return 1.0  # views of different kinds cannot be compared: no diversity credit


def rule_overlap(
    a: Rule,
    b: Rule,
    *,
    kinds: Mapping[str, Kind] | None = None,
    domains: Mapping[str, View] | None = None,
) -> float:
    """Predicate overlap of two rules in [0, 1]: the product of per-column overlap ratios over the
    columns either rule constrains (0 when disjoint on any column, 1 when identical)."""
    va, vb = a.bounds(kinds), b.bounds(kinds)
    out = 1.0
    for col in sorted(set(va) | set(vb)):
        dom = domains.get(col) if domains else None
        out *= _view_overlap(va.get(col), vb.get(col), dom)
        if out <= 0.0:
            return 0.0
    return float(min(1.0, max(0.0, out)))


def diversity(
    rule: Rule,
    selected: Sequence[Rule],
    *,
    kinds: Mapping[str, Kind] | None = None,
    domains: Mapping[str, View] | None = None,
) -> float:
    """``1 - max overlap`` with the selected rules; 1 when nothing is selected."""
    if not selected:
        return 1.0
    return 1.0 - max(rule_overlap(rule, s, kinds=kinds, domains=domains) for s in selected)


def infer_domains(
    arms: Sequence[Arm],
    kinds: Mapping[str, Kind] | None = None,
    given: Mapping[str, View] | None = None,
) -> dict[str, View]:
    """Domains for the columns the arms' rules constrain and `given` lacks, from the arms' rows and
    rule constants: a stand-in when the caller has no table-wide domains (numeric and categorical
    columns only; other columns keep unbounded views)."""
    out: dict[str, View] = dict(given or {})
    views: dict[str, list[View]] = {}
    for arm in arms:
        for col, v in arm.rule.bounds(kinds).items():
            views.setdefault(col, []).append(v)
    for col, vs in views.items():
        if col in out:
            continue
        vals = [arm.rows[col].dropna() for arm in arms if col in arm.rows.columns and len(arm.rows)]
        series = pd.concat(vals, ignore_index=True) if vals else pd.Series([], dtype=object)
        if all(isinstance(v, Interval) for v in vs):
            points: list[float] = []
            if len(series) and pd.api.types.is_numeric_dtype(series) and series.dtype != bool:
                points += [float(series.min()), float(series.max())]
            for v in vs:
                assert isinstance(v, Interval)
                for p in (v.low, v.high):
                    if isinstance(p, (int, float)) and not isinstance(p, bool):
                        points.append(float(p))
            if points:
                out[col] = Interval(min(points), max(points), True, True)
        elif all(isinstance(v, CategorySet) for v in vs):
            values: set[Any] = set(series.tolist())
            for v in vs:
                assert isinstance(v, CategorySet)
                values |= set(v.allowed or ()) | set(v.excluded)
            if values:
                out[col] = CategorySet(frozenset(values))
    return out
