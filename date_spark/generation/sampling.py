"""The driver's view of the data before it asks: the partition sample, example rows, typed
domains and the questions of a round."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from date_spark.columns import named_col
from date_spark.config import Config
from date_spark.generation.fields import DGR_COL
from date_spark.io.split import SPLIT_COL, TRAIN, row_uniform
from date_spark.rules import Rule
from date_spark.schema import Kind, TableSchema

__all__ = [
    "Question",
    "ThinSegment",
    "free_text_in",
    "partition_sample",
    "prompt_budget",
    "stratified_examples",
    "typed_domains",
    "typed_frame",
]


def typed_domains(
    spark_df: DataFrame, schema: TableSchema, max_values: int = 50
) -> tuple[dict[str, list[Any]], dict[str, tuple[Any, Any]]]:
    """Domains of low-cardinality columns and ranges of ordered ones, over training rows only
    (one aggregation job)."""
    aggs = []
    for c in schema.columns:
        col = named_col(c.name)
        if c.kind.ordered:
            aggs += [F.min(col).alias(f"min::{c.name}"), F.max(col).alias(f"max::{c.name}")]
        elif c.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
            aggs.append(F.slice(F.collect_set(col), 1, max_values + 1).alias(f"set::{c.name}"))
    row = spark_df.agg(*aggs).first()
    assert row is not None
    domains: dict[str, list[Any]] = {}
    ranges: dict[str, tuple[Any, Any]] = {}
    for c in schema.columns:
        if c.kind.ordered:
            ranges[c.name] = (row[f"min::{c.name}"], row[f"max::{c.name}"])
        elif c.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
            vals = row[f"set::{c.name}"]
            if len(vals) <= max_values:
                domains[c.name] = sorted(vals, key=lambda v: (str(type(v)), v))
    return domains, ranges


def free_text_in(sample: pd.DataFrame, schema: TableSchema, max_chars: int) -> set[str]:
    """Categorical feature columns of `sample` with a value longer than `max_chars` or holding a
    control character (a line break): free text (see `io.free_text_columns`)."""
    out = set()
    for c in schema.features:
        if c.kind is not Kind.CATEGORICAL or c.name not in sample:
            continue
        text = sample[c.name].dropna().astype(str)
        if len(text) and (
            int(text.str.len().max()) > max_chars or bool(text.str.contains(r"[\x00-\x1f]").any())
        ):
            out.add(c.name)
    return out


def partition_sample(routed: DataFrame, dgr_ids: Sequence[str], cap: int, seed: int) -> DataFrame:
    """Up to about `cap` training + validation rows per DGR, drawn in one pass."""
    counts = {
        r[DGR_COL]: int(r["count"])
        for r in routed.where(F.col(DGR_COL).isin(*dgr_ids)).groupBy(DGR_COL).count().collect()
    }
    frac = None
    for d in dgr_ids:
        f = min(1.0, cap / max(1, counts.get(d, 0)))
        frac = (
            F.when(F.col(DGR_COL) == d, F.lit(f))
            if frac is None
            else frac.when(F.col(DGR_COL) == d, F.lit(f))
        )
    assert frac is not None
    draw = row_uniform(routed.columns, seed)
    return routed.where(F.col(DGR_COL).isin(*dgr_ids)).where(draw < frac.otherwise(0.0))


def stratified_examples(
    sample: pd.DataFrame, target: str, per_block: int, seed: int
) -> dict[str, pd.DataFrame]:

    out: dict[str, pd.DataFrame] = {}
    train = sample[sample[SPLIT_COL] == TRAIN]
    for dgr, g in train.groupby(DGR_COL, sort=True):
        if per_block <= 0:
            out[str(dgr)] = g.iloc[:0]
            continue
        parts = [
            lg.sample(
                n=min(len(lg), max(1, per_block // max(1, g[target].nunique()))), random_state=seed
            )
            for _, lg in g.groupby(target, sort=True)
        ]
        out[str(dgr)] = pd.concat(parts).sample(frac=1.0, random_state=seed).head(per_block)
    return out


@dataclass(frozen=True)
class ThinSegment:
    """A thin segment discovery left to the global model, prompted like a DGR; its rows are
    scored in the rest partition."""

    rule_id: str
    rule: Rule
    support: int
    val_error: float = float("nan")


@dataclass(frozen=True)
class Question:
    dgr_id: str
    index: int
    rule: Rule


def prompt_budget(cfg: Config) -> int:
    """`generation.prompt_token_budget`, capped for the embedded local model by what its context
    window leaves after the answer (`llm.local.n_ctx - llm.max_tokens`)."""
    budget = cfg.generation.prompt_token_budget
    if cfg.uses_embedded_model:
        budget = min(budget, max(256, cfg.llm.local.n_ctx - cfg.llm.max_tokens))
    return budget


def typed_frame(pdf: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """JSON carries dates and timestamps as ISO text; give them back their types (whole
    numbers as exact nullable Int64, built from `pdf`'s object values, never through float64)."""
    from date_spark.generation.interpolation import exact_ints

    for spec in schema.columns:
        if spec.name not in pdf.columns:
            continue
        if spec.kind is Kind.NUMERIC and spec.integral and pdf[spec.name].dtype == object:
            pdf[spec.name] = exact_ints(pdf[spec.name])
        elif spec.kind is Kind.NUMERIC and pdf[spec.name].dtype == object:
            pdf[spec.name] = pd.to_numeric(pdf[spec.name])
        elif spec.kind is Kind.DATE:
            pdf[spec.name] = pd.to_datetime(pdf[spec.name], errors="coerce").dt.date
        elif spec.kind is Kind.TIMESTAMP:
            pdf[spec.name] = pd.to_datetime(pdf[spec.name], errors="coerce")
    return pdf.infer_objects()
