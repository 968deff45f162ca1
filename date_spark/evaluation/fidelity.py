"""Fidelity of a synthetic table to the real one, following SDMetrics' Quality Report.

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
- Overall: the mean of the column-shapes score and the pair-trends score."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from date_spark.evaluation.settings import EvaluationSettings
from date_spark.evaluation.stats import Stats
from date_spark.evaluation.tables import (
    Aligned,
    discrete_col,
    is_discrete,
    mean_of,
    numeric_col,
    sample_table,
    unit_of,
)
from date_spark.schema import ColumnSpec, TableSchema

log = logging.getLogger(__name__)


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
    rs: Stats,
    ss: Stats,
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
            F.lit(k).alias("_side"), *[numeric_col(s).alias(f"c{j}") for j, s in enumerate(cont)]
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
                unit=unit_of(s),
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
        *[
            F.struct(F.lit(j).alias("col"), discrete_col(s).alias("value"))
            for j, s in enumerate(disc)
        ]
    )
    return df.select(F.lit(side).alias("side"), F.explode(arr).alias("e")).select(
        "side", "e.col", "e.value"
    )


def _discrete(
    real: DataFrame,
    syn: DataFrame,
    disc: Sequence[ColumnSpec],
    rs: Stats,
    ss: Stats,
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


def _bin_expr(spec: ColumnSpec, lo: float | None, hi: float | None, bins: int) -> Column:
    """Equal-width bin of the real range as text: 0..bins-1, 'below', 'above' or null."""
    x = numeric_col(spec)
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
    rs: Stats,
    ss: Stats,
    st: EvaluationSettings,
    chosen: Sequence[tuple[ColumnSpec, ColumnSpec]] | None = None,
) -> tuple[list[PairTrend], dict[str, int]]:
    """One trend per chosen pair, in their order: correlations from pass 1 for two continuous
    columns, contingency tables of a sample for any other pair."""
    discrete = {s.name: is_discrete(s, schema) for s in shared}
    if chosen is None:
        chosen = [(a, b) for i, a in enumerate(shared) for b in shared[i + 1 :]]
    corr_pairs = [(a, b) for a, b in chosen if not (discrete[a.name] or discrete[b.name])]
    contingency_pairs = [(a, b) for a, b in chosen if discrete[a.name] or discrete[b.name]]
    out = _correlation_trends(corr_pairs, rs, ss)
    sample_rows = {"real": 0, "synthetic": 0}
    if contingency_pairs:
        found, sample_rows = _contingency_trends(
            real, syn, shared, discrete, contingency_pairs, rs, ss, st
        )
        out.update(found)
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


def _correlation_trends(
    pairs: Sequence[tuple[ColumnSpec, ColumnSpec]], rs: Stats, ss: Stats
) -> dict[tuple[str, str], PairTrend]:
    """CorrelationSimilarity from the correlations of pass 1; None when a column is constant."""
    out: dict[tuple[str, str], PairTrend] = {}
    for a, b in pairs:
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
    return out


def _contingency_trends(
    real: DataFrame,
    syn: DataFrame,
    shared: Sequence[ColumnSpec],
    discrete: Mapping[str, bool],
    pairs: Sequence[tuple[ColumnSpec, ColumnSpec]],
    rs: Stats,
    ss: Stats,
    st: EvaluationSettings,
) -> tuple[dict[tuple[str, str], PairTrend], dict[str, int]]:
    """ContingencySimilarity of each pair from one groupBy over a sample of both sides, and the
    sample's rows per side."""

    def key(spec: ColumnSpec) -> Column:
        if discrete[spec.name]:
            return discrete_col(spec)
        return _bin_expr(spec, rs.lo[spec.name], rs.hi[spec.name], st.contingency_bins)

    cap = min(st.pair_sample_rows, max(1_000, st.pair_sample_cells // len(pairs)))
    rsamp = sample_table(real, rs.rows, cap, st.seed)
    ssamp = sample_table(syn, ss.rows, cap, st.seed + 1)
    joint = (
        _pair_keys(rsamp, 0, shared, pairs, key)
        .unionByName(_pair_keys(ssamp, 1, shared, pairs, key))
        .groupBy("pair", "a", "b")
        .agg(
            F.sum(F.when(F.col("side") == 0, 1).otherwise(0)).alias("r"),
            F.sum(F.when(F.col("side") == 1, 1).otherwise(0)).alias("s"),
        )
    )
    out: dict[tuple[str, str], PairTrend] = {}
    sample_rows = {"real": 0, "synthetic": 0}
    for r in _joint_tvd(joint).collect():
        a, b = pairs[int(r["pair"])]
        ok = int(r["nr"]) > 0 and int(r["ns"]) > 0
        score = 1.0 - float(r["tvd"]) if ok else None
        out[(a.name, b.name)] = PairTrend(a.name, b.name, "ContingencySimilarity", score)
        sample_rows = {"real": int(r["nr"]), "synthetic": int(r["ns"])}
    return out, sample_rows


def _pair_keys(
    df: DataFrame,
    side: int,
    shared: Sequence[ColumnSpec],
    pairs: Sequence[tuple[ColumnSpec, ColumnSpec]],
    key: Callable[[ColumnSpec], Column],
) -> DataFrame:
    """`side, pair, a, b`: every row exploded into every pair, each column as its category or
    bin."""
    used = [s for s in shared if any(s in p for p in pairs)]
    keyed = df.select(*[key(s).alias(f"k{i}") for i, s in enumerate(used)])
    pos = {s.name: i for i, s in enumerate(used)}
    arr = F.array(
        *[
            F.struct(
                F.lit(p).alias("pair"),
                F.col(f"k{pos[a.name]}").alias("a"),
                F.col(f"k{pos[b.name]}").alias("b"),
            )
            for p, (a, b) in enumerate(pairs)
        ]
    )
    return keyed.select(F.lit(side).alias("side"), F.explode(arr).alias("e")).select(
        "side", "e.pair", "e.a", "e.b"
    )


def _joint_tvd(joint: DataFrame) -> DataFrame:
    """`pair, tvd, nr, ns`: total variation distance of the normalised joint frequencies of
    each pair (`joint`: counts `r`, `s` per pair and value combination), and the rows per side."""
    w = Window.partitionBy("pair")
    nr, ns = F.sum("r").over(w), F.sum("s").over(w)
    shares = joint.select(
        "pair",
        F.when(nr > 0, F.col("r") / nr).otherwise(0.0).alias("pr"),
        F.when(ns > 0, F.col("s") / ns).otherwise(0.0).alias("ps"),
        nr.alias("nr"),
        ns.alias("ns"),
    )
    return shares.groupBy("pair").agg(
        (F.sum(F.abs(F.col("pr") - F.col("ps"))) / 2).alias("tvd"),
        F.max("nr").alias("nr"),
        F.max("ns").alias("ns"),
    )


def scored_pairs(
    shared: Sequence[ColumnSpec], cont: Sequence[ColumnSpec], st: EvaluationSettings
) -> tuple[list[tuple[ColumnSpec, ColumnSpec]], int, list[tuple[int, int]]]:
    """The pairs pair trends score, the table's pair count, and the continuous pairs among them
    as positions in `cont` (their correlations ride along the first pass)."""
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
    return chosen, pairs_total, corr_pairs


def measure_fidelity(
    t: Aligned,
    rs: Stats,
    ss: Stats,
    st: EvaluationSettings,
    chosen: Sequence[tuple[ColumnSpec, ColumnSpec]],
    pairs_total: int,
) -> tuple[Fidelity, list[Distribution], dict[str, float | None]]:
    """Column shapes (passes 2 and 3) and pair trends; also the plotted distributions and the
    category adherence that pass 3 finds on the way (validity reports it)."""
    cshapes, cdists = _continuous(t.real, t.syn, t.cont, rs, ss, st)
    dshapes, ddists, cat_adherence = _discrete(t.real, t.syn, t.disc, rs, ss, st)
    order = {s.name: i for i, s in enumerate(t.shared)}
    shapes = sorted(cshapes + dshapes, key=lambda c: order[c.column])
    dists = sorted(cdists + ddists, key=lambda d: order[d.column])
    pairs, sample_rows = _pair_trends(t.real, t.syn, t.sub, t.shared, rs, ss, st, chosen)
    shape_score = mean_of([s.score for s in shapes])
    pair_score = mean_of([p.score for p in pairs])
    overall = mean_of([shape_score, pair_score])
    fidelity = Fidelity(shapes, pairs, shape_score, pair_score, overall, sample_rows, pairs_total)
    return fidelity, dists, cat_adherence


__all__ = [
    "ColumnShape",
    "Distribution",
    "Fidelity",
    "PairTrend",
    "choose_pairs",
    "measure_fidelity",
    "scored_pairs",
]
