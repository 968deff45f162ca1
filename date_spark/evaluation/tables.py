"""The tables an evaluation reads, made comparable: the schema (given or inferred), its columns
cast to its types, ordered columns as numbers, discrete ones as text, and capped samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from date_spark.columns import RESERVED_PREFIX, SYNTHETIC, named_col, quoted
from date_spark.errors import InputError
from date_spark.io.read import AUTO_CLASSIFICATION_MAX_DISTINCT
from date_spark.schema import ColumnSpec, Kind, TableSchema, column_specs


def only_synthetic(df: DataFrame) -> DataFrame:
    """The synthetic rows of a job's output: an `augmented` output also holds the input rows
    (`_date_synthetic = false`), which must not count as synthetic; its partition column
    `run_date` is provenance, not data."""
    if SYNTHETIC not in df.columns:
        return df
    out = df.where(F.col(SYNTHETIC))
    return out.drop("run_date") if "run_date" in df.columns else out


def infer_schema(real: DataFrame, target: str | None = None) -> TableSchema:
    """The schema `evaluate` needs when no job supplied one. The target (optional) only decides
    whether a numeric label counts as discrete: it does when every value is whole and there are at
    most 20 of them, the job's own task detection."""
    specs = column_specs(real.schema)
    if not target:
        return TableSchema(specs, "", "none")
    names = [s.name for s in specs]
    if target not in names:
        raise InputError(
            f"target column {target!r} is not in the real table; columns are: {', '.join(names)}"
        )
    spec = next(s for s in specs if s.name == target)
    if spec.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
        return TableSchema(specs, target, "classification")
    if spec.kind is not Kind.NUMERIC:
        return TableSchema(specs, target, "regression")
    y = named_col(target).cast("double")
    row = real.agg(
        F.approx_count_distinct(y).alias("d"),
        F.count(F.when(y != F.floor(y), 1)).alias("frac"),
    ).first()
    assert row is not None
    few = int(row["d"]) <= AUTO_CLASSIFICATION_MAX_DISTINCT and int(row["frac"]) == 0
    return TableSchema(specs, target, "classification" if few else "regression")


def is_discrete(spec: ColumnSpec, schema: TableSchema) -> bool:
    if spec.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
        return True
    return spec.name == schema.target and schema.task == "classification"


def unit_of(spec: ColumnSpec) -> str:
    if spec.kind is Kind.DATE:
        return "days since 1970-01-01"
    if spec.kind is Kind.TIMESTAMP:
        return "seconds since 1970-01-01"
    return "value"


def numeric_col(spec: ColumnSpec) -> Column:
    """An ordered column as a double (dates as days, timestamps as seconds since the epoch)."""
    c = named_col(spec.name)
    if spec.kind is Kind.DATE:
        return F.unix_date(c).cast("double")
    if spec.kind is Kind.TIMESTAMP:
        return F.unix_micros(c.cast("timestamp")).cast("double") / F.lit(1e6)
    if spec.kind is Kind.BOOLEAN:
        return c.cast("int").cast("double")
    return c.cast("double")


def discrete_col(spec: ColumnSpec) -> Column:
    return named_col(spec.name).cast("string")


@dataclass(frozen=True)
class Alignment:
    frame: DataFrame  # the table with the schema's present columns, cast to the schema's types
    missing: list[str]
    extra: list[str]
    mismatches: dict[str, str]


def try_cast_column(name: str, spark_type: str) -> Column:
    # try_cast: a value that does not fit becomes null instead of failing the job (ANSI mode).
    return F.expr(f"try_cast({quoted(name)} AS {spark_type})")


def cast_to(spec: ColumnSpec, have: str, source: str | None = None) -> Column:
    """Column `source` (default: the spec's own name) as the spec's type, NaN as null."""
    name = source or spec.name
    c = named_col(name) if have == spec.spark_type else try_cast_column(name, spec.spark_type)
    if spec.spark_type in ("double", "float"):
        c = F.when(F.isnan(c), F.lit(None)).otherwise(c)
    return c


def _align(df: DataFrame, schema: TableSchema, what: str, keep: Sequence[str] = ()) -> Alignment:
    """Select the schema's columns in its order, cast to its types, NaN as null."""
    fields = {f.name: f for f in df.schema.fields}
    missing = [s.name for s in schema.columns if s.name not in fields]
    extra = [
        n
        for n in fields
        if n not in schema.kinds and n not in keep and not n.lower().startswith(RESERVED_PREFIX)
    ]
    mismatches: dict[str, str] = {}
    cols: list[Column] = []
    for s in schema.columns:
        if s.name not in fields:
            continue
        have = fields[s.name].dataType.simpleString()
        if have != s.spark_type:
            mismatches[s.name] = f"{have} -> {s.spark_type}"
        cols.append(cast_to(s, have).alias(s.name))
    if not cols:
        raise InputError(
            f"the {what} table shares no column with the real table; real columns are: "
            f"{', '.join(schema.names)}"
        )
    extras = [named_col(k).alias(k) for k in keep if k in fields]
    return Alignment(df.select(*cols, *extras), missing, extra, mismatches)


@dataclass(frozen=True)
class Aligned:
    """Both tables on the columns the synthetic one shares with the schema, cast to its types."""

    real: DataFrame
    syn: DataFrame
    align: Alignment  # the synthetic table's: what it lacks, adds or types otherwise
    shared: list[ColumnSpec]
    sub: TableSchema  # the schema on the shared columns
    cont: list[ColumnSpec]  # ordered columns (KS, correlation, distances)
    disc: list[ColumnSpec]  # discrete columns (TV, contingency, mismatches)


def aligned(
    real: DataFrame, synthetic: DataFrame, schema: TableSchema, rule_column: str | None
) -> Aligned:
    real_a = _align(real, schema, "real").frame
    align = _align(synthetic, schema, "synthetic", keep=[rule_column] if rule_column else [])
    shared = [s for s in schema.columns if s.name not in align.missing]
    sub = TableSchema(tuple(shared), schema.target, schema.task, schema.classes)
    syn_a = align.frame.select(*[named_col(s.name) for s in shared])
    real_a = real_a.select(*[named_col(s.name) for s in shared])
    cont = [s for s in shared if not is_discrete(s, schema)]
    disc = [s for s in shared if is_discrete(s, schema)]
    return Aligned(real_a, syn_a, align, shared, sub, cont, disc)


def align_reference(df: DataFrame, schema: TableSchema, what: str) -> DataFrame:
    a = _align(df, schema, what)
    if a.missing:
        raise InputError(
            f"the {what} table lacks column {a.missing[0]!r} of the real table; pass rows with "
            f"the same columns"
        )
    return a.frame


def sample_table(df: DataFrame, rows: int, cap: int, seed: int) -> DataFrame:
    """At most about `cap` rows (Bernoulli), the whole frame when it is small enough."""
    if rows <= cap:
        return df
    return df.sample(withReplacement=False, fraction=min(1.0, cap / rows), seed=seed)


def mean_of(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def as_float(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


__all__ = [
    "Aligned",
    "Alignment",
    "align_reference",
    "aligned",
    "as_float",
    "cast_to",
    "discrete_col",
    "infer_schema",
    "is_discrete",
    "mean_of",
    "numeric_col",
    "only_synthetic",
    "sample_table",
    "try_cast_column",
    "unit_of",
]
