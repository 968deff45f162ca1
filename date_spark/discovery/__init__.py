"""Stage 1 (the paper's Algorithm 1): distribution-guiding rules, each a DNF rule with one model
that fits its rows within rho.

- `algorithm.py`: the level-by-level search with model sharing (`discover`), with the
  algorithm's description and the decisions the paper leaves open;
- `evaluate.py`: the per-candidate models and errors (pure pandas, in the candidate UDF);
- `backend.py`: where candidates are evaluated (Spark, or the driver for a small table);
- `result.py`: `Discovery` (the DGRs, routing rows to them, save/load);
- `scans.py`: counting the full-table scans each level makes.
"""

from __future__ import annotations

from date_spark.discovery.algorithm import (
    CAND_COL,
    DGR,
    KEY_COL,
    Discovery,
    LevelStats,
    Part,
    SearchBackend,
    SparkBackend,
    TableStats,
    Thin,
    discover,
    effective_rho,
    error,
    fit_model,
    level_fractions,
    losses,
    residuals,
    run_search,
    spark_type,
    subtract,
)

__all__ = [
    "CAND_COL",
    "DGR",
    "KEY_COL",
    "Discovery",
    "LevelStats",
    "Part",
    "SearchBackend",
    "SparkBackend",
    "TableStats",
    "Thin",
    "discover",
    "effective_rho",
    "error",
    "fit_model",
    "level_fractions",
    "losses",
    "residuals",
    "run_search",
    "spark_type",
    "subtract",
]
