"""What a whole job costs at each table size, and where the time goes.

    PYTHONPATH=. .venv/bin/python benchmarks/job_cost.py [--sizes 300,5000,50000,1e6] [--with-1e7]

The planted-regimes table (`date_spark.testing.planted`: x0..x17, c0, y; 20 columns) at each size is
written once as Parquet under `--data-dir` (git-ignored `.bench-data/`). For each size, in fresh
processes (each with its own Spark driver):

- **baseline**: a bare `local[2]` Spark start, read of the same file and `count()`;
- **job**: `DateSynthesizer(config).run()` on the file, the LLM an instant stub endpoint on
  127.0.0.1 (`StubServer`, `generation.generator: llm`), MLflow tracking on (a sqlite file in a
  temporary directory, as a user's run has it).

Per stage (the job's own stage timers; `prepare` includes the Spark session start): seconds, the
Spark jobs, stages and tasks the stage ran (counted by the job tags the synthesizer sets,
`date-spark-<stage>`, read from the status tracker in this benchmark only; the library never
touches `sparkContext`), and the call sites of its Spark jobs (`--detail`). Per run: the driver
JVM's peak resident memory (in local mode the executors run inside it), the Python driver's peak,
the largest Python worker's peak and how many Python worker processes were seen (sampled every
0.2 s, so a lower bound). At the smallest size the CLI end to end (`date-spark run FILE --target y
--out DIR`, process wall time) is measured too.

The must-show figure is `job / baseline` at 300 rows (issue 21: at most 2x). Every figure is
printed beside the load average, and everything goes to `benchmarks/results/<name>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recording import ROOT, environment, write_result

STAGES = ("prepare", "discovery", "generation", "selection", "output", "evaluation")
N_FEATURES = 18  # x0..x17 + c0 + y = 20 columns


def _size(text: str) -> int:
    return int(float(text))


def table_path(data_dir: Path, n_rows: int) -> Path:
    return data_dir / f"job_cost_{n_rows}x20.parquet"


def ensure_table(data_dir: Path, n_rows: int) -> Path:
    """The planted table at `n_rows`, written once (pandas up to 1e6 rows, Spark beyond)."""
    path = table_path(data_dir, n_rows)
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if n_rows <= 1_000_000:
        from date_spark.testing.planted import planted_regimes

        df = planted_regimes(n_rows, n_features=N_FEATURES, seed=0, with_regime=False)
        tmp.mkdir(parents=True, exist_ok=True)
        df.to_parquet(tmp / "part-0.parquet", index=False)
    else:
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "table",
                "--rows",
                str(n_rows),
                "--table",
                str(tmp),
            ],
            check=True,
        )
    tmp.rename(path)
    return path


# -- process sampling (driver JVM, Python workers) ------------------------------------------------
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


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for c in _children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def _comm(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler:
    """Peak memory of the driver JVM and of Python workers (children of the JVM), every 0.2 s."""

    def __init__(self) -> None:
        self.jvm_kb = 0
        self.worker_kb = 0
        self.workers: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for pid in _descendants(me):
                name = _comm(pid)
                if name == "java":
                    self.jvm_kb = max(self.jvm_kb, _status_kb(pid, "VmHWM"))
                elif name.startswith("python"):
                    self.workers.add(pid)
                    self.worker_kb = max(self.worker_kb, _status_kb(pid, "VmHWM"))
            self._stop.wait(0.2)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict[str, Any]:
        return {
            "driver_jvm_peak_mb": round(self.jvm_kb / 1024, 1),
            "driver_python_peak_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
            "python_worker_peak_mb": round(self.worker_kb / 1024, 1),
            # pyspark.daemon plus the workers it forked (sampled, so a lower bound)
            "python_processes_seen": len(self.workers),
        }


# -- Spark jobs per stage (status tracker: benchmark only) --------------------------------------
def spark_jobs(spark: Any, detail: bool) -> dict[str, Any]:
    """Jobs, tasks and job seconds per stage, from the job tags the synthesizer sets (a session
    tag `t` shows up as a job tag ending in `-t`); jobs without one as `untagged`."""
    store = spark.sparkContext._jsc.sc().statusStore()
    jobs = store.jobsList(None)
    per: dict[str, dict[str, Any]] = {
        s: {"jobs": 0, "tasks": 0, "job_s": 0.0, "names": {}} for s in [*STAGES, "untagged"]
    }
    for i in range(jobs.size()):
        j = jobs.apply(i)
        tags = str(j.jobTags().mkString("\n")).splitlines()
        stage = next(
            (s for s in STAGES if any(t.endswith(f"-date-spark-{s}") for t in tags)), "untagged"
        )
        v = per[stage]
        v["jobs"] += 1
        v["tasks"] += int(j.numTasks())
        sub, done = j.submissionTime(), j.completionTime()
        if sub.isDefined() and done.isDefined():
            v["job_s"] += (done.get().getTime() - sub.get().getTime()) / 1000
        desc = j.description()
        name = (str(desc.get()) if desc.isDefined() else str(j.name())) if detail else ""
        v["names"][name] = v["names"].get(name, 0) + 1
    for v in per.values():
        v["job_s"] = round(v["job_s"], 2)
        names = v.pop("names")
        if detail:
            v["call_sites"] = dict(sorted(names.items(), key=lambda kv: -kv[1]))
    return per


# -- children -----------------------------------------------------------------------------------
def child_table(n_rows: int, out: Path) -> None:
    from pyspark.sql import SparkSession

    from date_spark.testing.planted import planted_regimes_spark

    spark = (
        SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    )
    planted_regimes_spark(spark, n_rows, n_features=N_FEATURES, seed=0).write.parquet(str(out))
    spark.stop()


def child_baseline(table: Path, out: Path) -> None:
    """A bare Spark start, read and count."""
    t0 = time.perf_counter()
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[2]").getOrCreate()
    t1 = time.perf_counter()
    rows = spark.read.parquet(str(table)).count()
    t2 = time.perf_counter()
    out.write_text(
        json.dumps(
            {
                "rows": rows,
                "seconds": round(t2 - t0, 2),
                "session_start_s": round(t1 - t0, 2),
                "read_count_s": round(t2 - t1, 2),
            }
        )
    )
    spark.stop()


def _job_config(table: Path, tmp: Path, url: str, extra: list[str]) -> list[str]:
    return [
        f"input.path={table}",
        "input.format=parquet",
        "input.target=y",
        f"output.path={tmp / 'out'}",
        f"output.runs_dir={tmp / 'runs'}",
        "llm.provider=openai",
        f"llm.base_url={url}",
        "llm.api_key_env=null",
        "llm.structured_output=json_object",
        f"llm.cache_path={tmp / 'cache'}",
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        # the status tracker forgets jobs beyond spark.ui.retainedJobs (1000)
        "spark.conf={'spark.ui.retainedJobs': '100000', 'spark.ui.retainedStages': '100000'}",
        *extra,
    ]


class FitCounter:
    """Every scikit-learn fit of the job, counted and timed per job stage (`--fits`). The job runs
    with one driver worker and every step on the driver (module doc), so all fits happen in this
    process: their seconds are the model-fitting work the job's method asks for, whatever the
    placement. Nested fits (a forest's trees) count once, in the outer fit."""

    CLASSES = (
        ("sklearn.ensemble", "HistGradientBoostingClassifier"),
        ("sklearn.ensemble", "HistGradientBoostingRegressor"),
        ("sklearn.ensemble", "RandomForestClassifier"),
        ("sklearn.ensemble", "RandomForestRegressor"),
        ("sklearn.tree", "DecisionTreeClassifier"),
        ("sklearn.tree", "DecisionTreeRegressor"),
        ("sklearn.linear_model", "LogisticRegression"),
        ("sklearn.linear_model", "Ridge"),
        ("sklearn.dummy", "DummyClassifier"),
        ("sklearn.dummy", "DummyRegressor"),
    )

    def __init__(self, synth: Any) -> None:
        import importlib

        self.synth = synth
        self.depth = 0
        self.by_stage: dict[str, dict[str, Any]] = {}
        for mod, name in self.CLASSES:
            cls = getattr(importlib.import_module(mod), name)
            cls.fit = self._wrap(cls.fit, name)

    def _wrap(self, fit: Any, name: str) -> Any:
        def timed(est: Any, *a: Any, **k: Any) -> Any:
            if self.depth:
                return fit(est, *a, **k)
            self.depth += 1
            t0 = time.process_time()
            try:
                return fit(est, *a, **k)
            finally:
                self.depth -= 1
                rec = self.by_stage.setdefault(
                    getattr(self.synth, "stage_", None) or "outside",
                    {"fits": 0, "cpu_s": 0.0, "by_class": {}},
                )
                rec["fits"] += 1
                rec["cpu_s"] += time.process_time() - t0
                rec["by_class"][name] = rec["by_class"].get(name, 0) + 1

        return timed

    def figures(self) -> dict[str, Any]:
        stages = {s: {**r, "cpu_s": round(r["cpu_s"], 2)} for s, r in self.by_stage.items()}
        return {
            "fits": stages,
            "fits_total": sum(r["fits"] for r in stages.values()),
            "fit_cpu_s": round(sum(r["cpu_s"] for r in stages.values()), 2),
        }


def child_job(table: Path, out: Path, detail: bool, extra: list[str], fits: bool = False) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    t_import = time.perf_counter()
    from date_spark.config import load_config
    from date_spark.synthesizer import DateSynthesizer
    from date_spark.testing.stub import StubServer

    import_s = time.perf_counter() - t_import
    tmp = Path(tempfile.mkdtemp(prefix="date-spark-job-cost-"))
    with Sampler() as sampler, StubServer() as url:
        cfg = load_config([], _job_config(table, tmp, url, extra))
        synth = DateSynthesizer(cfg)
        counter = FitCounter(synth) if fits else None
        t0 = time.perf_counter()
        result = synth.run()
        wall = time.perf_counter() - t0
        jobs = spark_jobs(synth.spark, detail)
    seconds = result.summary["seconds"]
    rec = {
        "profile": result.summary["profile"],
        "job_s": round(wall, 2),
        "import_s": round(import_s, 2),
        "stage_s": {s: seconds.get(s) for s in STAGES},
        # MLflow run start/end, run directory, summaries: everything outside the stage timers
        "outside_stages_s": round(wall - sum(v or 0 for v in seconds.values()), 2),
        "spark": jobs,
        "spark_jobs_total": sum(v["jobs"] for v in jobs.values()),
        **sampler.figures(),
        "dgrs": result.summary["rules"],
        "arms": result.summary["arms"],
        "synthetic_rows": result.summary["synthetic_rows"],
        **(counter.figures() if counter else {}),
    }
    out.write_text(json.dumps(rec, indent=1))
    synth.spark.stop()


def cli_run(table: Path, url: str) -> float:
    """`date-spark run FILE --target y --out DIR` end to end (process wall time)."""
    tmp = Path(tempfile.mkdtemp(prefix="date-spark-job-cost-cli-"))
    cmd = [
        sys.executable, "-m", "date_spark.cli", "-q", "run", str(table), "--target", "y",
        "--out", str(tmp / "out"),
        *[f"--set={s}" for s in _job_config(table, tmp, url, [])[3:]],
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=tmp, stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - t0, 2)


def _child(kind: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="date-spark-job-cost-res-")) / "r.json"
    load = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--child-out", str(out), *args],
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode:
        return {"failed": f"exit {proc.returncode}", "load_avg_1m": load}
    rec = json.loads(out.read_text())
    rec["process_s"] = round(time.perf_counter() - t0, 2)
    rec["load_avg_1m"] = load
    return rec


def _commit(checkout: Path) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() or None


def _median(recs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in recs if r.get(key) is not None]
    return round(statistics.median(vals), 2) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="300,5000,50000,1e6")
    ap.add_argument("--with-1e7", action="store_true", help="add 1e7 rows (slow on 2 cores)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per size up to 5,000 rows")
    ap.add_argument("--data-dir", type=Path, default=ROOT / ".bench-data")
    ap.add_argument("--detail", action="store_true", help="call sites of each stage's Spark jobs")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI run at the smallest size")
    ap.add_argument("--set", action="append", default=[], dest="extra", help="config overrides")
    ap.add_argument(
        "--fits",
        action="store_true",
        help="one more job per size, every step on the driver in one process, its model fits "
        "counted and timed per stage (the fitting work the method asks for)",
    )
    ap.add_argument(
        "--against",
        type=Path,
        help="another checkout of the repository (a git worktree of an earlier commit): each "
        "job is run with its date_spark too, interleaved, beside the same baseline",
    )
    ap.add_argument("--name", default="job_cost")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--table", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "table":
        child_table(args.rows, args.table)
        return
    if args.child == "baseline":
        child_baseline(args.table, args.child_out)
        return
    if args.child == "job":
        child_job(args.table, args.child_out, args.detail, args.extra, args.fits)
        return

    sizes = [_size(s) for s in args.sizes.split(",")] + ([10_000_000] if args.with_1e7 else [])
    env = {**environment(), "spark_master": "local[2]"}  # each child's own session
    runs: dict[str, Any] = {}
    for n in sizes:
        table = ensure_table(args.data_dir, n)
        reps = args.repeats if n <= 5000 else 1
        base, jobs, other = [], [], []
        for _ in range(reps):  # interleaved: load changes hit both alike
            base.append(_child("baseline", ["--table", str(table)]))
            print(f"{n} rows baseline: {base[-1]}", flush=True)
            extra = [a for s in args.extra for a in ("--set", s)]
            detail = ["--detail"] if args.detail else []
            jobs.append(_child("job", ["--table", str(table), *detail, *extra]))
            print(f"{n} rows job: {_short(jobs[-1])}", flush=True)
            if args.against:
                code = {"PYTHONPATH": str(args.against.resolve())}
                other.append(_child("job", ["--table", str(table), *detail, *extra], env=code))
                print(f"{n} rows job, {args.against}: {_short(other[-1])}", flush=True)
        ok = [j for j in jobs if "failed" not in j]
        entry: dict[str, Any] = {
            "baseline": base,
            "jobs": jobs,
            "baseline_s": _median(base, "seconds"),
            "job_s": _median(ok, "job_s"),
        }
        if entry["baseline_s"] and entry["job_s"]:
            entry["job_over_baseline"] = round(entry["job_s"] / entry["baseline_s"], 2)
        if args.against:
            done = [j for j in other if "failed" not in j]
            entry["against"] = {
                "code": str(args.against),
                "git_commit": _commit(args.against),
                "jobs": other,
                "job_s": _median(done, "job_s"),
            }
            if entry["against"]["job_s"] and entry["baseline_s"]:
                entry["against"]["job_over_baseline"] = round(
                    entry["against"]["job_s"] / entry["baseline_s"], 2
                )
        if args.fits:
            entry["fits_job"] = _child(
                "job",
                ["--table", str(table), "--fits", *extra],
                env={"DATE_SPARK_DRIVER_WORKERS": "1", "DATE_SPARK_DRIVER_MAX_CELLS": str(10**12)},
            )
            print(f"{n} rows job, fits counted: {_fits_line(entry['fits_job'])}", flush=True)
        if n == sizes[0] and not args.no_cli:
            from date_spark.testing.stub import StubServer

            with StubServer() as url:
                entry["cli_load_avg_1m"] = round(os.getloadavg()[0], 2)
                entry["cli_s"] = cli_run(table, url)
            print(f"{n} rows CLI end to end: {entry['cli_s']} s", flush=True)
        runs[str(n)] = entry
    report(runs)
    write_result(
        args.name,
        {"sizes": sizes, "columns": 20, "repeats_small": args.repeats, "overrides": args.extra},
        {"runs": runs, "linearity": linearity(runs)},
        env,
    )


def _short(rec: dict[str, Any]) -> str:
    if "failed" in rec:
        return str(rec)
    st = " ".join(
        f"{s}={rec['stage_s'][s]}s/{rec['spark'][s]['jobs']}j"
        for s in STAGES
        if s in rec["stage_s"]
    )
    return (
        f"{rec['job_s']} s ({st}; untagged {rec['spark']['untagged']['jobs']}j; "
        f"outside stages {rec['outside_stages_s']} s) load {rec['load_avg_1m']}"
    )


def _fits_line(rec: dict[str, Any]) -> str:
    if "failed" in rec:
        return str(rec)
    per = " ".join(f"{s}={r['fits']} fits/{r['cpu_s']}s" for s, r in rec["fits"].items())
    return (
        f"{rec['job_s']} s in one process; {rec['fits_total']} fits, {rec['fit_cpu_s']} CPU s "
        f"({per}); on {os.cpu_count()} cores the fits alone take at least "
        f"{rec['fit_cpu_s'] / (os.cpu_count() or 1):.1f} s"
    )


def linearity(runs: dict[str, Any]) -> dict[str, float | None]:
    """Each stage's seconds at 1e7 over 1e6 (issue 21: within 10x)."""
    a, b = runs.get("1000000"), runs.get("10000000")
    if not a or not b:
        return {}
    ja = next((j for j in a["jobs"] if "failed" not in j), None)
    jb = next((j for j in b["jobs"] if "failed" not in j), None)
    if ja is None or jb is None:
        return {}
    return {
        s: round(jb["stage_s"][s] / ja["stage_s"][s], 2) if ja["stage_s"].get(s) else None
        for s in STAGES
    }


def report(runs: dict[str, Any]) -> None:
    print(f"\n{'rows':>9} {'base s':>7} {'job s':>7} {'ratio':>6} {'load':>5}  per stage s/jobs")
    for n, e in runs.items():
        ok = [j for j in e["jobs"] if "failed" not in j]
        j = ok[0] if ok else None
        stages = (
            " ".join(f"{s[:4]} {j['stage_s'][s]:.1f}/{j['spark'][s]['jobs']}" for s in STAGES)
            if j
            else "failed"
        )
        print(
            f"{n:>9} {e['baseline_s'] or 0:>7.1f} {e['job_s'] or 0:>7.1f} "
            f"{e.get('job_over_baseline', 0):>6.2f} {(j or {}).get('load_avg_1m', 0):>5}  {stages}"
        )
    for n, e in runs.items():
        if "against" in e:
            a = e["against"]
            print(
                f"{n} rows with {a['code']} ({(a['git_commit'] or '?')[:7]}): job {a['job_s']} s, "
                f"{a.get('job_over_baseline')}x the baseline, against {e['job_s']} s here"
            )
    for n, e in runs.items():
        if "fits_job" in e:
            print(f"fits at {n} rows: {_fits_line(e['fits_job'])}")
    for n, e in runs.items():
        if "cli_s" in e:
            print(f"CLI end to end at {n} rows: {e['cli_s']} s (load {e['cli_load_avg_1m']})")


if __name__ == "__main__":
    main()
