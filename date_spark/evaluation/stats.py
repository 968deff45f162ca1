"""Pass 1 of an evaluation: counts, ranges, quantiles and correlations of both tables in one
aggregation over their union."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from date_spark.columns import named_col
from date_spark.evaluation.settings import EvaluationSettings
from date_spark.evaluation.tables import as_float, numeric_col
from date_spark.schema import ColumnSpec

_CORR_PAIRS_PER_JOB = 60


@dataclass
class Stats:
    rows: int
    non_null: dict[str, int]
    lo: dict[str, float | None]
    hi: dict[str, float | None]
    quantiles: dict[str, list[float]]
    corr: dict[tuple[str, str], float | None]


def first_pass(
    real: DataFrame,
    syn: DataFrame,
    cont: Sequence[ColumnSpec],
    disc: Sequence[ColumnSpec],
    st: EvaluationSettings,
    corr_pairs: Sequence[tuple[int, int]] | None = None,
) -> tuple[Stats, Stats]:
    """Both sides in one aggregation over their union (each aggregate sees one side's rows).
    Correlations ride along up to `_CORR_PAIRS_PER_JOB` pairs; a wide table's remaining pairs go
    in further jobs of that size, so no plan grows with the square of the column count."""
    # One array literal (numpy -> one JVM Literal): a Python list becomes one expression node per
    # level, and 10 columns x 1001 levels of nodes cost seconds of analysis.
    levels = F.lit(np.linspace(0.0, 1.0, st.ks_grid_levels, dtype=np.float64))
    names = [s.name for s in (*cont, *disc)]
    both = real.select(F.lit(0).alias("_side"), *[named_col(n) for n in names]).unionByName(
        syn.select(F.lit(1).alias("_side"), *[named_col(n) for n in names])
    )
    pairs = (
        list(corr_pairs)
        if corr_pairs is not None
        else [(i, j) for i in range(len(cont)) for j in range(i + 1, len(cont))]
    )
    chunks = [pairs[i : i + _CORR_PAIRS_PER_JOB] for i in range(0, len(pairs), _CORR_PAIRS_PER_JOB)]

    def side(c: Column, k: int) -> Column:
        return F.when(F.col("_side") == k, c)

    def corr_aggs(chunk: Sequence[tuple[int, int]]) -> list[Column]:
        return [
            F.corr(side(numeric_col(cont[i]), k), side(numeric_col(cont[j]), k)).alias(
                f"c{i}_{j}_{k}"
            )
            for k in (0, 1)
            for i, j in chunk
        ]

    aggs: list[Column] = []
    for k in (0, 1):
        aggs.append(F.count(side(F.lit(1), k)).alias(f"rows_{k}"))
        for i, s in enumerate(cont):
            x = side(numeric_col(s), k)
            aggs += [
                F.count(x).alias(f"n{i}_{k}"),
                F.min(x).alias(f"lo{i}_{k}"),
                F.max(x).alias(f"hi{i}_{k}"),
                F.percentile_approx(x, levels, st.quantile_accuracy).alias(f"q{i}_{k}"),
            ]
        for i, s in enumerate(disc):
            aggs.append(F.count(side(named_col(s.name), k)).alias(f"d{i}_{k}"))
    row = both.agg(*aggs, *(corr_aggs(chunks[0]) if chunks else [])).first()
    assert row is not None
    corr_rows = [row] if chunks else []
    for chunk in chunks[1:]:
        more = both.agg(*corr_aggs(chunk)).first()
        assert more is not None
        corr_rows.append(more)
    out = []
    for k in (0, 1):
        o = Stats(int(row[f"rows_{k}"]), {}, {}, {}, {}, {})
        for i, s in enumerate(cont):
            o.non_null[s.name] = int(row[f"n{i}_{k}"])
            o.lo[s.name] = as_float(row[f"lo{i}_{k}"])
            o.hi[s.name] = as_float(row[f"hi{i}_{k}"])
            o.quantiles[s.name] = [float(v) for v in (row[f"q{i}_{k}"] or []) if v is not None]
        for i, s in enumerate(disc):
            o.non_null[s.name] = int(row[f"d{i}_{k}"])
        for chunk, crow in zip(chunks, corr_rows, strict=True):
            for i, j in chunk:
                o.corr[(cont[i].name, cont[j].name)] = as_float(crow[f"c{i}_{j}_{k}"])
        out.append(o)
    return out[0], out[1]


__all__: list[str] = []
