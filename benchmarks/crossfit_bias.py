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
  interpolation = the job's own interpolation of the 240 rows, parents named), volume (rows
  added as a multiple of the real rows; 1x by default) and folds K: the estimated relative loss
  change, and the held-out change of the same rows added to the 300 input rows;
- across seeds: the mean bias (estimate minus held-out) with its 95% interval, the seed-to-seed
  spread of the estimate and of its error (what a keep rule must see through), the mean reported
  standard error, and the share of seeds whose z passes 1.5;
- where the noise comes from: `floor_se`, the bootstrap standard error over the scored rows of
  the repeat-averaged per-row differences (which rows are scored: no number of repeats removes
  it), and `repeat_sd`, the spread of the estimate from one fold draw to the next (what repeats
  average away). A gain well below `floor_se` cannot be seen by a cross-fit over these rows.

    .venv/bin/python benchmarks/crossfit_bias.py [--tables credit,mlc_churn] [--seeds 10]
        [--folds 5,10] [--repeats 2] [--volumes 1,3] [--generators oracle,noise]

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
             target: str, volume: float = 1.0) -> pd.DataFrame:  # fmt: skip
    """`volume` times as many rows of `gen` as there are real rows (1: the middle volume the
    rule tries), at most the pool's rows."""
    from date_spark.columns import PARENTS
    from date_spark.generation.interpolation import interpolate
    from date_spark.rules import Rule

    names = schema.names
    n = max(1, round(volume * len(real)))
    if gen == "interpolation":
        out = interpolate(real, Rule.true(), schema, n, seed, parents=True)
        return out[[*names, PARENTS]].reset_index(drop=True)
    out = pool.sample(n=min(n, len(pool)), random_state=seed)[names].copy()
    if gen == "noise":
        perm = np.random.default_rng(seed).permutation(len(pool))
        out[target] = pool[target].to_numpy()[perm][: len(out)]
    return out.reset_index(drop=True)


def floor_se(diffs: np.ndarray, seed: int, draws: int = 400) -> float:
    """The bootstrap standard error, over the scored rows, of the mean of the repeat-averaged
    per-row differences: the noise of which rows are scored, which no number of repeats (fold
    draws) removes."""
    per_row = diffs.mean(axis=0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_row), size=(draws, len(per_row)))
    return float(per_row[idx].mean(axis=1).std(ddof=1))


def run_table(
    spark: Any, table: str, seeds: int, folds: list[int], repeats: int, volumes: list[float],
    generators: list[str],
) -> list[dict[str, Any]]:  # fmt: skip
    from date_spark.modeling.features import FeatureEncoder
    from date_spark.modeling.models import ModelSpec
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
                repeats=repeats,
                seed=seed,
            )
            for k in folds
        }
        for gen in generators:
            for volume in volumes:
                rows = rows_for(gen, real, pool, schema, seed, target, volume)
                change = held.change(rows.drop(columns=["_date_parents"], errors="ignore"))
                rec: dict[str, Any] = {
                    "table": table, "task": task, "seed": seed, "generator": gen,
                    "volume": volume, "rows": len(rows), "held_out": change["change"],
                }  # fmt: skip
                for k, ev in evaluators.items():
                    diffs = ev.differences(rows)
                    e = ev.estimate(diffs, len(rows))
                    base = e.base_loss
                    rec[f"estimate_k{k}"] = -e.gain / base
                    rec[f"z_k{k}"] = e.gain / e.se if e.se > 0 else 0.0
                    rec[f"se_k{k}"] = e.se / base
                    rec[f"floor_se_k{k}"] = floor_se(diffs, seed) / base
                    rec[f"repeat_sd_k{k}"] = (
                        float(diffs.mean(axis=1).std(ddof=1)) / base if repeats > 1 else math.nan
                    )
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
    if "volume" not in frame:
        frame["volume"] = 1.0
    out = []
    for (table, gen, volume), g in frame.groupby(["table", "generator", "volume"], sort=True):
        held, held_lo, held_hi = mean_ci(g["held_out"])
        for k in folds:
            est = g[f"estimate_k{k}"]
            bias, lo, hi = mean_ci(est - g["held_out"])
            extra = {
                name: float(g[f"{name}_k{k}"].mean())
                for name in ("se", "floor_se", "repeat_sd")
                if f"{name}_k{k}" in g
            }
            out.append(
                {
                    "table": table, "generator": gen, "volume": float(volume), "folds": k,
                    "seeds": len(g), "held_out": held, "held_out_low": held_lo,
                    "held_out_high": held_hi, "estimate": float(est.mean()), "bias": bias,
                    "bias_low": lo, "bias_high": hi, "estimate_sd": float(est.std(ddof=1)),
                    "error_sd": float((est - g["held_out"]).std(ddof=1)),
                    "z_over_1_5": float((g[f"z_k{k}"] > 1.5).mean()), **extra,
                }
            )  # fmt: skip
    return out


def report(summary: list[dict[str, Any]]) -> None:
    print(
        f"\n{'table':10} {'generator':13} {'vol':>4} {'K':>2} {'held-out':>9} {'estimate':>9} "
        f"{'bias [95% CI]':>24} {'sd':>6} {'err sd':>6} {'se':>6} {'floor':>6} {'z>1.5':>6}"
    )
    for s in summary:
        print(
            f"{s['table']:10} {s['generator']:13} {s['volume']:>4g} {s['folds']:>2} "
            f"{s['held_out']:+9.1%} {s['estimate']:+9.1%} {s['bias']:+8.1%} "
            f"[{s['bias_low']:+6.1%}, {s['bias_high']:+6.1%}] {s['estimate_sd']:6.1%} "
            f"{s['error_sd']:6.1%} {s.get('se', math.nan):6.1%} "
            f"{s.get('floor_se', math.nan):6.1%} {s['z_over_1_5']:6.0%}"
        )


def run_per_table(
    tables: list[str],
    run_table: Callable[[Any, str], list[dict[str, Any]]],
    summarise: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    report: Callable[[list[dict[str, Any]]], None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One Spark session, `run_table` per table, the summary printed; (figures, environment)."""
    from date_spark.runtime.spark import session

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
    ap.add_argument("--repeats", type=int, default=cal.DEFAULTS.repeats)
    ap.add_argument("--volumes", default="1", help="rows added, as multiples of the real rows")
    ap.add_argument("--generators", default=",".join(GENERATORS))
    ap.add_argument("--name", default="crossfit_bias")
    args = ap.parse_args()
    folds = [int(k) for k in args.folds.split(",")]
    tables = args.tables.split(",")
    volumes = [float(v) for v in args.volumes.split(",")]
    generators = args.generators.split(",")
    params = {
        "tables": tables, "seeds": args.seeds, "folds": folds, "repeats": args.repeats,
        "input_rows": 300, "scored_rows": 240, "volumes": volumes, "generators": generators,
    }  # fmt: skip
    figures, env = run_per_table(
        tables,
        lambda spark, t: run_table(
            spark, t, args.seeds, folds, args.repeats, volumes, generators
        ),
        lambda records: summarise(records, folds), report,
    )  # fmt: skip
    write_result(args.name, params, figures, env)


if __name__ == "__main__":
    main()
