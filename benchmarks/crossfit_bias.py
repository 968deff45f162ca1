"""Can the keep rule's number be trusted? Its cross-fitted estimate against the held-out change.

The gain rule (`date_spark/selection/gain.py`) estimates what generated rows do to the user's
model by cross-fitting over the job's real non-test rows: each fold's model trains on (K-1)/K of
them. The user's model trains on every input row. Where a model is still learning fast at this
size, rows of any kind (even rows with wrong targets, which act like label smoothing on an
overconfident classifier) help a model of 190 rows more than one of 300, so the estimate can be
optimistic. This benchmark measures that directly, on the calibration's tables and draws
(`benchmarks/calibration.py`: 300 input rows, the job's 20% test split held back so 240 rows are
scored, a pool the job never sees, the test set every other row):

- per table, generator (oracle = pool rows, noise = pool rows with permuted targets,
  interpolation = the job's own interpolation of the 240 rows, parents named) and folds K:
  the estimated relative loss change of adding as many rows as there are real rows (1x), and the
  held-out change of the same rows added to the 300 input rows;
- across seeds: the mean bias (estimate minus held-out) with its 95% interval, the seed-to-seed
  spread of the estimate (what a keep rule must see through), and the share of seeds whose z
  passes 1.5.

    .venv/bin/python benchmarks/crossfit_bias.py [--tables credit,mlc_churn] [--seeds 10]
        [--folds 5,10]

Writes `benchmarks/results/crossfit_bias.json`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import calibration as cal  # noqa: E402
from recording import environment, write_result  # noqa: E402

GENERATORS = ("oracle", "noise", "interpolation")


def rows_for(gen: str, real: pd.DataFrame, pool: pd.DataFrame, schema: Any, seed: int,
             target: str) -> pd.DataFrame:  # fmt: skip
    """As many rows of `gen` as there are real rows (the middle volume the rule tries)."""
    from date_spark.columns import PARENTS
    from date_spark.generation.interpolation import interpolate
    from date_spark.rules import Rule

    names = schema.names
    n = len(real)
    if gen == "interpolation":
        out = interpolate(real, Rule.true(), schema, n, seed, parents=True)
        return out[[*names, PARENTS]].reset_index(drop=True)
    out = pool.sample(n=min(n, len(pool)), random_state=seed)[names].copy()
    if gen == "noise":
        perm = np.random.default_rng(seed).permutation(len(pool))
        out[target] = pool[target].to_numpy()[perm][: len(out)]
    return out.reset_index(drop=True)


def run_table(spark: Any, table: str, seeds: int, folds: list[int]) -> list[dict[str, Any]]:
    from date_spark.features import FeatureEncoder
    from date_spark.models import ModelSpec
    from date_spark.schema import TableSchema, column_specs
    from date_spark.selection.gain import GainEvaluator

    df, target, task = cal.load(table)
    out = []
    for seed in range(seeds):
        t0 = time.monotonic()
        train, pool, test = cal.draw(df, "300", seed)
        specs = column_specs(spark.createDataFrame(train.head(50)).schema)
        classes = (
            tuple(sorted(train[target].dropna().unique(), key=str)) if task != "regression" else ()
        )
        kind = "regression" if task == "regression" else "classification"
        schema = TableSchema(specs, target, kind, classes)
        enc = FeatureEncoder.from_pandas(schema, train)
        real = train.sample(frac=0.8, random_state=seed)[schema.names].reset_index(drop=True)
        model = ModelSpec.for_table(cal.DEFAULTS, schema, enc, seed=seed)
        held = cal.HeldOut(schema, enc, seed, train, test)
        evaluators = {
            k: GainEvaluator(
                real,
                target=target,
                encode=enc.transform,
                model=model,
                folds=k,
                repeats=cal.DEFAULTS.repeats,
                seed=seed,
            )
            for k in folds
        }
        for gen in GENERATORS:
            rows = rows_for(gen, real, pool, schema, seed, target)
            change = held.change(rows.drop(columns=["_date_parents"], errors="ignore"))
            rec: dict[str, Any] = {
                "table": table, "task": task, "seed": seed, "generator": gen, "rows": len(rows),
                "held_out": change["change"],
            }  # fmt: skip
            for k, ev in evaluators.items():
                e = ev.assess(rows)
                rec[f"estimate_k{k}"] = -e.gain / e.base_loss
                rec[f"z_k{k}"] = e.gain / e.se if e.se > 0 else 0.0
            out.append(rec)
        print(f"  {table} seed {seed}: {time.monotonic() - t0:.0f} s", flush=True)
    return out


def mean_ci(xs: pd.Series) -> tuple[float, float, float]:
    a = xs.to_numpy(dtype=float)
    m = float(a.mean())
    if len(a) < 2:
        return m, math.nan, math.nan
    from scipy.stats import t

    h = float(t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
    return m, m - h, m + h


def summarise(records: list[dict[str, Any]], folds: list[int]) -> list[dict[str, Any]]:
    frame = pd.DataFrame(records)
    out = []
    for (table, gen), g in frame.groupby(["table", "generator"], sort=True):
        held, held_lo, held_hi = mean_ci(g["held_out"])
        for k in folds:
            est = g[f"estimate_k{k}"]
            bias, lo, hi = mean_ci(est - g["held_out"])
            out.append(
                {
                    "table": table, "generator": gen, "folds": k, "seeds": len(g),
                    "held_out": held, "held_out_low": held_lo, "held_out_high": held_hi,
                    "estimate": float(est.mean()), "bias": bias, "bias_low": lo,
                    "bias_high": hi, "estimate_sd": float(est.std(ddof=1)),
                    "z_over_1_5": float((g[f"z_k{k}"] > 1.5).mean()),
                }
            )  # fmt: skip
    return out


def report(summary: list[dict[str, Any]]) -> None:
    print(
        f"\n{'table':10} {'generator':13} {'K':>2} {'held-out':>9} {'estimate':>9} "
        f"{'bias [95% CI]':>24} {'sd':>6} {'z>1.5':>6}"
    )
    for s in summary:
        print(
            f"{s['table']:10} {s['generator']:13} {s['folds']:>2} {s['held_out']:+9.1%} "
            f"{s['estimate']:+9.1%} {s['bias']:+8.1%} [{s['bias_low']:+6.1%}, "
            f"{s['bias_high']:+6.1%}] {s['estimate_sd']:6.1%} {s['z_over_1_5']:6.0%}"
        )


def run_per_table(
    tables: list[str],
    run_table: Callable[[Any, str], list[dict[str, Any]]],
    summarise: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    report: Callable[[list[dict[str, Any]]], None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One Spark session, `run_table` per table, the summary printed; (figures, environment)."""
    from date_spark.spark import session

    spark = session()
    env = environment(spark)
    t0 = time.monotonic()
    records: list[dict[str, Any]] = []
    for table in tables:
        records += run_table(spark, table)
    summary = summarise(records)
    report(summary)
    return {"summary": summary, "records": records, "seconds": time.monotonic() - t0}, env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default=",".join(cal.SOURCES))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--folds", default="5,10")
    ap.add_argument("--name", default="crossfit_bias")
    args = ap.parse_args()
    folds = [int(k) for k in args.folds.split(",")]
    tables = args.tables.split(",")
    params = {
        "tables": tables, "seeds": args.seeds, "folds": folds,
        "input_rows": 300, "scored_rows": 240, "volume": "1x", "generators": GENERATORS,
    }  # fmt: skip
    figures, env = run_per_table(
        tables, lambda spark, t: run_table(spark, t, args.seeds, folds),
        lambda records: summarise(records, folds), report,
    )  # fmt: skip
    write_result(args.name, params, figures, env)


if __name__ == "__main__":
    main()
