"""Tag a table with many rules in one pass vs one filter job per rule.

    .venv/bin/python benchmarks/assign_rules.py [--rows 1000000] [--rules 50] [--repeats 3]
        [--data-dir DIR] [--name assign_rules]

Prints wall-clock medians, the number of Spark jobs each approach ran, and the ratio against the
baseline (one `filter().count()` per rule) measured in the same run. The job counter uses the
SparkContext status tracker: fine in a benchmark, never in the library. Writes
benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from recording import environment, write_result

from date_spark.rules import Conjunction, Predicate, Rule, assign_rules, count_rules
from date_spark.testing.planted import planted_regimes_spark


def random_rules(n: int, n_features: int, seed: int) -> list[Rule]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        preds = []
        for _ in range(rng.randint(1, 3)):
            col = f"x{rng.randrange(n_features)}"
            preds.append(Predicate(col, rng.choice(["<", ">="]), round(rng.random(), 3)))
        out.append(Rule((Conjunction(tuple(preds)),)))
    return out


def jobs_of(spark: SparkSession, fn: Callable[[], object]) -> tuple[float, int]:
    tracker = spark.sparkContext.statusTracker()
    group = f"bench-{time.monotonic_ns()}"
    spark.sparkContext.setJobGroup(group, group)
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    n = len(tracker.getJobIdsForGroup(group))
    spark.sparkContext.setJobGroup("idle", "idle")
    return elapsed, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rules", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--name", default="assign_rules", help="results file: results/<name>.json")
    ap.add_argument("--data-dir", default=tempfile.gettempdir(), help="where the table is kept")
    args = ap.parse_args()

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.extraJavaOptions", "-XX:-DontCompileHugeMethods")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    env = environment(spark)
    data = Path(args.data_dir) / f"date_spark_bench_{args.rows}.parquet"
    if not (data / "_SUCCESS").exists():
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
        planted_regimes_spark(spark, args.rows, n_features=20, seed=1).write.mode(
            "overwrite"
        ).parquet(str(data))
    df = spark.read.parquet(str(data))
    rules = random_rules(args.rules, 20, seed=7)

    def one_pass_first() -> object:
        return (
            df.transform(assign_rules(rules, mode="first"))
            .groupBy("_date_rule_id")
            .count()
            .collect()
        )

    def one_pass_all() -> object:
        tagged = df.transform(assign_rules(rules, mode="all", column="ids"))
        return tagged.agg(F.sum(F.size("ids"))).collect()

    def one_agg() -> object:
        return count_rules(df, rules)

    def per_rule() -> object:
        return [df.where(r.to_column()).count() for r in rules]

    cases = [
        ("per_rule", f"{args.rules} x filter().count() (baseline)", per_rule),
        ("assign_first", "assign_rules(first) + groupBy count", one_pass_first),
        ("assign_all", "assign_rules(all) + sum of sizes", one_pass_all),
        ("count_rules", "count_rules: one agg of count(when)", one_agg),
    ]
    jobs_of(spark, lambda: df.count())  # warm up the JVM and file listing
    results = []
    for key, name, fn in cases:
        times, jobs = [], 0
        for _ in range(args.repeats):
            t, jobs = jobs_of(spark, fn)
            times.append(t)
        results.append((key, name, statistics.median(times), jobs))
    base = results[0][2]
    print(
        f"\n{args.rows:,} rows x 20 float columns (Parquet), {args.rules} rules, local[2], "
        f"median of {args.repeats}"
    )
    print(f"{'approach':<42} {'seconds':>8} {'jobs':>5} {'vs baseline':>12}")
    for _, name, t, jobs in results:
        print(f"{name:<42} {t:8.2f} {jobs:5d} {base / t:11.1f}x")
    write_result(
        args.name,
        {"rows": args.rows, "rules": args.rules, "features": 20, "repeats": args.repeats},
        {
            "approaches": {
                key: {"approach": name, "seconds": t, "jobs": jobs, "speedup_vs_baseline": base / t}
                for key, name, t, jobs in results
            }
        },
        env,
    )
    spark.stop()


if __name__ == "__main__":
    main()
