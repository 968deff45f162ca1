"""Tables with known structure: planted regimes, each with its own relation from features to label.

Used for the bundled demo table, tests that must recover the regimes, and 1e7-row benchmarks.
The pandas and Spark generators share formulas, so tests on small frames speak for large ones.

Regimes (x* are uniform on [0, 1), c0 is one of a/b/c/d):
  R0: x0 < 0.3                              y = x1 > 0.5
  R1: 0.3 <= x0 < 0.6 and c0 in (a, b)      y = x2 < 0.4
  R2: 0.3 <= x0 < 0.6 and c0 in (c, d)      y = x3 + x4 > 1
  R3: x0 >= 0.6 and x5 < 0.5                y = x6 > 0.7
  R4: x0 >= 0.6 and x5 >= 0.5               y = x1 < 0.3      (with shared=True: y = x1 > 0.5, R0's)
Labels flip with probability `noise`. For regression, each regime has its own linear function.

With ``segment=True`` a thin sixth regime is carved out of R0 (about 4.5% of the rows: 225 of
5,000), where the label follows R2's diagonal, which a tree needs many rows to draw:
  R5: x0 < 0.3 and x7 >= 0.85               y = x3 + x4 > 1
It is the case the tool is for: a rare segment that one model fits badly and that discovery can
isolate (its rows make R0 fail the error threshold), where more rows of the right kind help.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

__all__ = [
    "CATEGORIES",
    "N_REGIMES",
    "PLANTED_RULES",
    "RECOVERY_PURITY",
    "RECOVERY_SHARE",
    "SEGMENT",
    "SEGMENT_RULE",
    "demo_credit",
    "planted_regime",
    "planted_regimes",
    "planted_regimes_spark",
    "planted_truth",
    "regime_recovery",
]


CATEGORIES = ("a", "b", "c", "d")
N_REGIMES = 5
# The planted regimes as rules (the ground truth discovery should recover).
PLANTED_RULES = {
    "R0": "x0 < 0.3",
    "R1": "x0 >= 0.3 and x0 < 0.6 and c0 in ('a', 'b')",
    "R2": "x0 >= 0.3 and x0 < 0.6 and c0 in ('c', 'd')",
    "R3": "x0 >= 0.6 and x5 < 0.5",
    "R4": "x0 >= 0.6 and x5 >= 0.5",
}
SEGMENT_RULE = "x0 < 0.3 and x7 >= 0.85"
SEGMENT = 5


def _segment_np(x: np.ndarray) -> np.ndarray:
    return (x[:, 0] < 0.3) & (x[:, 7] >= 0.85)


def _regime_np(x0: np.ndarray, c0: np.ndarray, x5: np.ndarray) -> np.ndarray:
    ab = np.isin(c0, ["a", "b"])
    return np.select(
        [x0 < 0.3, (x0 < 0.6) & ab, x0 < 0.6, x5 < 0.5],
        [0, 1, 2, 3],
        default=4,
    )


def _label_np(x: np.ndarray, regime: np.ndarray, shared: bool = False) -> np.ndarray:
    r4 = (x[:, 1] > 0.5) if shared else (x[:, 1] < 0.3)
    diagonal = x[:, 3] + x[:, 4] > 1
    return np.select(
        [regime == 0, regime == 1, regime == 2, regime == 3, regime == SEGMENT],
        [x[:, 1] > 0.5, x[:, 2] < 0.4, diagonal, x[:, 6] > 0.7, diagonal],
        default=r4,
    ).astype(np.int64)


def _value_np(x: np.ndarray, regime: np.ndarray, shared: bool = False) -> np.ndarray:
    """The regression table's noise-free target: one linear function per regime."""
    return np.select(
        [regime == 0, regime == 1, regime == 2, regime == 3],
        [10 * x[:, 1], -8 * x[:, 2] + 5, 6 * (x[:, 3] + x[:, 4]), 12 * x[:, 6] - 4],
        default=(10 * x[:, 1]) if shared else (-10 * x[:, 1] + 8),
    )


def planted_truth(
    rows: pd.DataFrame,
    segment: bool = False,
    task: Literal["classification", "regression"] = "classification",
) -> pd.DataFrame:
    """Regime and noise-free label (classification) or value (regression) of rows of the planted
    table (with the thin segment R5 when `segment`), for judging generated rows (which rows are
    helpful, which carry a wrong label) in tests and benchmarks."""
    x = rows[[f"x{i}" for i in range(8 if segment else 7)]].to_numpy(dtype=float)
    regime = _regime_np(x[:, 0], rows["c0"].astype(str).to_numpy(), x[:, 5])
    if segment:
        regime = np.where(_segment_np(x), SEGMENT, regime)
    if task == "regression":
        return pd.DataFrame({"regime": regime, "value": _value_np(x, regime)}, index=rows.index)
    return pd.DataFrame({"regime": regime, "label": _label_np(x, regime)}, index=rows.index)


def planted_regimes(
    n_rows: int = 5000,
    n_features: int = 10,
    noise: float = 0.05,
    seed: int = 0,
    task: Literal["classification", "regression"] = "classification",
    shared: bool = False,
    with_regime: bool = True,
    segment: bool = False,
) -> pd.DataFrame:
    """A heterogeneous table: `x0..x{n_features-1}`, `c0`, label `y`, and `regime` (ground truth,
    drop it before use) when `with_regime`; `segment` adds the thin regime R5 (module doc)."""
    if n_features < (8 if segment else 7):
        raise ValueError("planted_regimes needs n_features >= 7 (8 with segment=True)")
    if segment and task != "classification":
        raise ValueError("segment=True is for the classification table")
    rng = np.random.default_rng(seed)
    x = rng.random((n_rows, n_features))
    c0 = rng.choice(np.array(CATEGORIES), size=n_rows)
    regime = _regime_np(x[:, 0], c0, x[:, 5])
    if segment:
        regime = np.where(_segment_np(x), SEGMENT, regime)
    df = pd.DataFrame({f"x{i}": x[:, i] for i in range(n_features)})
    df.insert(1, "c0", c0)
    if task == "classification":
        y = _label_np(x, regime, shared)
        flip = rng.random(n_rows) < noise
        y = np.where(flip, 1 - y, y)
        df["y"] = y
    else:
        df["y"] = _value_np(x, regime, shared) + rng.normal(0, noise * 4, n_rows)
    if with_regime:
        df["regime"] = regime
    return df


def planted_regime() -> Column:
    """The planted regime (0-4) of each row of a planted table, from its x0, c0 and x5 columns:
    the ground truth that benchmarks score discovered rules against, without storing it."""
    x0, x5, c0 = F.col("x0"), F.col("x5"), F.col("c0")
    return (
        F.when(x0 < 0.3, 0)
        .when((x0 < 0.6) & c0.isin("a", "b"), 1)
        .when(x0 < 0.6, 2)
        .when(x5 < 0.5, 3)
        .otherwise(4)
    )


def planted_regimes_spark(
    spark: SparkSession,
    n_rows: int,
    n_features: int = 20,
    noise: float = 0.05,
    seed: int = 0,
    num_partitions: int | None = None,
    with_regime: bool = False,
) -> DataFrame:
    """The classification table above, generated inside Spark (for 1e7-row benchmarks)."""
    base = spark.range(0, n_rows, numPartitions=num_partitions or max(2, n_rows // 500_000))
    xs = [F.rand(seed * 1000 + i).alias(f"x{i}") for i in range(n_features)]
    df = base.select(
        *xs, F.rand(seed * 1000 + 997).alias("_u_c"), F.rand(seed * 1000 + 998).alias("_u_n")
    )
    c0 = F.element_at(
        F.array(*[F.lit(c) for c in CATEGORIES]), (F.floor(F.col("_u_c") * 4) + 1).cast("int")
    )
    df = df.withColumn("c0", c0)
    x = [F.col(f"x{i}") for i in range(n_features)]
    df = df.withColumn("regime", planted_regime())
    r = F.col("regime")
    y = (
        F.when(r == 0, x[1] > 0.5)
        .when(r == 1, x[2] < 0.4)
        .when(r == 2, (x[3] + x[4]) > 1)
        .when(r == 3, x[6] > 0.7)
        .otherwise(x[1] < 0.3)
    ).cast("long")
    y = F.when(F.col("_u_n") < noise, 1 - y).otherwise(y)
    cols = [f"x{i}" for i in range(n_features)]
    cols.insert(1, "c0")
    out = df.withColumn("y", y).select(*cols, "y", *(["regime"] if with_regime else []))
    return out


def demo_credit(n_rows: int = 4000, seed: int = 7) -> pd.DataFrame:
    """The bundled demo table: a small credit-default table with mixed column kinds (numeric,
    categorical, boolean, date, nulls) and four planted customer segments."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n_rows)
    region = rng.choice(
        np.array(["north", "south", "east", "west"]), n_rows, p=[0.3, 0.3, 0.25, 0.15]
    )
    income = np.round(rng.lognormal(10.4, 0.5, n_rows), 2)
    utilization = np.round(rng.beta(2, 3, n_rows), 4)
    accounts = rng.poisson(3, n_rows).astype(np.int64)
    homeowner = rng.random(n_rows) < 0.45
    start = dt.date(2015, 1, 1)
    opened = [start + dt.timedelta(days=int(d)) for d in rng.integers(0, 3650, n_rows)]
    young = age < 30
    south = region == "south"
    seg = np.select(
        [young & ~homeowner, south & (age >= 30), utilization > 0.6], [0, 1, 2], default=3
    )
    logit = np.select(
        [seg == 0, seg == 1, seg == 2],
        [
            14.0 * (utilization - 0.45),  # young renters: utilisation drives default
            -(np.nan_to_num(income, nan=33000.0) - 33000) / 3000,  # the south: income drives it
            2.5 * (accounts - 3.5),  # high utilisation: many accounts drive it
        ],
        default=-3.5 + 0.04 * (60 - age),  # everyone else: low, slowly falling with age
    )
    p = 1 / (1 + np.exp(-logit))
    default = (rng.random(n_rows) < p).astype(np.int64)
    df = pd.DataFrame(
        {
            "age": age.astype(np.int64),
            "region": region,
            "income": income,
            "utilization": utilization,
            "num_accounts": accounts,
            "homeowner": homeowner,
            "account_opened": opened,
            "default": default,
        }
    )
    # Real tables have holes: income unknown for some, region for a few.
    df.loc[rng.random(n_rows) < 0.03, "income"] = np.nan
    df["region"] = df["region"].astype(object)
    df.loc[rng.random(n_rows) < 0.01, "region"] = None
    return df


# Thresholds of "a planted regime was recovered" (benchmarks/discovery.py, README).
RECOVERY_PURITY = 0.9  # the DGR's rows are at least this share one regime
RECOVERY_SHARE = 0.8  # and the DGR holds at least this share of that regime's rows


def regime_recovery(counts: pd.DataFrame) -> dict[str, object]:
    """Score discovered rules against the planted regimes.

    `counts` has one row per (rule, regime) with columns `rule` (None/NaN: covered by no rule),
    `regime` and `n` (rows). A regime is recovered when some rule's rows are >= 90% that regime
    and the rule holds >= 80% of the regime's rows. Purity is row-weighted over covered rows: the
    share of covered rows that belong to their rule's majority regime."""
    if counts.empty or int(counts["n"].sum()) == 0:
        raise ValueError("regime_recovery needs at least one counted row")
    totals = counts.groupby("regime")["n"].sum()
    covered = counts[counts["rule"].notna()]
    recovered: set[int] = set()
    rules: list[dict[str, object]] = []
    majority_rows = 0
    for rule, part in covered.groupby("rule", sort=True):
        size = int(part["n"].sum())
        top = part.sort_values("n", ascending=False).iloc[0]
        regime, rows = int(top["regime"]), int(top["n"])
        purity = rows / size if size else 0.0
        share = rows / int(totals[top["regime"]])
        majority_rows += rows
        if purity >= RECOVERY_PURITY and share >= RECOVERY_SHARE:
            recovered.add(regime)
        rules.append(
            {"rule": str(rule), "rows": size, "regime": regime, "purity": purity, "share": share}
        )
    covered_rows = int(covered["n"].sum())
    return {
        "regimes": len(totals),
        "recovered": len(recovered),
        "recovered_regimes": sorted(recovered),
        "purity": majority_rows / covered_rows if covered_rows else 0.0,
        "covered_rows": covered_rows,
        "rows": int(totals.sum()),
        "rules": rules,
    }
