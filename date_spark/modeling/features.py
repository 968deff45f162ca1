"""One feature encoder for every stage: discovery, generation and evaluation see the same matrix.

A model trained in discovery must score generated rows and test rows the same way, and a tree split
must translate back into an exact rule predicate. So the encoding is fixed by the schema and the
category domains, is plain data (picklable, JSON-able) and works on pandas frames inside UDFs:

- numeric: float64, NaN for null (Spark's NaN counts as null, as in `date_spark.rules`);
- boolean: 0.0 / 1.0, NaN for null;
- date: days since 1970-01-01; timestamp: seconds since 1970-01-01 (naive, as Arrow delivers it);
- categorical: the value's position in the sorted domain (0..K-1); null and values outside the
  domain are NaN. A threshold on a code column is therefore a *set* of domain values, which
  `date_spark.modeling.trees` writes back as an exact ``=`` / ``in`` / ``not in`` predicate.

The target is not part of the matrix; `target()` returns it as labels (classification) or floats.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from date_spark.errors import InputError
from date_spark.schema import Kind, TableSchema

__all__ = [
    "DEFAULT_MAX_CATEGORIES",
    "EPOCH_DATE",
    "EPOCH_DATETIME",
    "EncodedFeature",
    "FeatureEncoder",
    "numeric_values",
]

EPOCH_DATE = dt.date(1970, 1, 1)
EPOCH_DATETIME = dt.datetime(1970, 1, 1)
DEFAULT_MAX_CATEGORIES = 64


@dataclass(frozen=True)
class EncodedFeature:
    """One matrix column: its source column, kind and (categorical only) the code -> value list."""

    name: str
    kind: Kind
    integral: bool = False
    categories: tuple[str, ...] = ()


class FeatureEncoder:
    """Turns the feature columns of a pandas frame into a float64 matrix (see the module doc)."""

    def __init__(self, features: Sequence[EncodedFeature], target: str, task: str) -> None:
        self.features: tuple[EncodedFeature, ...] = tuple(features)
        self.target_name = target
        self.task = task
        self._index = {f.name: i for i, f in enumerate(self.features)}
        self._codes = {
            f.name: {v: i for i, v in enumerate(f.categories)}
            for f in self.features
            if f.kind is Kind.CATEGORICAL
        }

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        schema: TableSchema,
        domains: Mapping[str, Iterable[Any]] | None = None,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
    ) -> FeatureEncoder:
        """Encoder for `schema`'s features. `domains` maps each categorical column to its values,
        most frequent first: the first `max_categories` are kept (the rest encode as NaN, like
        nulls), then sorted so codes follow the value order."""
        domains = domains or {}
        feats = []
        for spec in schema.features:
            cats: tuple[str, ...] = ()
            if spec.kind is Kind.CATEGORICAL:
                seen: dict[str, None] = {}
                for v in domains.get(spec.name, ()):
                    if v is None or (isinstance(v, float) and np.isnan(v)):
                        continue
                    seen.setdefault(str(v), None)
                    if len(seen) >= max_categories:
                        break
                cats = tuple(sorted(seen))
            feats.append(EncodedFeature(spec.name, spec.kind, spec.integral, cats))
        return cls(feats, schema.target, schema.task)

    @classmethod
    def from_pandas(
        cls, schema: TableSchema, pdf: pd.DataFrame, max_categories: int = DEFAULT_MAX_CATEGORIES
    ) -> FeatureEncoder:
        """Fit the domains from a frame (a sample is enough: unseen values encode as NaN)."""
        domains: dict[str, list[Any]] = {}
        for spec in schema.features:
            if spec.kind is Kind.CATEGORICAL:
                if spec.name not in pdf.columns:
                    raise InputError(f"column {spec.name!r} is missing from the frame")
                counts = pdf[spec.name].dropna().astype(str).value_counts()
                # Most frequent first; ties by value so the domain is deterministic.
                ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                domains[spec.name] = [k for k, _ in ordered]
        return cls.fit(schema, domains, max_categories)

    # -- views -----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.features) if f.kind is Kind.CATEGORICAL]

    @property
    def kinds(self) -> dict[str, Kind]:
        return {f.name: f.kind for f in self.features}

    def index(self, name: str) -> int:
        return self._index[name]

    def __len__(self) -> int:
        return len(self.features)

    # -- encoding --------------------------------------------------------------------------------
    def transform(self, pdf: pd.DataFrame) -> np.ndarray:
        """The (n_rows, n_features) float64 matrix; NaN marks null and unknown categories."""
        missing = [f.name for f in self.features if f.name not in pdf.columns]
        if missing:
            raise InputError(f"columns {missing} are missing from the frame to encode")
        out = np.empty((len(pdf), len(self.features)), dtype=np.float64)
        for j, f in enumerate(self.features):
            out[:, j] = self._column(f, pdf[f.name])
        return out

    def _column(self, f: EncodedFeature, s: pd.Series) -> np.ndarray:
        if f.kind is Kind.NUMERIC:
            return numeric_values(s)
        if f.kind is Kind.BOOLEAN:
            if pd.api.types.is_bool_dtype(s.dtype):
                return s.to_numpy(dtype=np.float64)
            present = s.notna().to_numpy()
            vals = np.full(len(s), np.nan)
            vals[present] = s[present].astype(bool).to_numpy(dtype=np.float64)
            return vals
        if f.kind is Kind.CATEGORICAL:
            codes = self._codes[f.name]
            if not codes:
                return np.full(len(s), np.nan)
            cat = pd.Categorical(s.astype(object).where(s.notna(), None), categories=f.categories)
            c = np.asarray(cat.codes, dtype=np.float64)
            c[c < 0] = np.nan
            return c
        ts = pd.to_datetime(s, errors="coerce")
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        ns = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
        ns[ts.isna().to_numpy()] = np.nan
        if f.kind is Kind.DATE:
            return np.floor(ns / 86_400e9)
        return ns / 1e9

    def target(self, pdf: pd.DataFrame) -> np.ndarray:
        """Labels as they are (classification) or float64 values (regression)."""
        s = pdf[self.target_name]
        if self.task == "regression":
            return numeric_values(s)
        return s.to_numpy()

    # -- decoding (used by trees.py to write predicates) ----------------------------------------
    def value(self, j: int, x: float) -> Any:
        """The column value that encodes as `x` (a threshold back in the column's own terms)."""
        f = self.features[j]
        if f.kind is Kind.NUMERIC:
            if f.integral and float(x).is_integer():
                return int(x)
            return float(x)
        if f.kind is Kind.BOOLEAN:
            return bool(x >= 0.5)
        if f.kind is Kind.DATE:
            return EPOCH_DATE + dt.timedelta(days=int(np.floor(x)))
        if f.kind is Kind.TIMESTAMP:
            return EPOCH_DATETIME + dt.timedelta(microseconds=round(float(x) * 1e6))
        return f.categories[int(x)]

    # -- persistence -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target_name,
            "task": self.task,
            "features": [
                {
                    "name": f.name,
                    "kind": f.kind.value,
                    "integral": f.integral,
                    "categories": list(f.categories),
                }
                for f in self.features
            ],
        }

    @staticmethod
    def from_json(d: Mapping[str, Any] | str) -> FeatureEncoder:
        if isinstance(d, str):
            d = json.loads(d)
        assert isinstance(d, Mapping)
        feats = [
            EncodedFeature(
                f["name"],
                Kind(f["kind"]),
                bool(f.get("integral", False)),
                tuple(f.get("categories", ())),
            )
            for f in d["features"]
        ]
        return FeatureEncoder(feats, d["target"], d["task"])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FeatureEncoder)
            and self.features == other.features
            and self.target_name == other.target_name
            and self.task == other.task
        )

    def __hash__(self) -> int:
        return hash((self.features, self.target_name, self.task))

    def __repr__(self) -> str:
        return f"FeatureEncoder({len(self.features)} features, target={self.target_name!r})"


def numeric_values(s: pd.Series) -> np.ndarray:
    """A column as float64 with NaN for null (nullable ints, decimals and objects included)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
