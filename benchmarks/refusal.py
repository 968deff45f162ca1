"""Time to refuse bad input: `date-spark run` (checks before Spark) vs the library's own checks.

    .venv/bin/python benchmarks/refusal.py [--repeats 1] [--paths cli,library]

Each case is a bad input a new user hits in the first hour. Two paths run it as a fresh process:
`cli` is `date-spark run` as shipped (config, paths, overlap, key variable, local model and the
file's header and schema are checked before a SparkSession starts); `library` is
`DateSynthesizer(load_config(...)).run()`, the baseline, where the same problems surface only
once Spark has started and, for a missing key or model, after discovery. Prints seconds, exit code
and stderr lines per case and path with the ratio library / cli, and writes
benchmarks/results/<name>.json (`--name`, default refusal) with the commit, machine and parameters
(`benchmarks/recording.py`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recording import environment, write_result

from date_spark.testing.planted import demo_credit

ROWS = 400  # rows of the demo table in each bad input

LIBRARY = """
import sys
from date_spark.config import load_config
from date_spark.errors import DateSparkError
from date_spark.synthesizer import DateSynthesizer
try:
    DateSynthesizer(load_config([], sys.argv[1:])).run()
except DateSparkError as err:
    print(f"date-spark: error: {err}", file=sys.stderr)
    sys.exit(err.exit_code)
"""


def cases(tmp: Path) -> dict[str, list[str]]:
    good = tmp / "good.parquet"
    demo_credit(ROWS).to_parquet(good, index=False)
    csv = tmp / "good.csv"
    demo_credit(ROWS).to_csv(csv, index=False)
    arr = tmp / "tags.parquet"
    t = pa.Table.from_pandas(demo_credit(ROWS), preserve_index=False)
    pq.write_table(t.append_column("tags", pa.array([["a"]] * t.num_rows)), arr)
    fast = ["generation.generator=interpolation", "tracking.enabled=false"]

    def base(path: Path, target: str = "default", fmt: str = "parquet") -> list[str]:
        return [f"input.path={path}", f"input.format={fmt}", f"input.target={target}"]

    return {
        "missing file": [*base(tmp / "nope.parquet"), *fast],
        "missing target (parquet)": [*base(good, "defaulted"), *fast],
        "missing target (csv)": [*base(csv, "defaulted", "csv"), *fast],
        "unsupported column type": [*base(arr), *fast],
        "API key variable unset": [
            *base(good),
            "tracking.enabled=false",
            "llm.provider=openai",
            "llm.base_url=http://127.0.0.1:9/v1",
            "llm.api_key_env=DATE_SPARK_BENCH_UNSET_KEY",
        ],
        "local model file missing": [
            *base(good),
            "tracking.enabled=false",
            f"llm.local.model_path={tmp / 'nope.gguf'}",
        ],
    }


def run_once(path: str, overrides: list[str], tmp: Path, n: int) -> dict[str, object]:
    out, runs = tmp / f"out{n}", tmp / f"runs{n}"
    sets = [*overrides, f"output.path={out}", f"output.runs_dir={runs}"]
    if path == "cli":
        cmd = [sys.executable, "-m", "date_spark.cli", "run"]
        for s in sets:
            cmd += ["--set", s]
    else:
        cmd = [sys.executable, "-c", LIBRARY, *sets]
    env = {k: v for k, v in os.environ.items() if k != "DATE_SPARK_BENCH_UNSET_KEY"}
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, check=False)
    secs = time.perf_counter() - t0
    err_lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    last = next((ln for ln in reversed(err_lines) if ln.startswith("date-spark: error")), "")
    return {
        "seconds": round(secs, 2),
        "exit_code": res.returncode,
        "stderr_lines": len(err_lines),
        "message": last[:300],
        "wrote_run_dir": runs.exists(),
    }


def summarize(
    results: dict[str, dict[str, dict[str, object]]], paths: list[str]
) -> dict[str, dict[str, object]]:
    """Per path, the spread over the cases (what the README quotes) and the ratio to `cli`."""
    out: dict[str, dict[str, object]] = {}
    for p in paths:
        runs = [per[p] for per in results.values()]
        secs = [float(str(r["seconds"])) for r in runs]
        lines = [int(str(r["stderr_lines"])) for r in runs]
        out[p] = {
            "cases": len(runs),
            "seconds_min": min(secs),
            "seconds_max": max(secs),
            "stderr_lines_min": min(lines),
            "stderr_lines_max": max(lines),
            "exit_codes": sorted({int(str(r["exit_code"])) for r in runs}),
            "wrote_run_dir": sum(1 for r in runs if r["wrote_run_dir"]),
        }
        if p != "cli" and "cli" in paths:
            ratios = [
                float(str(per[p]["seconds"])) / float(str(per["cli"]["seconds"]))
                for per in results.values()
            ]
            out[p]["vs_cli_min"] = round(min(ratios), 1)
            out[p]["vs_cli_max"] = round(max(ratios), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--paths", default="cli,library")
    ap.add_argument("--name", default="refusal", help="results file: results/<name>.json")
    args = ap.parse_args()
    paths = args.paths.split(",")
    env = environment()
    results: dict[str, dict[str, dict[str, object]]] = {}
    n = 0
    with tempfile.TemporaryDirectory(prefix="date-spark-refusal-") as d:
        tmp = Path(d)
        for name, overrides in cases(tmp).items():
            results[name] = {}
            for path in paths:
                runs = []
                for _ in range(args.repeats):
                    n += 1
                    runs.append(run_once(path, overrides, tmp, n))
                best = dict(runs[-1])
                best["seconds"] = statistics.median(float(str(r["seconds"])) for r in runs)
                results[name][path] = best
                print(f"  {name} / {path}: {best['seconds']:.1f} s, exit {best['exit_code']}")
    head = f"{'case':<28}" + "".join(f"{p + ' s':>12}{'exit':>6}{'lines':>7}" for p in paths)
    if "cli" in paths and "library" in paths:
        head += f"{'library/cli':>13}"
    print(head)
    for name, per in results.items():
        line = f"{name:<28}"
        for p in paths:
            r = per[p]
            line += (
                f"{float(str(r['seconds'])):>12.1f}{r['exit_code']!s:>6}{r['stderr_lines']!s:>7}"
            )
        if "cli" in per and "library" in per:
            ratio = float(str(per["library"]["seconds"])) / float(str(per["cli"]["seconds"]))
            line += f"{ratio:>12.1f}x"
        print(line)
    for name, per in results.items():
        for p in paths:
            print(f"{name} / {p}: {per[p]['message']}")
    write_result(
        args.name,
        {"repeats": args.repeats, "paths": paths, "rows": ROWS, "cases": list(results)},
        {"summary": summarize(results, paths), "results": results},
        env,
    )


if __name__ == "__main__":
    main()
