"""The whole job on wide tables: a generated 50,000-row mixed-type table (numeric, text, boolean,
date columns; a label planted in a few of them) at 20 columns (the baseline) and at 300, with the
stub LLM endpoint on 127.0.0.1.

    .venv/bin/python benchmarks/wide_tables.py [--rows 50000] [--cols 20,300]

Each width runs in a fresh process (its own Spark driver, default 1 GB heap), so the peak memory
of one does not leak into the other. Reported per width: seconds per stage (the job's own stage
timers), the driver JVM's peak resident memory (VmHWM of the java process) and the Python
driver's peak (ru_maxrss), with ratios against the 20-column run. Results go to
`benchmarks/results/wide_tables.json` (through `recording.py`: commit, machine, load average); a
width whose run fails is recorded there as failed (and the script exits 1).

The prompt budget is raised for both widths (`generation.prompt_token_budget`): describing 300
columns takes about 4,000 tokens before any example row, and the budget is a hard limit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recording import environment, write_result

STAGES = ("prepare", "discovery", "generation", "selection", "output", "evaluation")
PROMPT_BUDGET = 16_000


def wide_table(n_rows: int, n_cols: int, seed: int = 0) -> pd.DataFrame:
    """Columns cycle through numeric (float), text (5 levels), boolean, date and integer kinds,
    5% nulls in each; label `y` follows two regimes of the first columns with 5% noise."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    base = np.datetime64("2020-01-01")
    for i in range(n_cols - 1):
        kind = i % 5
        if kind == 0:
            v: Any = rng.random(n_rows)
        elif kind == 1:
            v = rng.choice(np.array(["north", "south", "east", "west", "centre"]), n_rows)
        elif kind == 2:
            v = rng.random(n_rows) < 0.5
        elif kind == 3:
            v = base + rng.integers(0, 1500, n_rows).astype("timedelta64[D]")
        else:
            v = rng.integers(0, 100, n_rows)
        s = pd.Series(v)
        if kind == 3:
            s = s.dt.date
        if i >= 5:  # the regime columns stay complete
            s = s.astype(object).where(rng.random(n_rows) > 0.05, None)
        cols[f"f{i:03d}"] = s
    df = pd.DataFrame(cols)
    x0 = df["f000"].astype(float).to_numpy()
    region = df["f001"].astype(str).to_numpy()
    other = df["f005"].astype(float).to_numpy() if n_cols > 6 else x0
    y = np.where(x0 < 0.5, other > 0.6, np.isin(region, ["north", "east"]))
    flip = rng.random(n_rows) < 0.05
    df["y"] = np.where(flip, ~y, y).astype(np.int64)
    return df


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(d.name))
    return out


def _java_pid() -> int | None:
    todo, seen = [os.getpid()], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            if (Path("/proc") / str(pid) / "comm").read_text().strip() == "java":
                return pid
        except OSError:
            continue
        todo += _children(pid)
    return None


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def child(n_rows: int, n_cols: int, out_json: Path) -> None:
    """One width, in this process: generate, run the job, measure."""
    import faulthandler
    import logging
    import signal

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints where a long run is
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("py4j", "urllib3", "httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from date_spark.config import load_config
    from date_spark.synthesizer import DateSynthesizer
    from date_spark.testing.stub import StubServer

    tmp = Path(tempfile.mkdtemp(prefix=f"date-spark-wide-{n_cols}-"))
    table = tmp / "wide.parquet"
    t0 = time.perf_counter()
    wide_table(n_rows, n_cols).to_parquet(table, index=False)
    gen_s = time.perf_counter() - t0

    peak = {"jvm_rss_kb": 0}
    stop = threading.Event()

    def sample() -> None:
        pid = None
        while not stop.is_set():
            pid = pid or _java_pid()
            if pid:
                peak["jvm_rss_kb"] = max(peak["jvm_rss_kb"], _status_kb(pid, "VmRSS"))
                peak["jvm_hwm_kb"] = _status_kb(pid, "VmHWM") or peak.get("jvm_hwm_kb", 0)
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with StubServer() as url:
        cfg = load_config(
            [],
            [
                f"input.path={table}",
                "input.target=y",
                f"output.path={tmp / 'out'}",
                f"output.runs_dir={tmp / 'runs'}",
                "llm.provider=openai",
                f"llm.base_url={url}",
                "llm.api_key_env=null",
                "llm.structured_output=json_object",
                f"llm.cache_path={tmp / 'cache'}",
                f"generation.prompt_token_budget={PROMPT_BUDGET}",
                "tracking.enabled=false",
            ],
        )
        t0 = time.perf_counter()
        result = DateSynthesizer(cfg).run()
        wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    rec = {
        "columns": n_cols,
        "rows": n_rows,
        "table_seconds": round(gen_s, 1),
        "job_seconds": round(wall, 1),
        "stage_seconds": {s: result.summary["seconds"].get(s) for s in STAGES},
        "driver_jvm_peak_rss_mb": round(
            max(peak["jvm_rss_kb"], peak.get("jvm_hwm_kb", 0)) / 1024, 1
        ),
        "driver_python_peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
        "rules": result.summary["rules"],
        "arms": result.summary["arms"],
        "synthetic_rows": result.summary["synthetic_rows"],
        "rows_written": result.output.get("rows"),
    }
    out_json.write_text(json.dumps(rec, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument(
        "--cols", default="20,300", help="comma-separated widths; the first is the baseline"
    )
    ap.add_argument("--name", default="wide_tables", help="results file: results/<name>.json")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.rows, args.child, args.child_out)
        return
    widths = [int(c) for c in args.cols.split(",")]
    from date_spark.config import SparkConfig

    env = {**environment(), "spark_master": SparkConfig().master}  # each child's own session
    records = []
    for n in widths:
        out = Path(tempfile.mkdtemp(prefix="date-spark-wide-res-")) / f"{n}.json"
        print(f"running {n} columns x {args.rows} rows ...", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--rows",
                str(args.rows),
                "--child",
                str(n),
                "--child-out",
                str(out),
            ],
            check=False,
        )
        if proc.returncode != 0:
            # a width that does not finish is a result too: recorded, not hidden
            print(f"the {n}-column run failed (exit {proc.returncode})", flush=True)
            rec = {"columns": n, "rows": args.rows, "failed": f"exit {proc.returncode}"}
        else:
            rec = json.loads(out.read_text())
        rec["process_seconds"] = round(time.perf_counter() - t0, 1)
        records.append(rec)
    finished = [r for r in records if "failed" not in r]
    if finished:
        report(finished)
    write_result(
        args.name,
        {"rows": args.rows, "columns": widths, "baseline_columns": widths[0]},
        {"runs": records, "ratios": ratios(finished)},
        env,
    )
    if len(finished) < len(records):
        raise SystemExit(1)


def _figures(r: dict[str, Any]) -> dict[str, Any]:
    return {
        **{f"{s}_s": r["stage_seconds"].get(s) for s in STAGES},
        "job_s": r["job_seconds"],
        "driver_jvm_peak_mb": r["driver_jvm_peak_rss_mb"],
        "driver_python_peak_mb": r["driver_python_peak_rss_mb"],
    }


def ratios(records: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each width's seconds and peaks over the baseline's (the first width), per figure."""
    if not records:
        return {}
    b = _figures(records[0])
    return {
        str(r["columns"]): {
            k: (round(v / b[k], 2) if v is not None and b.get(k) else None)
            for k, v in _figures(r).items()
        }
        for r in records[1:]
    }


LABELS = {
    **{f"{s}_s": f"{s} (s)" for s in STAGES},
    "job_s": "job (s)",
    "driver_jvm_peak_mb": "driver JVM peak (MB)",
    "driver_python_peak_mb": "driver Python peak (MB)",
}


def report(records: list[dict[str, Any]]) -> None:
    """The table the results file holds: each width, then its ratio to the baseline's."""
    base, rest = records[0], records[1:]
    head = f"{'':24}" + "".join(f"{str(r['columns']) + ' cols':>14}" for r in records)
    head += "".join(f"{'x' + str(r['columns']) + '/' + str(base['columns']):>12}" for r in rest)
    print(head)
    figs, rel = [_figures(r) for r in records], ratios(records)
    for key, label in LABELS.items():
        text = f"{label:24}" + "".join(
            f"{f[key]:>14.1f}" if f[key] is not None else f"{'-':>14}" for f in figs
        )
        for r in rest:
            v = rel[str(r["columns"])][key]
            text += f"{v:>12.2f}" if v is not None else f"{'-':>12}"
        print(text)
    for r in records:
        print(
            f"{r['columns']} cols: {r['rules']} rules, {r['arms']} arms, "
            f"{r['synthetic_rows']} synthetic rows kept, {r['rows_written']} rows written"
        )


if __name__ == "__main__":
    main()
