"""Cost of Algorithm 2 per accepted row, on the bundled demo table.

    .venv/bin/python benchmarks/generation.py [--iterations 2] [--skip-local]

Discovery runs once; then the same generation stage runs with the no-LLM interpolation generator
(the baseline), the LLM stub server (protocol and pipeline overhead only), and the embedded local
model (SmolLM2-135M via llama.cpp, one request at a time). An accepted row is a row in a candidate
arm (a tree-path group whose validation gain is > 0). Ratios are against the baseline measured in
the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--skip-local", action="store_true")
    args = ap.parse_args()

    from pyspark.sql import SparkSession

    from date_spark.config import load_config
    from date_spark.generation import DGR_COL, Generator
    from date_spark.llm.local import LocalModelServer
    from date_spark.llm.stub import StubServer
    from date_spark.synthesizer import DateSynthesizer

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    tmp = Path(tempfile.mkdtemp(prefix="date-spark-genbench-"))
    cfg = load_config(
        [ROOT / "conf" / "demo.yaml"],
        [
            f"input.path={ROOT / 'date_spark' / 'data' / 'demo_credit.parquet'}",
            f"generation.iterations={args.iterations}",
            "tracking.enabled=false",
        ],
    )
    synth = DateSynthesizer(cfg, spark).prepare()
    from date_spark.discovery import discover
    from date_spark.split import SPLIT_COL, TEST

    t0 = time.perf_counter()
    found = discover(
        synth.data_.where(f"{SPLIT_COL} != '{TEST}'"), synth.schema_, cfg.discovery, seed=cfg.seed
    )
    print(f"discovery: {len(found.dgrs)} DGRs in {time.perf_counter() - t0:.1f}s")

    def run(name: str, over: dict[str, Any], base_url: str | None) -> dict[str, Any]:
        c = cfg.with_overrides({**over, "llm.cache_path": str(tmp / f"cache-{name}")})
        t = time.perf_counter()
        res = Generator(
            synth.data_,
            found,
            synth.schema_,
            c,
            route=found.route(column=DGR_COL),
            base_url=base_url,
        ).run()
        secs = time.perf_counter() - t
        llm: dict[str, float] = {}
        for r in res.rounds:
            for k, v in r.llm.items():
                llm[k] = llm.get(k, 0.0) + v
        accepted = int(res.arms.loc[res.arms["candidate"], "n_rows"].sum()) if len(res.arms) else 0
        rejected = sum(sum(r.rejected.values()) for r in res.rounds)
        return {
            "name": name,
            "seconds": secs,
            "calls": int(llm.get("calls", 0)),
            "tokens": int(llm.get("prompt_tokens", 0) + llm.get("completion_tokens", 0)),
            "valid": len(res.rows),
            "rejected": rejected,
            "accepted": accepted,
            "refined": sum(r.refined_rules_used for r in res.rounds),
        }

    print(
        f"\ndemo table (4,000 rows), {len(found.dgrs)} DGRs, up to {cfg.generation.max_rules} "
        f"rules, {args.iterations} rounds, local[2]"
    )
    hdr = (
        f"{'generator':<26} {'secs':>7} {'calls':>6} {'tokens':>8} {'valid':>6} {'rejected':>8} "
        f"{'accepted':>8} {'calls/acc':>9} {'tok/acc':>8} {'s/acc':>7} {'s/acc vs base':>13}"
    )
    print(hdr, flush=True)
    rows: list[dict[str, Any]] = []

    def show(r: dict[str, Any]) -> None:
        rows.append(r)
        base = rows[0]["seconds"] / max(1, rows[0]["accepted"])
        acc = max(1, r["accepted"])
        spa = r["seconds"] / acc
        print(
            f"{r['name']:<26} {r['seconds']:7.1f} {r['calls']:6d} {r['tokens']:8d} {r['valid']:6d} "
            f"{r['rejected']:8d} {r['accepted']:8d} {r['calls'] / acc:9.2f} "
            f"{r['tokens'] / acc:8.0f} {spa:7.2f} {spa / base:12.1f}x",
            flush=True,
        )

    show(run("interpolation (baseline)", {"generation.generator": "interpolation"}, None))
    with StubServer() as url:
        show(
            run(
                "LLM stub (127.0.0.1)",
                {
                    "llm.provider": "openai",
                    "llm.api_key_env": None,
                    "llm.structured_output": "json_object",
                },
                url,
            )
        )
    if not args.skip_local:
        with LocalModelServer(cfg.llm.local) as url:
            show(run("local SmolLM2-135M", {}, url))
    spark.stop()


if __name__ == "__main__":
    main()
