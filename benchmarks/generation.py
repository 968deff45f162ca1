"""Cost of Algorithm 2 per candidate row and per kept row, on the bundled demo table.

    .venv/bin/python benchmarks/generation.py [--iterations 2] [--skip-local] [--name generation]

The same job (`DateSynthesizer.fit`: discovery, generation, selection) runs with the no-LLM
interpolation generator (the baseline), the LLM stub server (protocol and pipeline overhead only)
and the embedded local model (SmolLM2-135M via llama.cpp, one request at a time). Discovery is the
same for all three (same table, same seed). For each generator it reports the generation stage's
seconds, LLM calls and tokens, and divides them by

- candidate rows: generated rows in a candidate arm (a group of generated rows that lowers its
  partition's cross-fitted training loss, gain > 0), what selection chooses from;
- kept rows: rows selection kept, with date-spark's default acceptance rule (a significant
  improvement, confirmed on validation rows) and with the paper's rule (`selection.min_z=0`,
  `selection.confirm=false`: any improvement, no confirmation).

A cost per kept row is null ("no row kept") when selection kept nothing. Ratios are against the
baseline measured in the same run. Writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from recording import environment, write_result

ROOT = Path(__file__).resolve().parents[1]
PER = ("candidate", "kept", "kept_paper_rule")
PAPER_RULE: dict[str, Any] = {"min_z": 0.0, "confirm": False}


def per_row(total: float, rows: int) -> float | None:
    return total / rows if rows else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--name", default="generation", help="results file: results/<name>.json")
    args = ap.parse_args()

    from pyspark.sql import SparkSession

    from date_spark.config import load_config
    from date_spark.synthesizer import DateSynthesizer
    from date_spark.testing.stub import StubServer

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    env = environment(spark)
    tmp = Path(tempfile.mkdtemp(prefix="date-spark-genbench-"))
    cfg = load_config(
        [ROOT / "conf" / "demo.yaml"],
        [
            f"input.path={ROOT / 'date_spark' / 'data' / 'demo_credit.parquet'}",
            f"generation.iterations={args.iterations}",
            "tracking.enabled=false",
        ],
    )

    def run(name: str, over: dict[str, Any]) -> dict[str, Any]:
        c = cfg.with_overrides({**over, "llm.cache_path": str(tmp / f"cache-{name}")})
        synth = DateSynthesizer(c, spark).fit()
        res = synth.generation_
        llm: dict[str, float] = {}
        for r in res.rounds:
            for k, v in r.llm.items():
                llm[k] = llm.get(k, 0.0) + v
        arms = res.arms
        rows = {
            "candidate": int(arms.loc[arms["candidate"], "n_rows"].sum()) if len(arms) else 0,
            "kept": synth.selection_.n_rows,
            "kept_paper_rule": synth.select(**PAPER_RULE).n_rows,
        }
        secs = synth.seconds_["generation"]
        calls = int(llm.get("calls", 0))
        tokens = int(llm.get("prompt_tokens", 0) + llm.get("completion_tokens", 0))
        out: dict[str, Any] = {
            "generator": name,
            "dgrs": len(synth.rules_.dgrs),
            "seconds": secs,
            "calls": calls,
            "tokens": tokens,
            "valid_rows": len(res.rows),
            "rejected_rows": sum(sum(r.rejected.values()) for r in res.rounds),
            "refined_rules": sum(r.refined_rules_used for r in res.rounds),
            "candidate_arms": int(arms["candidate"].sum()) if len(arms) else 0,
            "rows": rows,
        }
        for k in PER:
            out[f"per_{k}_row"] = {
                "seconds": per_row(secs, rows[k]),
                "calls": per_row(calls, rows[k]),
                "tokens": per_row(tokens, rows[k]),
            }
        return out

    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    results.append(run("interpolation", {"generation.generator": "interpolation"}))
    with StubServer() as url:
        results.append(
            run(
                "stub",
                {
                    "llm.provider": "openai",
                    "llm.base_url": url,
                    "llm.api_key_env": None,
                    "llm.structured_output": "json_object",
                },
            )
        )
    if not args.skip_local:
        results.append(run("local-smollm2", {}))  # the synthesizer starts the local server
    base = results[0]["per_candidate_row"]["seconds"]
    for r in results:
        s = r["per_candidate_row"]["seconds"]
        r["seconds_per_candidate_row_vs_baseline"] = s / base if s and base else None

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    print(
        f"\ndemo table (4,000 rows), {results[0]['dgrs']} DGRs, up to "
        f"{cfg.generation.max_rules} rules, {args.iterations} rounds, local[2]; "
        f"{time.perf_counter() - t0:.0f} s in all"
    )
    print(
        "| generator | gen s | calls | tokens | valid | rejected | candidate rows | kept rows "
        "(default / paper rule) | s per candidate row | s per kept row (default / paper) "
        "| calls per candidate row | tokens per candidate row | s/candidate vs baseline (x) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rows, pc = r["rows"], r["per_candidate_row"]
        print(
            f"| {r['generator']} | {r['seconds']:.1f} | {r['calls']} | {r['tokens']} | "
            f"{r['valid_rows']} | {r['rejected_rows']} | {rows['candidate']} | "
            f"{rows['kept']} / {rows['kept_paper_rule']} | {f(pc['seconds'], '.2f')} | "
            f"{f(r['per_kept_row']['seconds'], '.2f')} / "
            f"{f(r['per_kept_paper_rule_row']['seconds'], '.2f')} | "
            f"{f(pc['calls'], '.2f')} | {f(pc['tokens'], '.0f')} | "
            f"{f(r['seconds_per_candidate_row_vs_baseline'], '.1f')} |",
            flush=True,
        )
    write_result(
        args.name,
        {
            "table": "demo_credit (4,000 rows)",
            "iterations": args.iterations,
            "max_rules": cfg.generation.max_rules,
            "requests_per_rule": cfg.generation.requests_per_rule,
            "rows_per_request": cfg.generation.rows_per_request,
            "budget_rows": cfg.selection.budget_rows,
            "generators": [r["generator"] for r in results],
            "candidate_row": "a generated row in a candidate arm (cross-fitted gain > 0)",
            "kept_row": "a row selection kept (default rule; paper rule = selection.min_z 0, "
            "selection.confirm false)",
            "paper_rule": PAPER_RULE,
        },
        {"generators": results},
        env,
    )
    spark.stop()


if __name__ == "__main__":
    main()
