"""Benchmark: DGR discovery (Algorithm 1) on Spark vs the same search in single-machine pandas.

    .venv/bin/python benchmarks/discovery.py [--sizes 1e5,1e6,1e7] [--pandas-max 1e7]
                                             [--data-dir /tmp/date-spark-bench] [--set k=v ...]

Generates planted-regime tables (20 features + c0 + y, 5% label noise) as Parquet with
`datasets.planted_regimes_spark` (kept between runs), runs `discover` on local[2] and prints, per
size, the wall time, Spark jobs per level (counted with the status tracker: benchmark only, the
library never touches `sparkContext`), trained vs shared models, and the same search run by
`run_search` over a pandas backend (every mask and sample in pandas/numpy, one process) as a
ratio. The pandas run uses the library's search loop and per-candidate evaluation, so the ratio
measures the engine, not two different algorithms.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd
import yaml
from pandas_backend import PandasBackend
from pyspark.sql import SparkSession

from date_spark.config import DiscoveryConfig
from date_spark.datasets import planted_regimes_spark
from date_spark.discovery import Discovery, discover, run_search
from date_spark.schema import ColumnSpec, Kind, TableSchema, column_specs

N_FEATURES = 20


@dataclass
class JobCounter(logging.Handler):
    """Snapshots the number of Spark jobs at every per-level log line of discovery."""

    spark: SparkSession
    marks: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        logging.Handler.__init__(self, logging.INFO)

    def jobs(self) -> int:
        tracker = self.spark.sparkContext.statusTracker()
        return len(tracker.getJobIdsForGroup())

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("discovery level"):
            self.marks.append(self.jobs())

    def __hash__(self) -> int:
        return id(self)


def session() -> SparkSession:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    s = (
        SparkSession.builder.master("local[2]")
        .appName("date-spark-bench")
        .config("spark.driver.memory", "6g")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "20000")
        .config("spark.driver.extraJavaOptions", "-XX:-DontCompileHugeMethods")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")
    return s


def ensure_table(spark: SparkSession, n: int, root: Path) -> Path:
    path = root / f"planted_{n}.parquet"
    if not (path / "_SUCCESS").exists():
        t = time.time()
        parts = max(2, n // 500_000)
        planted_regimes_spark(
            spark, n, N_FEATURES, noise=0.05, seed=1, num_partitions=parts
        ).write.mode("overwrite").parquet(str(path))
        print(f"  generated {n:,} rows in {time.time() - t:.1f} s -> {path}", flush=True)
    return path


def schema_of(spark: SparkSession, path: Path) -> TableSchema:
    specs = column_specs(spark.read.parquet(str(path)).schema)
    cols = tuple(
        ColumnSpec(c.name, c.kind, c.spark_type, c.nullable, c.integral)
        if c.name != "y"
        else ColumnSpec("y", Kind.NUMERIC, c.spark_type, c.nullable, True)
        for c in specs
    )
    return TableSchema(cols, "y", "classification", (0, 1))


def run_spark(
    spark: SparkSession, path: Path, schema: TableSchema, cfg: DiscoveryConfig
) -> tuple[Discovery, float, list[int]]:
    counter = JobCounter(spark)
    log = logging.getLogger("date_spark.discovery")
    log.addHandler(counter)
    try:
        start_jobs = counter.jobs()
        t = time.time()
        d = discover(spark.read.parquet(str(path)), schema, cfg, seed=42)
        wall = time.time() - t
    finally:
        log.removeHandler(counter)
    marks = [start_jobs, *counter.marks]
    per_level = [b - a for a, b in itertools.pairwise(marks)]
    return d, wall, per_level


def run_pandas(
    path: Path, schema: TableSchema, cfg: DiscoveryConfig
) -> tuple[Discovery, float, float]:
    t = time.time()
    pdf = pd.read_parquet(path)
    load = time.time() - t
    t = time.time()
    d = run_search(PandasBackend(pdf, schema, 42), schema, cfg, seed=42)
    return d, time.time() - t, load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e5,1e6,1e7")
    ap.add_argument("--pandas-max", default="1e7", help="largest size the pandas baseline runs")
    ap.add_argument("--data-dir", default="/tmp/date-spark-bench")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="DiscoveryConfig override, e.g. --set splits_per_candidate=null",
    )
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    pandas_max = int(float(args.pandas_max))
    root = Path(args.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("date_spark.discovery").setLevel(logging.INFO)

    spark = session()
    cfg = DiscoveryConfig(**{k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args.set)})
    print(f"config: {cfg}", flush=True)
    t = time.time()  # untimed warm-up: JVM code paths and Python workers importing sklearn
    warm = ensure_table(spark, 20_000, root)
    discover(
        spark.read.parquet(str(warm)),
        schema_of(spark, warm),
        cfg.model_copy(update={"max_levels": 2}),
        seed=0,
    )
    print(f"warm-up (cold start, not counted): {time.time() - t:.1f} s", flush=True)
    rows = []
    for n in sizes:
        print(f"\n=== {n:,} rows x {N_FEATURES} features + c0 ===", flush=True)
        path = ensure_table(spark, n, root)
        schema = schema_of(spark, path)
        d, wall, jobs = run_spark(spark, path, schema, cfg)
        print(
            f"  spark: {wall:.1f} s, {len(d.levels)} levels, DGRs {len(d.dgrs)}, "
            f"coverage {d.coverage:.3f}, trained {d.trainings}, shared {d.shared}",
            flush=True,
        )
        print(
            "  level | candidates | evaluated | accepted | shared | coverage | seconds | "
            "spark jobs | full scans"
        )
        for s, j in zip(d.levels, jobs, strict=False):
            print(
                f"  {s.level:>5} | {s.candidates:>10} | {s.evaluated:>9} | {s.accepted:>8} | "
                f"{s.shared:>6} | {s.coverage:>8.3f} | {s.seconds:>7.1f} | {j:>10} | "
                f"{s.scans:>10}"
            )
        for g in d.dgrs:
            print(
                f"    {g.rule_id}: support {g.support:,}, error {g.val_error:.3f}: "
                f"{g.rule.to_text()}"
            )
        pwall = float("nan")
        same = ""
        if n <= pandas_max:
            pd_disc, pwall, load = run_pandas(path, schema, cfg)
            same = (
                "same rules"
                if [g.rule for g in pd_disc.dgrs] == [g.rule for g in d.dgrs]
                else f"{len(pd_disc.dgrs)} DGRs"
            )
            print(f"  pandas: {pwall:.1f} s (+ {load:.1f} s to load), {same}", flush=True)
        rows.append(
            (
                n,
                wall,
                len(d.levels),
                sum(jobs),
                max(jobs, default=0),
                d.trainings,
                d.shared,
                len(d.dgrs),
                d.coverage,
                pwall,
                same,
            )
        )

    print(
        "\n| rows | spark wall s | levels | spark jobs (max/level) | trained | shared | DGRs "
        "| coverage | pandas wall s | pandas / spark |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, wall, lv, jobs, jmax, tr, sh, ndgr, cov, pwall, _same in rows:
        ratio = f"{pwall / wall:.2f}" if pwall == pwall else "n/a"
        pw = f"{pwall:.1f}" if pwall == pwall else "not run"
        print(
            f"| {n:,} | {wall:.1f} | {lv} | {jobs} ({jmax}) | {tr} | {sh} | {ndgr} | {cov:.3f} "
            f"| {pw} | {ratio} |"
        )
    spark.stop()


if __name__ == "__main__":
    main()
