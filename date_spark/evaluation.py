"""Evaluation of a synthetic table against the real one: fidelity, privacy and validity.

Works on any real/synthetic pair (the job's output, or two files through `date-spark evaluate`).
Every metric is a Spark aggregation; only aggregates and capped samples reach the driver.

Fidelity follows SDMetrics' Quality Report:
- Column shapes: KSComplement (1 - two-sample KS statistic) for numeric, date and timestamp columns;
  TVComplement (1 - total variation distance of category frequencies) for categorical and boolean
  columns and for a classification target. Missing values are ignored, as SDMetrics does.
  KS is evaluated at a grid made of `ks_grid_levels` approximate quantiles of each side
  (`percentile_approx`), each row counted into the grid by one pass (`mapInPandas`,
  `np.searchsorted`). The ECDFs are step functions whose largest gap sits at a data value, so the
  result is exact whenever the grid holds every distinct value (each side has fewer distinct values
  than levels: small tables); otherwise it may miss at most the mass between two grid points
  (about 1/levels per side). Full tables, no sample.
- Column pair trends: CorrelationSimilarity (1 - |r_real - r_synth| / 2, Pearson) for two
  continuous columns, from Spark's `corr` on the full tables (rows where either value is missing are
  left out; SDMetrics fills them with 0, which distorts the correlation); undefined (None, left out
  of the mean) when a column is constant, as in SDMetrics. ContingencySimilarity (1 - TVD of the
  normalised joint frequency tables, missing values as one more category) for every other pair,
  with continuous columns cut into `contingency_bins` equal-width bins of the real column's range
  (np.histogram semantics; synthetic values outside the range fall into one "below" or "above"
  bin). Computed on a sample of about `pair_sample_rows` rows per side (Bernoulli sample, the
  whole table when it is smaller; fewer when rows x pairs would pass `pair_sample_cells`), because
  it explodes every sampled row into every pair.
- Overall: the mean of the column-shapes score and the pair-trends score.

Privacy:
- Exact copies: synthetic rows equal to a training row on every column (null-safe join), on the
  full tables.
- DCR (distance to closest record): per column, |a - b| / (real max - real min) capped at 1 for
  ordered columns and 0/1 mismatch for discrete ones (missing vs missing 0, missing vs value 1);
  the row distance is the mean over columns. Measured from a sample of at most `dcr_query_rows`
  synthetic rows, and as many holdout rows, to a sample of at most `dcr_reference_rows` training
  rows (numpy on the driver, chunked).
- `too_close` (None without a holdout) is true when either test fires, see `FLAG_RULE`.

Validity: share of rows satisfying the rule in their rule column, schema adherence, category
adherence and boundary adherence (SDMetrics' CategoryAdherence and BoundaryAdherence).

Cost: about seven Spark jobs (statistics, grid counts, category counts, contingency, validity,
copies join, DCR samples), each over the union of both sides; more only for very wide tables.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from date_spark.columns import RESERVED_PREFIX, RULE, SYNTHETIC, named_col, quoted
from date_spark.errors import InputError, RuleError
from date_spark.io import AUTO_CLASSIFICATION_MAX_DISTINCT
from date_spark.rules import Rule, parse_rule
from date_spark.schema import ColumnSpec, Kind, TableSchema, column_specs
from date_spark.spark import to_pandas

log = logging.getLogger(__name__)

RULE_COLUMN = RULE
FLAG_RULE = (
    "too_close = tail OR copies. tail: q = 5th percentile of DCR(holdout sample -> training "
    "sample); a = share of synthetic sample rows with DCR <= q, b = the same share for the holdout "
    "sample; fires when a - b > max(0.05, 3*sqrt(b(1-b)(1/n_synthetic + 1/n_holdout))). copies: "
    "c_s = exact-copy rate of the synthetic table, c_h = the holdout's (rows equal to a training "
    "row); fires when c_s - c_h > max(0.05, 3*sqrt(c_h(1-c_h)(1/N_synthetic + 1/N_holdout)))."
)
_RAW_PREFIX = RESERVED_PREFIX + "eval_raw_"
_FLAG_FLOOR = 0.05
_CORR_PAIRS_PER_JOB = 60
_FLAG_Z = 3.0


@dataclass(frozen=True)
class EvaluationSettings:
    """Accuracy and sample caps; the defaults keep a 10M-row evaluation to a few passes."""

    ks_grid_levels: int = 1001
    quantile_accuracy: int = 10_000
    plot_bins: int = 30
    plot_top_categories: int = 20
    contingency_bins: int = 10
    pair_sample_rows: int = 100_000
    pair_sample_cells: int = 20_000_000  # rows x pairs exploded per side, at most
    max_pairs: int = 2_000  # column pairs scored for pair trends (a seeded sample beyond)
    dcr_reference_rows: int = 20_000
    dcr_query_rows: int = 1_000
    max_rules: int = 1_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ks_grid_levels < 2 or self.plot_bins < 1 or self.contingency_bins < 1:
            raise ValueError("ks_grid_levels >= 2, plot_bins >= 1 and contingency_bins >= 1")
        if min(self.pair_sample_rows, self.dcr_reference_rows, self.dcr_query_rows) < 1:
            raise ValueError("sample caps must be positive")
        if self.max_pairs < 1:
            raise ValueError("sample caps must be positive")


# ----------------------------------------------------------------------------------------------
# Result objects
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnShape:
    column: str
    metric: str  # "KSComplement" | "TVComplement"
    score: float | None
    real_non_null: int
    synthetic_non_null: int


@dataclass(frozen=True)
class PairTrend:
    column_1: str
    column_2: str
    metric: str  # "CorrelationSimilarity" | "ContingencySimilarity"
    score: float | None
    real_correlation: float | None = None
    synthetic_correlation: float | None = None


@dataclass(frozen=True)
class Distribution:
    """What the report plots for one column: shares of non-null values per bin or category."""

    column: str
    kind: str  # "continuous" | "discrete"
    unit: str  # "value", "days since 1970-01-01", "seconds since 1970-01-01", "category"
    labels: list[str]
    real: list[float]
    synthetic: list[float]
    edges: list[float] | None = None
    real_other: float = 0.0  # discrete: share of the categories not plotted
    synthetic_other: float = 0.0
    real_null: float = 0.0  # share of rows that are missing
    synthetic_null: float = 0.0


@dataclass(frozen=True)
class Fidelity:
    column_shapes: list[ColumnShape]
    pair_trends: list[PairTrend]
    column_shapes_score: float | None
    column_pair_trends_score: float | None
    overall: float | None
    contingency_sample_rows: dict[str, int]
    pairs_total: int = 0  # column pairs of the table; more than `len(pair_trends)` when sampled


@dataclass(frozen=True)
class DcrStats:
    rows: int
    p05: float
    median: float
    mean: float
    zero_share: float


@dataclass(frozen=True)
class Privacy:
    exact_copies: int
    exact_copy_rate: float
    holdout_exact_copy_rate: float | None
    reference_rows: int
    dcr_synthetic: DcrStats | None
    dcr_holdout: DcrStats | None
    holdout_p05: float | None
    synthetic_share_within_p05: float | None
    holdout_share_within_p05: float | None
    too_close: bool | None
    reason: str
    rule: str = FLAG_RULE


@dataclass(frozen=True)
class RuleCheck:
    rule: str
    rows: int
    satisfied: int
    error: str | None = None


@dataclass(frozen=True)
class Validity:
    rule_column: str | None
    rule_rows: int
    rule_satisfied: int
    rule_share: float | None
    rows_without_rule: int
    rules: list[RuleCheck]
    rules_truncated: bool
    missing_columns: list[str]
    extra_columns: list[str]
    type_mismatches: dict[str, str]
    uncastable_values: dict[str, int]
    castable_rows: int
    schema_adherence: float
    category_adherence: dict[str, float | None]
    category_adherence_score: float | None
    boundary_adherence: dict[str, float | None]
    boundary_adherence_score: float | None


@dataclass
class EvaluationResult:
    real_rows: int
    synthetic_rows: int
    columns: list[str]
    target: str
    task: str
    fidelity: Fidelity
    privacy: Privacy
    validity: Validity
    distributions: list[Distribution]
    settings: EvaluationSettings
    seconds: float = 0.0
    utility: dict[str, float] | None = None  # filled by the paper-protocol evaluation

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (NaN becomes None)."""
        return _json_safe(asdict(self))

    def metrics(self) -> dict[str, float]:
        """Flat `section.name -> value` for MLflow; None values are left out."""
        f, p, v = self.fidelity, self.privacy, self.validity
        out: dict[str, float | bool | None] = {
            "fidelity.overall": f.overall,
            "fidelity.column_shapes": f.column_shapes_score,
            "fidelity.column_pair_trends": f.column_pair_trends_score,
            "privacy.exact_copy_rate": p.exact_copy_rate,
            "privacy.exact_copies": p.exact_copies,
            "privacy.holdout_exact_copy_rate": p.holdout_exact_copy_rate,
            "privacy.too_close": p.too_close,
            "validity.rule_share": v.rule_share,
            "validity.schema_adherence": v.schema_adherence,
            "validity.category_adherence": v.category_adherence_score,
            "validity.boundary_adherence": v.boundary_adherence_score,
            "rows.real": self.real_rows,
            "rows.synthetic": self.synthetic_rows,
        }
        for name, stats in (("synthetic", p.dcr_synthetic), ("holdout", p.dcr_holdout)):
            if stats is not None:
                out[f"privacy.dcr_{name}_median"] = stats.median
                out[f"privacy.dcr_{name}_p05"] = stats.p05
        for s in f.column_shapes:
            out[f"fidelity.shape.{_metric_key(s.column)}"] = s.score
        for key, value in (self.utility or {}).items():
            out[f"utility.{_metric_key(key)}"] = value
        return {
            k: float(val)
            for k, val in out.items()
            if val is not None and not (isinstance(val, float) and math.isnan(val))
        }


def _metric_key(name: str) -> str:
    # MLflow accepts letters, digits, _ - . space : / in metric names.
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", name)[:200]


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _json_safe(v.item())
    return v


# ----------------------------------------------------------------------------------------------
# Schema of a pair of files
# ----------------------------------------------------------------------------------------------


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


def _is_discrete(spec: ColumnSpec, schema: TableSchema) -> bool:
    if spec.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
        return True
    return spec.name == schema.target and schema.task == "classification"


def _unit(spec: ColumnSpec) -> str:
    if spec.kind is Kind.DATE:
        return "days since 1970-01-01"
    if spec.kind is Kind.TIMESTAMP:
        return "seconds since 1970-01-01"
    return "value"


def _num(spec: ColumnSpec) -> Column:
    """An ordered column as a double (dates as days, timestamps as seconds since the epoch)."""
    c = named_col(spec.name)
    if spec.kind is Kind.DATE:
        return F.unix_date(c).cast("double")
    if spec.kind is Kind.TIMESTAMP:
        return F.unix_micros(c.cast("timestamp")).cast("double") / F.lit(1e6)
    if spec.kind is Kind.BOOLEAN:
        return c.cast("int").cast("double")
    return c.cast("double")


def _disc(spec: ColumnSpec) -> Column:
    return named_col(spec.name).cast("string")


@dataclass(frozen=True)
class _Alignment:
    frame: DataFrame  # the table with the schema's present columns, cast to the schema's types
    missing: list[str]
    extra: list[str]
    mismatches: dict[str, str]


def _try_cast(name: str, spark_type: str) -> Column:
    # try_cast: a value that does not fit becomes null instead of failing the job (ANSI mode).
    return F.expr(f"try_cast({quoted(name)} AS {spark_type})")


def _cast_to(spec: ColumnSpec, have: str, source: str | None = None) -> Column:
    """Column `source` (default: the spec's own name) as the spec's type, NaN as null."""
    name = source or spec.name
    c = named_col(name) if have == spec.spark_type else _try_cast(name, spec.spark_type)
    if spec.spark_type in ("double", "float"):
        c = F.when(F.isnan(c), F.lit(None)).otherwise(c)
    return c


def _align(df: DataFrame, schema: TableSchema, what: str, keep: Sequence[str] = ()) -> _Alignment:
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
        cols.append(_cast_to(s, have).alias(s.name))
    if not cols:
        raise InputError(
            f"the {what} table shares no column with the real table; real columns are: "
            f"{', '.join(schema.names)}"
        )
    extras = [named_col(k).alias(k) for k in keep if k in fields]
    return _Alignment(df.select(*cols, *extras), missing, extra, mismatches)


# ----------------------------------------------------------------------------------------------
# Pass 1: counts, ranges, quantiles, correlations (one aggregation over both sides)
# ----------------------------------------------------------------------------------------------


@dataclass
class _Stats:
    rows: int
    non_null: dict[str, int]
    lo: dict[str, float | None]
    hi: dict[str, float | None]
    quantiles: dict[str, list[float]]
    corr: dict[tuple[str, str], float | None]


def _stats(
    real: DataFrame,
    syn: DataFrame,
    cont: Sequence[ColumnSpec],
    disc: Sequence[ColumnSpec],
    st: EvaluationSettings,
    corr_pairs: Sequence[tuple[int, int]] | None = None,
) -> tuple[_Stats, _Stats]:
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
            F.corr(side(_num(cont[i]), k), side(_num(cont[j]), k)).alias(f"c{i}_{j}_{k}")
            for k in (0, 1)
            for i, j in chunk
        ]

    aggs: list[Column] = []
    for k in (0, 1):
        aggs.append(F.count(side(F.lit(1), k)).alias(f"rows_{k}"))
        for i, s in enumerate(cont):
            x = side(_num(s), k)
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
        o = _Stats(int(row[f"rows_{k}"]), {}, {}, {}, {}, {})
        for i, s in enumerate(cont):
            o.non_null[s.name] = int(row[f"n{i}_{k}"])
            o.lo[s.name] = _float(row[f"lo{i}_{k}"])
            o.hi[s.name] = _float(row[f"hi{i}_{k}"])
            o.quantiles[s.name] = [float(v) for v in (row[f"q{i}_{k}"] or []) if v is not None]
        for i, s in enumerate(disc):
            o.non_null[s.name] = int(row[f"d{i}_{k}"])
        for chunk, crow in zip(chunks, corr_rows, strict=True):
            for i, j in chunk:
                o.corr[(cont[i].name, cont[j].name)] = _float(crow[f"c{i}_{j}_{k}"])
        out.append(o)
    return out[0], out[1]


def _float(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


# ----------------------------------------------------------------------------------------------
# Pass 2: grid counts for KS and histograms for the plots (one mapInPandas pass over both sides)
# ----------------------------------------------------------------------------------------------


_HIST_SCHEMA = "side int, col int, kind int, bucket int, n long"


def _hist_fn(
    grids: Sequence[np.ndarray], edges: Sequence[np.ndarray]
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Per partition: counts per grid interval (x in (g[i-1], g[i]]) and per plot bin."""

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        acc: dict[tuple[int, int, int], np.ndarray] = {}
        for pdf in batches:
            side = pdf["_side"].to_numpy()
            for s in (0, 1):
                rows = side == s
                if not rows.any():
                    continue
                for j in range(len(grids)):
                    x = pdf[f"c{j}"].to_numpy(dtype="float64", na_value=np.nan)[rows]
                    x = x[~np.isnan(x)]
                    if not len(x):
                        continue
                    g = np.bincount(
                        np.searchsorted(grids[j], x, side="left"), minlength=len(grids[j]) + 1
                    )
                    h = np.histogram(x, bins=edges[j])[0]
                    for kind, counts in ((0, g), (1, h)):
                        key = (s, j, kind)
                        acc[key] = acc[key] + counts if key in acc else counts.astype(np.int64)
        out: dict[str, list[int]] = {"side": [], "col": [], "kind": [], "bucket": [], "n": []}
        for (s, j, kind), counts in acc.items():
            nz = np.flatnonzero(counts)
            out["side"] += [s] * len(nz)
            out["col"] += [j] * len(nz)
            out["kind"] += [kind] * len(nz)
            out["bucket"] += nz.tolist()
            out["n"] += counts[nz].tolist()
        yield pd.DataFrame(
            {
                "side": np.asarray(out["side"], dtype=np.int32),
                "col": np.asarray(out["col"], dtype=np.int32),
                "kind": np.asarray(out["kind"], dtype=np.int32),
                "bucket": np.asarray(out["bucket"], dtype=np.int32),
                "n": np.asarray(out["n"], dtype=np.int64),
            }
        )

    return fn


def _plot_edges(lo: float | None, hi: float | None, bins: int) -> np.ndarray:
    if lo is None or hi is None:
        return np.array([0.0, 1.0])
    if hi <= lo:
        return np.array([lo - 0.5, lo + 0.5])
    return np.linspace(lo, hi, bins + 1)


def _continuous(
    real: DataFrame,
    syn: DataFrame,
    cont: Sequence[ColumnSpec],
    rs: _Stats,
    ss: _Stats,
    st: EvaluationSettings,
) -> tuple[list[ColumnShape], list[Distribution]]:
    if not cont:
        return [], []
    grids, edges = [], []
    for s in cont:
        grids.append(np.unique(np.asarray(rs.quantiles[s.name] + ss.quantiles[s.name], float)))
        los = [v for v in (rs.lo[s.name], ss.lo[s.name]) if v is not None]
        his = [v for v in (rs.hi[s.name], ss.hi[s.name]) if v is not None]
        edges.append(
            _plot_edges(min(los) if los else None, max(his) if his else None, st.plot_bins)
        )

    def side(df: DataFrame, k: int) -> DataFrame:
        return df.select(
            F.lit(k).alias("_side"), *[_num(s).alias(f"c{j}") for j, s in enumerate(cont)]
        )

    counts = (
        side(real, 0)
        .unionByName(side(syn, 1))
        .mapInPandas(_hist_fn(grids, edges), _HIST_SCHEMA)
        .groupBy("side", "col", "kind", "bucket")
        .agg(F.sum("n").alias("n"))
        .collect()
    )
    arrays: dict[tuple[int, int, int], np.ndarray] = {}
    for j in range(len(cont)):
        for sd in (0, 1):
            arrays[(sd, j, 0)] = np.zeros(len(grids[j]) + 1, dtype=np.int64)
            arrays[(sd, j, 1)] = np.zeros(len(edges[j]) - 1, dtype=np.int64)
    for r in counts:
        arrays[(int(r["side"]), int(r["col"]), int(r["kind"]))][int(r["bucket"])] += int(r["n"])

    shapes, dists = [], []
    for j, s in enumerate(cont):
        gr, gs = arrays[(0, j, 0)], arrays[(1, j, 0)]
        nr, ns = int(gr.sum()), int(gs.sum())
        score = None
        if nr and ns:
            ks = float(np.max(np.abs(np.cumsum(gr) / nr - np.cumsum(gs) / ns)))
            score = 1.0 - ks
        shapes.append(ColumnShape(s.name, "KSComplement", score, nr, ns))
        hr, hs = arrays[(0, j, 1)], arrays[(1, j, 1)]
        e = edges[j]
        dists.append(
            Distribution(
                column=s.name,
                kind="continuous",
                unit=_unit(s),
                labels=[f"{e[i]:.4g}..{e[i + 1]:.4g}" for i in range(len(e) - 1)],
                real=(hr / max(nr, 1)).tolist(),
                synthetic=(hs / max(ns, 1)).tolist(),
                edges=[float(v) for v in e],
                real_null=1 - nr / rs.rows if rs.rows else 0.0,
                synthetic_null=1 - ns / ss.rows if ss.rows else 0.0,
            )
        )
    return shapes, dists


# ----------------------------------------------------------------------------------------------
# Pass 3: category frequencies, TVD and category adherence (one groupBy over both sides)
# ----------------------------------------------------------------------------------------------


def _explode_discrete(df: DataFrame, side: int, disc: Sequence[ColumnSpec]) -> DataFrame:
    arr = F.array(
        *[F.struct(F.lit(j).alias("col"), _disc(s).alias("value")) for j, s in enumerate(disc)]
    )
    return df.select(F.lit(side).alias("side"), F.explode(arr).alias("e")).select(
        "side", "e.col", "e.value"
    )


def _discrete(
    real: DataFrame,
    syn: DataFrame,
    disc: Sequence[ColumnSpec],
    rs: _Stats,
    ss: _Stats,
    st: EvaluationSettings,
) -> tuple[list[ColumnShape], list[Distribution], dict[str, float | None]]:
    if not disc:
        return [], [], {}
    nr_arr = F.array(*[F.lit(float(max(rs.non_null[s.name], 1))) for s in disc])
    ns_arr = F.array(*[F.lit(float(max(ss.non_null[s.name], 1))) for s in disc])
    counts = (
        _explode_discrete(real, 0, disc)
        .unionByName(_explode_discrete(syn, 1, disc))
        .where(F.col("value").isNotNull())
        .groupBy("col", "value")
        .agg(
            F.sum(F.when(F.col("side") == 0, 1).otherwise(0)).alias("r"),
            F.sum(F.when(F.col("side") == 1, 1).otherwise(0)).alias("s"),
        )
    )
    idx = F.col("col") + 1
    pr = F.col("r") / F.element_at(nr_arr, idx)
    ps = F.col("s") / F.element_at(ns_arr, idx)
    by_col = Window.partitionBy("col")
    ranked = Window.partitionBy("col").orderBy(F.desc(F.col("r") + F.col("s")), F.asc("value"))
    rows = (
        counts.select(
            "col",
            "value",
            pr.alias("pr"),
            ps.alias("ps"),
            (F.sum(F.abs(pr - ps)).over(by_col) / 2).alias("tvd"),
            F.sum(F.when(F.col("r") == 0, F.col("s")).otherwise(0)).over(by_col).alias("ood"),
            F.row_number().over(ranked).alias("rn"),
        )
        .where(F.col("rn") <= st.plot_top_categories)
        .collect()
    )
    per_col: dict[int, list[Any]] = {}
    for r in rows:
        per_col.setdefault(int(r["col"]), []).append(r)
    shapes, dists = [], []
    adherence: dict[str, float | None] = {}
    for j, s in enumerate(disc):
        nr, ns = rs.non_null[s.name], ss.non_null[s.name]
        items = sorted(per_col.get(j, []), key=lambda r: int(r["rn"]))
        score = None
        ood = 0
        if items:
            ood = int(items[0]["ood"])
            if nr and ns:
                score = 1.0 - float(items[0]["tvd"])
        shapes.append(ColumnShape(s.name, "TVComplement", score, nr, ns))
        real_nulls, syn_nulls = rs.rows - nr, ss.rows - ns
        # SDMetrics' CategoryAdherence: a missing value adheres when the real column has some.
        ok = (ns - ood) + (syn_nulls if real_nulls > 0 else 0)
        adherence[s.name] = ok / ss.rows if ss.rows else None
        real_shares = [float(r["pr"]) if nr else 0.0 for r in items]
        syn_shares = [float(r["ps"]) if ns else 0.0 for r in items]
        dists.append(
            Distribution(
                column=s.name,
                kind="discrete",
                unit="category",
                labels=[str(r["value"]) for r in items],
                real=real_shares,
                synthetic=syn_shares,
                real_other=max(0.0, 1.0 - sum(real_shares)) if nr else 0.0,
                synthetic_other=max(0.0, 1.0 - sum(syn_shares)) if ns else 0.0,
                real_null=real_nulls / rs.rows if rs.rows else 0.0,
                synthetic_null=syn_nulls / ss.rows if ss.rows else 0.0,
            )
        )
    return shapes, dists, adherence


# ----------------------------------------------------------------------------------------------
# Pair trends
# ----------------------------------------------------------------------------------------------


def _sample(df: DataFrame, rows: int, cap: int, seed: int) -> DataFrame:
    """At most about `cap` rows (Bernoulli), the whole frame when it is small enough."""
    if rows <= cap:
        return df
    return df.sample(withReplacement=False, fraction=min(1.0, cap / rows), seed=seed)


def _bin_expr(spec: ColumnSpec, lo: float | None, hi: float | None, bins: int) -> Column:
    """Equal-width bin of the real range as text: 0..bins-1, 'below', 'above' or null."""
    x = _num(spec)
    if lo is None or hi is None:
        return F.when(x.isNotNull(), F.lit("0"))
    if hi <= lo:
        b = F.when(x < lo, F.lit("below")).when(x > hi, F.lit("above")).otherwise(F.lit("0"))
        return F.when(x.isNotNull(), b)
    width = (hi - lo) / bins
    idx = F.floor(
        F.least(F.greatest((x - F.lit(lo)) / F.lit(width), F.lit(0.0)), F.lit(bins - 1.0))
    )
    b = (
        F.when(x < lo, F.lit("below"))
        .when(x > hi, F.lit("above"))
        .otherwise(idx.cast("int").cast("string"))
    )
    return F.when(x.isNotNull(), b)


def choose_pairs(
    shared: Sequence[ColumnSpec], st: EvaluationSettings
) -> tuple[list[tuple[ColumnSpec, ColumnSpec]], int]:
    """The column pairs pair trends score, in table order, and how many pairs the table has.
    Pairs grow with the square of the columns (44,850 at 300): beyond `max_pairs`, a seeded
    uniform sample of them, so the mean score is estimated without bias and the jobs and plans
    stay bounded."""
    n = len(shared)
    total = n * (n - 1) // 2
    if total <= st.max_pairs:
        return [(shared[i], shared[j]) for i in range(n) for j in range(i + 1, n)], total
    rng = np.random.default_rng(st.seed + 31)
    flat = np.sort(rng.choice(total, size=st.max_pairs, replace=False))
    # flat index k -> (i, j), i < j, in the row-major order of the upper triangle
    starts = np.array([i * n - i * (i + 1) // 2 for i in range(n)])
    rows = np.searchsorted(starts, flat, side="right") - 1
    cols = flat - starts[rows] + rows + 1
    return [(shared[int(i)], shared[int(j)]) for i, j in zip(rows, cols, strict=True)], total


def _pair_trends(
    real: DataFrame,
    syn: DataFrame,
    schema: TableSchema,
    shared: Sequence[ColumnSpec],
    rs: _Stats,
    ss: _Stats,
    st: EvaluationSettings,
    chosen: Sequence[tuple[ColumnSpec, ColumnSpec]] | None = None,
) -> tuple[list[PairTrend], dict[str, int]]:
    discrete = {s.name: _is_discrete(s, schema) for s in shared}
    out: dict[tuple[str, str], PairTrend] = {}
    corr_pairs, contingency_pairs = [], []
    if chosen is None:
        chosen = [(a, b) for i, a in enumerate(shared) for b in shared[i + 1 :]]
    for a, b in chosen:
        if discrete[a.name] or discrete[b.name]:
            contingency_pairs.append((a, b))
        else:
            corr_pairs.append((a, b))
    for a, b in corr_pairs:
        constant = any(
            st_.lo[c.name] is None or st_.lo[c.name] == st_.hi[c.name]
            for st_ in (rs, ss)
            for c in (a, b)
        )
        cr = rs.corr.get((a.name, b.name))
        cs = ss.corr.get((a.name, b.name))
        score = None
        if not constant and cr is not None and cs is not None:
            score = 1.0 - abs(cr - cs) / 2
        out[(a.name, b.name)] = PairTrend(a.name, b.name, "CorrelationSimilarity", score, cr, cs)

    sample_rows = {"real": 0, "synthetic": 0}
    if contingency_pairs:

        def key(spec: ColumnSpec) -> Column:
            if discrete[spec.name]:
                return _disc(spec)
            return _bin_expr(spec, rs.lo[spec.name], rs.hi[spec.name], st.contingency_bins)

        def exploded(df: DataFrame, side: int) -> DataFrame:
            used = [s for s in shared if any(s in p for p in contingency_pairs)]
            keyed = df.select(*[key(s).alias(f"k{i}") for i, s in enumerate(used)])
            pos = {s.name: i for i, s in enumerate(used)}
            arr = F.array(
                *[
                    F.struct(
                        F.lit(p).alias("pair"),
                        F.col(f"k{pos[a.name]}").alias("a"),
                        F.col(f"k{pos[b.name]}").alias("b"),
                    )
                    for p, (a, b) in enumerate(contingency_pairs)
                ]
            )
            return keyed.select(F.lit(side).alias("side"), F.explode(arr).alias("e")).select(
                "side", "e.pair", "e.a", "e.b"
            )

        cap = min(st.pair_sample_rows, max(1_000, st.pair_sample_cells // len(contingency_pairs)))
        rsamp = _sample(real, rs.rows, cap, st.seed)
        ssamp = _sample(syn, ss.rows, cap, st.seed + 1)
        joint = (
            exploded(rsamp, 0)
            .unionByName(exploded(ssamp, 1))
            .groupBy("pair", "a", "b")
            .agg(
                F.sum(F.when(F.col("side") == 0, 1).otherwise(0)).alias("r"),
                F.sum(F.when(F.col("side") == 1, 1).otherwise(0)).alias("s"),
            )
        )
        w = Window.partitionBy("pair")
        nr, ns = F.sum("r").over(w), F.sum("s").over(w)
        shares = joint.select(
            "pair",
            F.when(nr > 0, F.col("r") / nr).otherwise(0.0).alias("pr"),
            F.when(ns > 0, F.col("s") / ns).otherwise(0.0).alias("ps"),
            nr.alias("nr"),
            ns.alias("ns"),
        )
        scores = (
            shares.groupBy("pair")
            .agg(
                (F.sum(F.abs(F.col("pr") - F.col("ps"))) / 2).alias("tvd"),
                F.max("nr").alias("nr"),
                F.max("ns").alias("ns"),
            )
            .collect()
        )
        for r in scores:
            a, b = contingency_pairs[int(r["pair"])]
            ok = int(r["nr"]) > 0 and int(r["ns"]) > 0
            score = 1.0 - float(r["tvd"]) if ok else None
            out[(a.name, b.name)] = PairTrend(a.name, b.name, "ContingencySimilarity", score)
            sample_rows = {"real": int(r["nr"]), "synthetic": int(r["ns"])}
    contingency = set(contingency_pairs)
    ordered = [
        out.get((a.name, b.name))
        or PairTrend(
            a.name,
            b.name,
            "ContingencySimilarity" if (a, b) in contingency else "CorrelationSimilarity",
            None,
        )
        for a, b in chosen
    ]
    return ordered, sample_rows


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


# ----------------------------------------------------------------------------------------------
# Validity: schema, boundaries, rules (one aggregation over the raw synthetic table)
# ----------------------------------------------------------------------------------------------


def _parse_any(text: str, kinds: Mapping[str, Kind]) -> Rule:
    if text.lstrip().startswith("{"):
        return Rule.from_json(text, kinds)
    return parse_rule(text, kinds)


def _validity(
    synthetic: DataFrame,
    schema: TableSchema,
    align: _Alignment,
    shared: Sequence[ColumnSpec],
    cont: Sequence[ColumnSpec],
    rs: _Stats,
    rule_column: str | None,
    category_adherence: dict[str, float | None],
    st: EvaluationSettings,
) -> Validity:
    fields = {f.name: f.dataType.simpleString() for f in synthetic.schema.fields}
    raw = [f"{_RAW_PREFIX}{i}" for i in range(len(shared))]
    staged = synthetic.select(
        *[named_col(s.name).alias(raw[i]) for i, s in enumerate(shared)],
        *([named_col(rule_column).cast("string").alias(rule_column)] if rule_column else []),
    )
    frame = staged.select(
        *[_cast_to(s, fields[s.name], raw[i]).alias(s.name) for i, s in enumerate(shared)],
        *[F.col(r) for r in raw],
        *([named_col(rule_column)] if rule_column else []),
    )

    kinds = {s.name: s.kind for s in shared}
    rule_texts: list[tuple[str, int]] = []
    rows_without_rule = 0
    truncated = False
    if rule_column:
        rc = named_col(rule_column)
        grouped = (
            frame.groupBy(rc.alias("rule"))
            .count()
            .orderBy(F.col("rule").isNull().desc(), F.desc("count"), F.asc("rule"))
            .limit(st.max_rules + 2)
            .collect()
        )
        for r in grouped:
            if r["rule"] is None:
                rows_without_rule = int(r["count"])
            else:
                rule_texts.append((str(r["rule"]), int(r["count"])))
        truncated = len(rule_texts) > st.max_rules
        rule_texts = rule_texts[: st.max_rules]
    parsed: list[tuple[str, int, Rule | None, str | None]] = []
    for text, n in rule_texts:
        try:
            parsed.append((text, n, _parse_any(text, kinds), None))
        except RuleError as err:
            parsed.append((text, n, None, str(err)))

    uncast: list[Column] = []
    aggs: list[Column] = [F.count(F.lit(1)).alias("rows")]
    for i, s in enumerate(shared):
        # A value is uncastable when it is present but does not survive the cast (NaN -> null is
        # normalisation, so the check looks at the cast before it).
        cast = F.col(raw[i]) if fields[s.name] == s.spark_type else _try_cast(raw[i], s.spark_type)
        bad = F.col(raw[i]).isNotNull() & cast.isNull()
        uncast.append(bad)
        aggs.append(F.count(F.when(bad, 1)).alias(f"u{i}"))
    aggs.append(F.count(F.when(~reduce(lambda a, b: a | b, uncast), 1)).alias("castable"))
    for i, s in enumerate(cont):
        lo, hi = rs.lo[s.name], rs.hi[s.name]
        x = _num(s)
        inside = x.between(lo, hi) if lo is not None and hi is not None else F.lit(False)
        aggs += [F.count(x).alias(f"bn{i}"), F.count(F.when(inside, 1)).alias(f"bi{i}")]
    for k, (text, _, rule, _) in enumerate(parsed):
        if rule is not None:
            hit = (named_col(str(rule_column)) == F.lit(text)) & rule.to_column()
            aggs.append(F.count(F.when(hit, 1)).alias(f"r{k}"))
    row = frame.agg(*aggs).first()
    assert row is not None
    rows = int(row["rows"])
    uncastable = {s.name: int(row[f"u{i}"]) for i, s in enumerate(shared)}
    castable = int(row["castable"])
    present = len(shared) / len(schema.columns)
    schema_adherence = present * (castable / rows if rows else 0.0)
    boundary: dict[str, float | None] = {}
    for i, s in enumerate(cont):
        n = int(row[f"bn{i}"])
        boundary[s.name] = int(row[f"bi{i}"]) / n if n else None
    checks = [
        RuleCheck(text, n, int(row[f"r{k}"]) if rule is not None else 0, err)
        for k, (text, n, rule, err) in enumerate(parsed)
    ]
    rule_rows = sum(c.rows for c in checks)
    satisfied = sum(c.satisfied for c in checks)
    return Validity(
        rule_column=rule_column,
        rule_rows=rule_rows,
        rule_satisfied=satisfied,
        rule_share=satisfied / rule_rows if rule_rows else None,
        rows_without_rule=rows_without_rule,
        rules=checks,
        rules_truncated=truncated,
        missing_columns=align.missing,
        extra_columns=align.extra,
        type_mismatches=align.mismatches,
        uncastable_values={k: v for k, v in uncastable.items() if v},
        castable_rows=castable,
        schema_adherence=schema_adherence,
        category_adherence=category_adherence,
        category_adherence_score=_mean(list(category_adherence.values())),
        boundary_adherence=boundary,
        boundary_adherence_score=_mean(list(boundary.values())),
    )


# ----------------------------------------------------------------------------------------------
# Privacy
# ----------------------------------------------------------------------------------------------


def _packed(df: DataFrame, names: Sequence[str]) -> Column:
    """The row as one struct value: a join or a distinct keyed on it compares every column
    (null equal to null) through one expression, whatever the column count."""
    return F.struct(*[named_col(n).alias(f"c{i}") for i, n in enumerate(names)])


def exact_copies_frame(
    queries: Sequence[DataFrame], reference: DataFrame, names: Sequence[str]
) -> DataFrame:
    """`_tag, n, hits` per query table: its rows, and those equal to some reference row on every
    column (null equal to null). One join of the queries' union against the distinct reference
    rows, keyed on the packed row: Spark hashes it to place rows and compares the structs of a
    bucket to verify, so the plan holds one join key however wide the table is. (A condition of
    one `eqNullSafe` term per column made Catalyst's constraint inference grow with the
    columns: a 20-column evaluation ran the driver out of heap.)"""
    q = reduce(
        DataFrame.unionByName,
        [
            df.select(F.lit(t).alias("_tag"), _packed(df, names).alias("_row"))
            for t, df in enumerate(queries)
        ],
    )
    r = (
        reference.select(_packed(reference, names).alias("_ref"))
        .distinct()
        .withColumn("_hit", F.lit(1))
    )
    return (
        q.join(r, q["_row"].eqNullSafe(r["_ref"]), "left")
        .groupBy("_tag")
        .agg(F.count(F.lit(1)).alias("n"), F.count("_hit").alias("hits"))
    )


def _exact_copies(
    queries: Sequence[DataFrame], reference: DataFrame, names: Sequence[str]
) -> list[tuple[int, int]]:
    """(rows, exact copies of a reference row) for each query table, in one job."""
    got = {
        int(row["_tag"]): (int(row["n"]), int(row["hits"]))
        for row in exact_copies_frame(queries, reference, names).collect()
    }
    return [got.get(t, (0, 0)) for t in range(len(queries))]


def _samples(
    frames: Sequence[tuple[DataFrame, int, int]], cols: Sequence[Column], seed: int
) -> list[pd.DataFrame]:
    """At most `cap` random rows of each (frame, rows, cap), collected in one job: a Bernoulli
    pre-sample of about 1.2 x cap rows of each (small by construction), cut at the cap on the
    driver. No window and no filter over the union: a filter there (`row_number <= cap`) made
    Catalyst's constraint inference multiply the split's hash condition by every normalised
    column, and a 20-column evaluation ran the driver out of heap."""
    parts = []
    for t, (df, rows, cap) in enumerate(frames):
        part = _sample(df, rows, int(cap * 1.2) + 10, seed + t)
        parts.append(part.select(F.lit(t).alias("_tag"), *cols))
    pdf = to_pandas(reduce(DataFrame.unionByName, parts))
    rng = np.random.default_rng(seed + 100)
    out = []
    for t, (_, _, cap) in enumerate(frames):
        got = pdf[pdf["_tag"] == t].drop(columns="_tag")
        if len(got) > cap:
            got = got.iloc[np.sort(rng.choice(len(got), size=cap, replace=False))]
        out.append(got.reset_index(drop=True))
    return out


@dataclass(frozen=True)
class _Encoded:
    num: np.ndarray  # float64 (n, k_num), scaled by the real range, NaN = missing
    cat: np.ndarray  # int32 (n, k_cat), -1 = missing


def _encode(
    frames: Sequence[pd.DataFrame],
    cont: Sequence[ColumnSpec],
    disc: Sequence[ColumnSpec],
    lo: Mapping[str, float | None],
    hi: Mapping[str, float | None],
) -> list[_Encoded]:
    vocab: list[dict[str, int]] = []
    for j in range(len(disc)):
        values: set[str] = set()
        for f in frames:
            values.update(str(v) for v in f[f"d{j}"].dropna().unique())
        vocab.append({v: i for i, v in enumerate(sorted(values))})
    out = []
    for f in frames:
        n = len(f)
        num = np.empty((n, len(cont)), dtype=np.float64)
        for j, s in enumerate(cont):
            x = f[f"c{j}"].to_numpy(dtype="float64", na_value=np.nan)
            a, b = lo[s.name], hi[s.name]
            span = (b - a) if a is not None and b is not None and b > a else 1.0
            num[:, j] = (x - (a or 0.0)) / span
        cat = np.full((n, len(disc)), -1, dtype=np.int32)
        for j in range(len(disc)):
            col = f[f"d{j}"]
            mask = col.notna().to_numpy()
            cat[mask, j] = [vocab[j][str(v)] for v in col[mask]]
        out.append(_Encoded(num, cat))
    return out


def nearest_distances(query: _Encoded, reference: _Encoded, chunk: int = 256) -> np.ndarray:
    """Distance from each query row to its closest reference row: the mean over columns of the
    per-column distance (ordered: |a - b| on the range-scaled values, capped at 1; discrete: 0/1;
    missing vs missing 0, missing vs value 1)."""
    n_cols = query.num.shape[1] + query.cat.shape[1]
    nq, nr = query.num.shape[0], reference.num.shape[0]
    out = np.full(nq, np.nan)
    if nq == 0 or nr == 0 or n_cols == 0:
        return out
    rn_nan = np.isnan(reference.num)
    for start in range(0, nq, chunk):
        stop = min(nq, start + chunk)
        acc = np.zeros((stop - start, nr), dtype=np.float64)
        for j in range(query.num.shape[1]):
            a = query.num[start:stop, j][:, None]
            b = reference.num[:, j][None, :]
            an, bn = np.isnan(a), rn_nan[:, j][None, :]
            d = np.minimum(np.abs(a - b), 1.0)
            d = np.where(an | bn, np.where(an & bn, 0.0, 1.0), d)
            acc += d
        for j in range(query.cat.shape[1]):
            acc += query.cat[start:stop, j][:, None] != reference.cat[:, j][None, :]
        out[start:stop] = acc.min(axis=1) / n_cols
    return out


def _dcr_stats(d: np.ndarray) -> DcrStats | None:
    if not len(d):
        return None
    return DcrStats(
        rows=len(d),
        p05=float(np.quantile(d, 0.05)),
        median=float(np.median(d)),
        mean=float(np.mean(d)),
        zero_share=float(np.mean(d == 0)),
    )


def _exceeds(a: float, b: float, n_a: int, n_b: int) -> bool:
    """a - b beyond max(5 points, 3 standard errors of the difference under b)."""
    se = math.sqrt(max(b * (1 - b), 0.0) * (1 / max(n_a, 1) + 1 / max(n_b, 1)))
    return a - b > max(_FLAG_FLOOR, _FLAG_Z * se)


def _privacy(
    syn: DataFrame,
    syn_rows: int,
    train: DataFrame,
    train_rows: int,
    holdout: DataFrame | None,
    shared: Sequence[ColumnSpec],
    cont: Sequence[ColumnSpec],
    disc: Sequence[ColumnSpec],
    rs: _Stats,
    st: EvaluationSettings,
) -> Privacy:
    names = [s.name for s in shared]
    queries = [syn] + ([holdout] if holdout is not None else [])
    counted = _exact_copies(queries, train, names)
    copies = counted[0][1]
    copy_rate = copies / syn_rows if syn_rows else 0.0
    hold_rows = counted[1][0] if holdout is not None else 0
    hold_rate = counted[1][1] / hold_rows if hold_rows else None

    cols = [_num(s).alias(f"c{j}") for j, s in enumerate(cont)] + [
        _disc(s).alias(f"d{j}") for j, s in enumerate(disc)
    ]
    wanted = [(train, train_rows, st.dcr_reference_rows), (syn, syn_rows, st.dcr_query_rows)]
    if holdout is not None and hold_rows:
        wanted.append((holdout, hold_rows, st.dcr_query_rows))
    frames = _samples(wanted, cols, st.seed + 11)
    ref_pdf = frames[0]
    enc = _encode(frames, cont, disc, rs.lo, rs.hi)
    d_syn = nearest_distances(enc[1], enc[0])
    d_hold = nearest_distances(enc[2], enc[0]) if len(enc) > 2 else np.array([])
    dcr_syn, dcr_hold = _dcr_stats(d_syn), _dcr_stats(d_hold)

    too_close: bool | None = None
    q = a = b = None
    reason = "no holdout given: nothing to compare the synthetic rows with"
    if dcr_hold is not None and dcr_syn is not None and hold_rate is not None:
        q = float(np.quantile(d_hold, 0.05))
        a = float(np.mean(d_syn <= q))
        b = float(np.mean(d_hold <= q))
        tail = _exceeds(a, b, len(d_syn), len(d_hold))
        copy = _exceeds(copy_rate, hold_rate, syn_rows, hold_rows)
        too_close = tail or copy
        parts = []
        if tail:
            parts.append(
                f"{a:.1%} of synthetic rows lie within the holdout's 5th-percentile distance "
                f"({q:.4g}) of a training row, against {b:.1%} of holdout rows"
            )
        if copy:
            parts.append(
                f"{copy_rate:.1%} of synthetic rows copy a training row, against "
                f"{hold_rate:.1%} of holdout rows"
            )
        reason = "; ".join(parts) if parts else "synthetic rows are no closer than the holdout"
    return Privacy(
        exact_copies=copies,
        exact_copy_rate=copy_rate,
        holdout_exact_copy_rate=hold_rate,
        reference_rows=len(ref_pdf),
        dcr_synthetic=dcr_syn,
        dcr_holdout=dcr_hold,
        holdout_p05=q,
        synthetic_share_within_p05=a,
        holdout_share_within_p05=b,
        too_close=too_close,
        reason=reason,
    )


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def evaluate(
    real: DataFrame,
    synthetic: DataFrame,
    schema: TableSchema,
    *,
    holdout: DataFrame | None = None,
    train: DataFrame | None = None,
    rule_column: str | None = None,
    settings: EvaluationSettings | None = None,
) -> EvaluationResult:
    """Fidelity of `synthetic` against `real`, privacy against `train` (default: `real`, the rows
    the generator saw) with `holdout` (real rows it never saw) as the baseline, and validity.

    Columns of `schema` missing from `synthetic` are reported and left out of the metrics; extra
    synthetic columns (other than `rule_column` and `_date_*` provenance) are reported."""
    t0 = time.perf_counter()
    st = settings or EvaluationSettings()
    missing_real = [n for n in schema.names if n not in real.columns]
    if missing_real:
        raise InputError(
            f"column {missing_real[0]!r} of the schema is not in the real table; pass the schema "
            f"of the table being evaluated"
        )
    if rule_column and rule_column not in synthetic.columns:
        raise InputError(
            f"rule column {rule_column!r} is not in the synthetic table; columns are: "
            f"{', '.join(synthetic.columns)}"
        )
    real_a = _align(real, schema, "real").frame
    align = _align(synthetic, schema, "synthetic", keep=[rule_column] if rule_column else [])
    shared = [s for s in schema.columns if s.name not in align.missing]
    sub = TableSchema(tuple(shared), schema.target, schema.task, schema.classes)
    syn_a = align.frame.select(*[named_col(s.name) for s in shared])
    real_a = real_a.select(*[named_col(s.name) for s in shared])
    cont = [s for s in shared if not _is_discrete(s, schema)]
    disc = [s for s in shared if _is_discrete(s, schema)]

    chosen, pairs_total = choose_pairs(shared, st)
    if len(chosen) < pairs_total:
        log.info(
            "evaluation: pair trends on %d of %d column pairs (a seeded sample; max_pairs)",
            len(chosen),
            pairs_total,
        )
    cpos = {s.name: i for i, s in enumerate(cont)}
    corr_pairs = [
        (cpos[a.name], cpos[b.name]) for a, b in chosen if a.name in cpos and b.name in cpos
    ]
    rs, ss = _stats(real_a, syn_a, cont, disc, st, corr_pairs)
    if rs.rows == 0:
        raise InputError("the real table has no rows; point --real at the table the generator saw")
    if ss.rows == 0:
        raise InputError("the synthetic table has no rows; there is nothing to evaluate")

    cshapes, cdists = _continuous(real_a, syn_a, cont, rs, ss, st)
    dshapes, ddists, cat_adherence = _discrete(real_a, syn_a, disc, rs, ss, st)
    order = {s.name: i for i, s in enumerate(shared)}
    shapes = sorted(cshapes + dshapes, key=lambda c: order[c.column])
    dists = sorted(cdists + ddists, key=lambda d: order[d.column])
    pairs, sample_rows = _pair_trends(real_a, syn_a, sub, shared, rs, ss, st, chosen)
    shape_score = _mean([s.score for s in shapes])
    pair_score = _mean([p.score for p in pairs])
    overall = _mean([shape_score, pair_score])
    fidelity = Fidelity(shapes, pairs, shape_score, pair_score, overall, sample_rows, pairs_total)

    validity = _validity(synthetic, schema, align, shared, cont, rs, rule_column, cat_adherence, st)
    train_a, train_rows = real_a, rs.rows
    if train is not None:
        train_a = _align_reference(train, sub, "training")
        counted = train_a.agg(F.count(F.lit(1)).alias("n")).first()
        train_rows = int(counted["n"]) if counted else 0
        if train_rows == 0:
            raise InputError("the training table has no rows; pass the rows the generator saw")
    hold_a = _align_reference(holdout, sub, "holdout") if holdout is not None else None
    privacy = _privacy(syn_a, ss.rows, train_a, train_rows, hold_a, shared, cont, disc, rs, st)
    log.info(
        "evaluation: fidelity %s, exact copies %d/%d, too_close %s, rule share %s",
        f"{overall:.4f}" if overall is not None else "n/a",
        privacy.exact_copies,
        ss.rows,
        privacy.too_close,
        f"{validity.rule_share:.3f}" if validity.rule_share is not None else "n/a",
    )
    return EvaluationResult(
        real_rows=rs.rows,
        synthetic_rows=ss.rows,
        columns=[s.name for s in shared],
        target=schema.target,
        task=schema.task,
        fidelity=fidelity,
        privacy=privacy,
        validity=validity,
        distributions=dists,
        settings=st,
        seconds=round(time.perf_counter() - t0, 3),
    )


def _align_reference(df: DataFrame, schema: TableSchema, what: str) -> DataFrame:
    a = _align(df, schema, what)
    if a.missing:
        raise InputError(
            f"the {what} table lacks column {a.missing[0]!r} of the real table; pass rows with "
            f"the same columns"
        )
    return a.frame


__all__ = [
    "FLAG_RULE",
    "RULE_COLUMN",
    "ColumnShape",
    "DcrStats",
    "Distribution",
    "EvaluationResult",
    "EvaluationSettings",
    "Fidelity",
    "PairTrend",
    "Privacy",
    "RuleCheck",
    "Validity",
    "evaluate",
    "exact_copies_frame",
    "infer_schema",
    "nearest_distances",
    "only_synthetic",
]
