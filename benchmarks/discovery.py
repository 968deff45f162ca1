"""Benchmark: DGR discovery (Algorithm 1) on Spark vs the same search in single-machine pandas.

    .venv/bin/python benchmarks/discovery.py [--sizes 1e5,1e6,1e7] [--pandas-max 1e7]
        [--name discovery] [--data-dir /tmp/date-spark-bench] [--set k=v ...]

Generates planted-regime tables (20 features + c0 + y, 5 regimes, 5% label noise) as Parquet with
`datasets.planted_regimes_spark` (kept between runs), runs `discover` on local[2] and reports, per
size and per level:
- wall seconds, and Spark jobs per level (the status REST API: jobs submitted during the level);
- full-table scans per level, measured twice: from Spark's stage input records (rows read from the
  Parquet files by the level's stages / the table's rows) and from the library's own observed row
  counter (`LevelStats.scans`, what the discovery log prints);
- planted regimes recovered (a DGR whose rows are >= 90% one regime and which holds >= 80% of that
  regime's rows) and the row-weighted purity, scored on every row of the table;
- the same search over a pandas backend (every mask and sample in pandas/numpy, models in
  scikit-learn, one process; `run_search` with the library's loop and per-candidate evaluation, so
  the ratio measures the engine, not two algorithms): seconds, recovery, and pandas / Spark.

Writes benchmarks/results/<name>.json. The ground-truth regime is computed from x0, c0 and x5
(`datasets.planted_regime`), never stored in the table the search reads.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd
import yaml
from pandas_backend import PandasBackend
from pyspark.sql import SparkSession
from recording import environment, write_result
from spark_rest import UI_CONF, SparkRest

from date_spark.config import DiscoveryConfig
from date_spark.discovery import Discovery, discover, run_search
from date_spark.schema import ColumnSpec, Kind, TableSchema, column_specs
from date_spark.testing.planted import (
    planted_regime,
    planted_regimes_spark,
    planted_truth,
    regime_recovery,
)

N_FEATURES = 20


@dataclass
class LevelClock(logging.Handler):
    """The wall-clock time of every per-level log line of discovery: the level boundaries."""

    marks: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        logging.Handler.__init__(self, logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("discovery level"):
            self.marks.append(record.created)

    def __hash__(self) -> int:
        return id(self)


def session() -> SparkSession:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    b = (
        SparkSession.builder.master("local[2]")
        .appName("date-spark-bench")
        .config("spark.driver.memory", "6g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "20000")
        .config("spark.driver.extraJavaOptions", "-XX:-DontCompileHugeMethods")
    )
    for k, v in UI_CONF.items():  # the status REST API counts jobs and input records
        b = b.config(k, v)
    s = b.getOrCreate()
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
    spark: SparkSession, rest: SparkRest, path: Path, schema: TableSchema, cfg: DiscoveryConfig
) -> tuple[Discovery, float, list[dict[str, Any]]]:
    clock = LevelClock()
    log = logging.getLogger("date_spark.discovery")
    log.addHandler(clock)
    try:
        start = time.time()
        t = time.perf_counter()
        d = discover(spark.read.parquet(str(path)), schema, cfg, seed=42)
        wall = time.perf_counter() - t
    finally:
        log.removeHandler(clock)
    table_rows = spark.read.parquet(str(path)).count()
    levels = []
    for s, (jobs, records) in zip(
        d.levels, rest.phases(clock.marks, after=start - 0.001), strict=True
    ):
        levels.append(
            {
                "level": s.level,
                "candidates": s.candidates,
                "evaluated": s.evaluated,
                "accepted": s.accepted,
                "shared": s.shared,
                "coverage": s.coverage,
                "seconds": s.seconds,
                "jobs": len(jobs),
                "input_records": records,
                "scans": records / table_rows,  # Spark's input metrics
                "scans_observed": s.scans,  # the library's counter (the log line)
            }
        )
    return d, wall, levels


def spark_recovery(spark: SparkSession, path: Path, d: Discovery) -> dict[str, Any]:
    """Every row of the table routed to its DGR and counted by planted regime (one pass)."""
    rows = (
        d.route(column="rule")(spark.read.parquet(str(path)))
        .groupBy("rule", planted_regime().alias("regime"))
        .count()
        .withColumnRenamed("count", "n")
        .toPandas()
    )
    return regime_recovery(rows)


def pandas_recovery(pdf: pd.DataFrame, d: Discovery) -> dict[str, Any]:
    regime = planted_truth(pdf)["regime"]
    rule = pd.Series(None, index=pdf.index, dtype=object)
    for g in d.dgrs:  # DGRs are disjoint: each row gets at most one
        rule[g.rule.mask(pdf).to_numpy()] = g.rule_id
    counts = (
        pd.DataFrame({"rule": rule, "regime": regime})
        .groupby(["rule", "regime"], dropna=False)
        .size()
        .rename("n")
        .reset_index()
    )
    return regime_recovery(counts)


def run_pandas(path: Path, schema: TableSchema, cfg: DiscoveryConfig) -> dict[str, Any]:
    t = time.perf_counter()
    pdf = pd.read_parquet(path)
    load = time.perf_counter() - t
    t = time.perf_counter()
    d = run_search(PandasBackend(pdf, schema, 42), schema, cfg, seed=42)
    search = time.perf_counter() - t
    rec = pandas_recovery(pdf, d)
    return {"disc": d, "seconds": search, "load_seconds": load, "recovery": rec}


def brief(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in ("regimes", "recovered", "recovered_regimes", "purity")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e5,1e6,1e7")
    ap.add_argument("--pandas-max", default="1e7", help="largest size the pandas baseline runs")
    ap.add_argument("--name", default="discovery", help="results file: results/<name>.json")
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
    env = environment(spark)
    rest = SparkRest(spark)
    overrides = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args.set)}
    cfg = DiscoveryConfig(**overrides)
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
    runs: list[dict[str, Any]] = []
    for n in sizes:
        print(f"\n=== {n:,} rows x {N_FEATURES} features + c0 ===", flush=True)
        path = ensure_table(spark, n, root)
        schema = schema_of(spark, path)
        d, wall, levels = run_spark(spark, rest, path, schema, cfg)
        rec = spark_recovery(spark, path, d)
        print(
            f"  spark: {wall:.1f} s, {len(d.levels)} levels, DGRs {len(d.dgrs)}, "
            f"coverage {d.coverage:.3f}, trained {d.trainings}, shared {d.shared}; "
            f"regimes recovered {rec['recovered']}/{rec['regimes']}, purity {rec['purity']:.3f}",
            flush=True,
        )
        print(
            "  level | candidates | evaluated | accepted | shared | coverage | seconds | "
            "jobs | scans (input records) | scans (observed)"
        )
        for lv in levels:
            obs = lv["scans_observed"]
            print(
                f"  {lv['level']:>5} | {lv['candidates']:>10} | {lv['evaluated']:>9} | "
                f"{lv['accepted']:>8} | {lv['shared']:>6} | {lv['coverage']:>8.3f} | "
                f"{lv['seconds']:>7.1f} | {lv['jobs']:>4} | {lv['scans']:>21.2f} | "
                f"{'not measured' if obs is None else f'{obs:.2f}':>16}"
            )
        for g in d.dgrs:
            print(
                f"    {g.rule_id}: support {g.support:,}, error {g.val_error:.3f}: "
                f"{g.rule.to_text()}"
            )
        run: dict[str, Any] = {
            "rows": n,
            "spark": {
                "seconds": wall,
                "levels": levels,
                "jobs": sum(lv["jobs"] for lv in levels),
                "max_jobs_per_level": max(lv["jobs"] for lv in levels),
                "max_scans_per_level": max(lv["scans"] for lv in levels),
                "dgrs": len(d.dgrs),
                "coverage": d.coverage,
                "trainings": d.trainings,
                "shared": d.shared,
                "incomplete": d.incomplete,
                "rules": [g.rule.to_text() for g in d.dgrs],
                **brief(rec),
            },
            "pandas": None,
            "pandas_over_spark": None,
        }
        if n <= pandas_max:
            p = run_pandas(path, schema, cfg)
            pd_disc: Discovery = p["disc"]
            same = [g.rule for g in pd_disc.dgrs] == [g.rule for g in d.dgrs]
            total = p["seconds"] + p["load_seconds"]
            run["pandas"] = {
                "seconds": p["seconds"],
                "load_seconds": p["load_seconds"],
                "dgrs": len(pd_disc.dgrs),
                "same_rules": same,
                **brief(p["recovery"]),
            }
            run["pandas_over_spark"] = total / wall
            print(
                f"  pandas: {p['seconds']:.1f} s (+ {p['load_seconds']:.1f} s to load), "
                f"{'same rules' if same else f'{len(pd_disc.dgrs)} DGRs'}, regimes recovered "
                f"{p['recovery']['recovered']}/{p['recovery']['regimes']}, purity "
                f"{p['recovery']['purity']:.3f}",
                flush=True,
            )
        runs.append(run)

    print(
        "\n| rows | spark s | levels | jobs (max/level) | scans/level max (input records) "
        "| regimes recovered | purity | DGRs | coverage | pandas s (incl. load) "
        "| pandas recovered | pandas / spark |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        s, p = r["spark"], r["pandas"]
        pw = f"{p['seconds'] + p['load_seconds']:.1f}" if p else "not run"
        prec = f"{p['recovered']}/{p['regimes']}" if p else "-"
        ratio = f"{r['pandas_over_spark']:.2f}" if p else "n/a"
        print(
            f"| {r['rows']:,} | {s['seconds']:.1f} | {len(s['levels'])} | {s['jobs']} "
            f"({s['max_jobs_per_level']}) | {s['max_scans_per_level']:.2f} | "
            f"{s['recovered']}/{s['regimes']} | {s['purity']:.3f} | {s['dgrs']} | "
            f"{s['coverage']:.3f} | {pw} | {prec} | {ratio} |"
        )
    write_result(
        args.name,
        {
            "sizes": sizes,
            "pandas_max": pandas_max,
            "features": N_FEATURES,
            "noise": 0.05,
            "regimes": 5,
            "discovery": cfg.model_dump(mode="json"),
            "overrides": overrides,
            "recovery": "a DGR with >= 90% of its rows from one regime holding >= 80% of it",
        },
        {"runs": runs},
        env,
    )
    spark.stop()


if __name__ == "__main__":
    main()
