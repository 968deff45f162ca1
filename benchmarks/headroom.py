"""The ceiling: how much could *perfect* synthetic rows help, and could a test of this size see it?

    .venv/bin/python benchmarks/headroom.py [--tables credit,...,planted] [--sizes 300,full]
        [--budgets 100,300,1000] [--draws 5] [--name headroom]

DATE keeps zero rows on every real table in `benchmarks/real_tables.py`. Before blaming the
generator or the selection, this asks what the best possible generator would buy. The best an
LLM can do is to write new rows of the real distribution; here those rows are *real rows the
model never saw*. For each table, size and budget B:

- training rows: about ``size`` rows (the job's split: 300 of a sample of 500) or, at ``full``,
  the table's training split minus B rows; test rows: 20% of the sample, as in the job;
- the pool: B real rows outside both (at ``full``, the B rows taken off the training split);
- the downstream model (``selection.model`` of the default config, with its loss) is trained on
  the training rows, then on the training rows + the pool, and both score the same test rows:
  the paired per-row loss reduction, its percentile bootstrap 95% interval
  (`date_spark.evaluation.utility.bootstrap_interval`, the job's own) and its verdict.

Repeated over ``--draws`` seeded draws (sample, split and pool change; seed 42 + draw). Reported
per table x size x budget: the mean relative gain, the draws where the interval excludes zero
(better / worse), and the mean interval half-width relative to the loss (what a test of this
size can resolve). The baseline of every ratio is the model on the training rows alone, measured
in the same draw. This is no claim about DATE's rows: it bounds what any generator's rows can
show on these tables at these sizes, with the job's test split. The ``planted`` table is
`date_spark.testing.planted.planted_regimes` (8 features, 5% label noise, 5,000 rows).

Results go to `benchmarks/results/<name>.json` through `recording.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from real_tables import SEED, SMALL_TRAIN_ROWS, SOURCES, load  # noqa: E402
from recording import environment, write_result  # noqa: E402

TEST_FRACTION = 0.2
TABLES = (*SOURCES, "planted")


def table(name: str) -> tuple[pd.DataFrame, str, str]:
    if name == "planted":
        from date_spark.testing.planted import planted_regimes

        df = planted_regimes(5000, n_features=8, noise=0.05, seed=11).drop(columns="regime")
        return df, "y", "classification"
    return load(name)


def draw_rows(
    df: pd.DataFrame, size: str, budget: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """(train, pool, test) for one draw, or None when the table is too small for the pool."""
    rows = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if size == "full":
        n_test = round(TEST_FRACTION * len(rows))
        test, rest = rows.iloc[:n_test], rows.iloc[n_test:]
        n_train = round(0.75 * len(rest)) - budget  # the job trains on 75% of the non-test rows
        if n_train < SMALL_TRAIN_ROWS:
            return None
        return rest.iloc[:n_train], rest.iloc[n_train : n_train + budget], test
    n_train = int(size)
    n_sample = round(n_train / (0.8 * 0.75))
    n_test = round(TEST_FRACTION * n_sample)
    if n_train + n_test + budget > len(rows):
        return None
    train = rows.iloc[:n_train]
    test = rows.iloc[n_train : n_train + n_test]
    pool = rows.iloc[n_train + n_test : n_train + n_test + budget]
    return train, pool, test


class Scorer:
    """The job's model and loss for one table (schema and encoder fitted on the whole table)."""

    def __init__(self, spark: Any, df: pd.DataFrame, target: str, task: str) -> None:
        from date_spark.config import Config
        from date_spark.modeling.features import FeatureEncoder
        from date_spark.modeling.models import ModelSpec
        from date_spark.schema import TableSchema, column_specs

        df = df[df[target].notna()]
        specs = column_specs(spark.createDataFrame(df.head(200)).schema)
        classes = tuple(sorted(df[target].astype(str).unique())) if task != "regression" else ()
        self.schema = TableSchema(specs, target, task, classes)
        self.encoder = FeatureEncoder.from_pandas(self.schema, df)
        cfg = Config().selection
        self.spec = ModelSpec.for_table(cfg, self.schema, self.encoder, seed=SEED)
        self.target = target
        self.task = task

    def _y(self, frame: pd.DataFrame) -> np.ndarray:
        y = frame[self.target]
        return y.astype(float).to_numpy() if self.task == "regression" else y.astype(str).to_numpy()

    def losses(self, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
        model = self.spec.fit(self.encoder.transform(train), self._y(train))
        return np.asarray(model.losses(self.encoder.transform(test), self._y(test)), dtype=float)


def measure(scorer: Scorer, df: pd.DataFrame, size: str, budget: int, draws: int) -> dict[str, Any]:
    from date_spark.evaluation.utility import bootstrap_interval

    df = df[df[scorer.target].notna()].reset_index(drop=True)
    out: list[dict[str, float]] = []
    for k in range(draws):
        parts = draw_rows(df, size, budget, SEED + k)
        if parts is None:
            return {"skipped": f"{len(df)} rows are too few for {size} + a pool of {budget}"}
        train, pool, test = parts
        before = scorer.losses(train, test)
        after = scorer.losses(pd.concat([train, pool]), test)
        d = before - after
        lo, hi = bootstrap_interval(d, seed=SEED + k)
        base = float(before.mean()) or 1.0
        out.append(
            {
                "train_rows": len(train),
                "test_rows": len(test),
                "loss_before": float(before.mean()),
                "loss_after": float(after.mean()),
                "relative_gain": float(d.mean()) / base,
                "low": lo / base,
                "high": hi / base,
            }
        )
    rel = [o["relative_gain"] for o in out]
    return {
        "draws": out,
        "train_rows": out[0]["train_rows"],
        "test_rows": out[0]["test_rows"],
        "mean_relative_gain": float(np.mean(rel)),
        "significantly_better": sum(o["low"] > 0 for o in out),
        "significantly_worse": sum(o["high"] < 0 for o in out),
        "mean_half_width": float(np.mean([(o["high"] - o["low"]) / 2 for o in out])),
    }


def report(results: list[dict[str, Any]], draws: int) -> None:
    print(
        "\n| table | size | train/test rows | budget | loss with pool / without"
        f" (mean of {draws}) | CI half-width | better | worse |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        head = f"| {r['table']} | {r['size']} |"
        if "skipped" in r:
            print(f"{head} - | {r['budget']} | {r['skipped']} | | | |")
            continue
        ratio = 1.0 - r["mean_relative_gain"]
        print(
            f"{head} {r['train_rows']}/{r['test_rows']} | {r['budget']} | {ratio:.3f} |"
            f" {100 * r['mean_half_width']:.1f}% | {r['significantly_better']} of {draws} |"
            f" {r['significantly_worse']} of {draws} |"
        )


def summary(results: list[dict[str, Any]], draws: int) -> dict[str, Any]:
    """Per budget: in how many table x size cases perfect rows were significantly better in a
    majority of draws (the question real_tables.py cannot answer by itself)."""
    out: dict[str, Any] = {}
    for b in sorted({r["budget"] for r in results}):
        done = [r for r in results if r["budget"] == b and "skipped" not in r]
        out[str(b)] = {
            "cases": len(done),
            "measurable": sorted(
                f"{r['table']}@{r['size']}" for r in done if r["significantly_better"] * 2 > draws
            ),
            "median_relative_gain": float(np.median([r["mean_relative_gain"] for r in done]))
            if done
            else None,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", default=",".join(TABLES))
    ap.add_argument("--sizes", default=f"{SMALL_TRAIN_ROWS},full")
    ap.add_argument("--budgets", default="100,300,1000")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--name", default="headroom", help="results file benchmarks/results/NAME.json")
    args = ap.parse_args()
    tables = [t for t in args.tables.split(",") if t]
    for t in tables:
        if t not in TABLES:
            raise SystemExit(f"unknown table {t!r}; choose from {', '.join(TABLES)}")
    sizes = [s for s in args.sizes.split(",") if s]
    for s in sizes:
        if s != "full" and not s.isdigit():
            raise SystemExit(f"unknown size {s!r}; use 'full' or a number of training rows")
    budgets = [int(b) for b in args.budgets.split(",") if b]
    if args.draws < 1:
        raise SystemExit("--draws must be at least 1")

    from date_spark.config import SparkConfig
    from date_spark.runtime.spark import session

    spark = session(SparkConfig(app_name="date-spark-headroom"))
    env = environment(spark)
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for name in tables:
        df, target, task = table(name)
        scorer = Scorer(spark, df, target, task)
        for size in sizes:
            for b in budgets:
                t = time.perf_counter()
                rec = {"table": name, "task": task, "size": size, "budget": b}
                rec.update(measure(scorer, df, size, b, args.draws))
                rec["seconds"] = round(time.perf_counter() - t, 1)
                results.append(rec)
                print(
                    f"{name:<10} {size:>5} B={b:<5} "
                    + (
                        rec.get("skipped")
                        or f"gain {100 * rec['mean_relative_gain']:+.1f}%, better in"
                        f" {rec['significantly_better']} of {args.draws}"
                    ),
                    flush=True,
                )
    spark.stop()
    params = {
        "tables": tables,
        "sizes": sizes,
        "budgets": budgets,
        "draws": args.draws,
        "test_fraction": TEST_FRACTION,
        "seed": SEED,
        "model": "selection.model of the default config",
    }
    figures = {
        "results": results,
        "summary": summary(results, args.draws),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_result(args.name, params, figures, env)
    report(results, args.draws)


if __name__ == "__main__":
    main()
