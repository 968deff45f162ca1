"""Label hygiene on and off: does the label check (`generation.label_check`) or re-routing
(`generation.reroute`) change what DATE keeps and what its rows buy?

    .venv/bin/python benchmarks/label_check.py [--tables planted,credit,wage]
        [--generators stub,interpolation] [--seeds 42] [--iterations 1] [--name label_check]

Tables: ``planted`` (`date_spark.testing.planted.planted_regimes`, 1,000 rows, 8 features, 5% label
noise; the planted relation is known, so a generated row's label can be judged right or wrong)
and the ~300-training-row samples of `benchmarks/real_tables.py` (same loading and cleaning).
The job runs at its default config (split 0.2 test / 0.25 validation, tracking off) but for the
two switches and ``generation.iterations`` (``--iterations``, default 1: both switches act on
every round's rows alike, and one round keeps a run of the grid within about 10 minutes on a
shared 2-core machine), per seed (``seed`` of the job: its split, sample and generation).

Generators:
- ``stub``: the loopback stub server. On ``planted`` it writes rows labelled by the planted
  relation with a share ``NOISE`` of flipped labels (`planted_rows(noise=NOISE)`); on the real
  tables rows uniform in the rule with random labels (noise selection must refuse). Either way
  the first ``OFF_RULE`` rows of each reply are moved just past one of the asked rule's bounds
  (the stub's ``violate_rule`` fault), so there are rule-violating rows to drop or re-route (their
  label was written for where they were before the move).
- ``interpolation``: rule-bounded SMOTE inside each partition (no gateway: it never writes a row
  outside its rule, so only the label check varies).

Variants (label_check, reroute): ``off`` (off, false) is the baseline every ratio is taken
against, measured in the same invocation on the same table and seed; ``filter`` (filter, false),
``reroute`` (off, true), ``filter+reroute`` (filter, true). The LLM cache is shared by the variants
of one table and seed, so round 1 gets the same replies in every variant.

Reported per table x generator x seed x variant: rows kept, candidate rows, label-rejected and
re-routed rows, on ``planted`` the share of wrong labels (label != planted relation) among the
candidate rows and among the kept rows, DATE's test loss and its ratio to the baseline's, and the
synthetic gain (DATE vs partition only, partitioned) with its paired bootstrap 95% interval. The
summary per generator x variant counts runs where the synthetic gain is significantly better /
worse and averages the loss ratio. Results: `benchmarks/results/<name>.json`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from real_tables import SMALL_TRAIN_ROWS, SOURCES, load, sized  # noqa: E402
from recording import environment, write_result  # noqa: E402

NOISE = 0.2  # share of flipped labels in the stub's planted rows
OFF_RULE = 3  # rows per reply moved out of the asked rule
PLANTED_ROWS = 1000
VARIANTS: dict[str, tuple[str, bool]] = {
    "off": ("off", False),
    "filter": ("filter", False),
    "reroute": ("off", True),
    "filter+reroute": ("filter", True),
}
GENERATORS = ("stub", "interpolation")
SYN = "synthetic gain (partitioned)"


def table(name: str) -> tuple[pd.DataFrame, str, str]:
    if name == "planted":
        from date_spark.testing.planted import planted_regimes

        df = planted_regimes(PLANTED_ROWS, n_features=8, noise=0.05, seed=11)
        return df.drop(columns="regime"), "y", "classification"
    df, target, task = load(name)
    return sized(df, str(SMALL_TRAIN_ROWS)), target, task


def wrong_share(rows: pd.DataFrame, target: str) -> float | None:
    """Share of rows whose label differs from the planted relation's (planted table only)."""
    from date_spark.testing.planted import planted_truth

    if rows.empty:
        return None
    truth = planted_truth(rows.reset_index(drop=True))["label"].to_numpy()
    labels = pd.to_numeric(rows[target]).to_numpy()
    return float(np.mean(labels != truth))


def run_one(
    spark: Any, frame: pd.DataFrame, target: str, task: str, gen: str, variant: str, seed: int,
    url: str | None, cache: Path, iterations: int,
) -> dict[str, Any]:  # fmt: skip
    from date_spark.columns import ARM
    from date_spark.config import Config
    from date_spark.generation import CANDIDATE_COL
    from date_spark.synthesizer import DateSynthesizer

    label_check, reroute = VARIANTS[variant]
    over: dict[str, Any] = {
        "input.target": target,
        "input.task": task,
        "tracking.enabled": False,
        "llm.cache_path": str(cache),
        "seed": seed,
        "generation.label_check": label_check,
        "generation.reroute": reroute,
        "generation.iterations": iterations,
    }
    if gen == "interpolation":
        over["generation.generator"] = "interpolation"
    else:
        over.update({"llm.base_url": url, "llm.api_key_env": None, "llm.provider": "openai",
                     "llm.structured_output": "json_object"})  # fmt: skip
    cfg = Config().with_overrides(over)
    t0 = time.perf_counter()
    synth = DateSynthesizer(cfg, spark).fit(spark.createDataFrame(frame))
    util = synth.utility()
    rows = synth.generation_.rows
    cand = rows[rows[CANDIDATE_COL].astype(bool)] if len(rows) else rows
    kept = synth.selection_.rows
    s = synth.generation_.summary()
    planted = "x0" in frame.columns and "c0" in frame.columns and target == "y"
    g = {x.name: x.to_dict() for x in util.gains()}[SYN]
    return {
        "train_rows": util.train_rows,
        "test_rows": util.test_rows,
        "rules": len(synth.rules_.dgrs),
        "valid_rows": s["valid_rows"],
        "violates_rule": s["rejected"].get("violates_rule", 0),
        "rerouted": s["rerouted"],
        "rerouted_to": s["rerouted_to"],
        "label_rejected": s["label_rejected"],
        "candidate_rows": len(cand),
        "candidate_rerouted_rows": int(cand[ARM].str.contains("rerouted").sum())
        if len(cand)
        else 0,
        "rows_kept": int(synth.selection_.n_rows),
        "wrong_label_candidates": wrong_share(cand, target) if planted else None,
        "wrong_label_kept": wrong_share(kept, target) if planted else None,
        "loss": util.losses["date"],
        "loss_partition_only": util.losses["partition_only"],
        "synthetic_gain": g,
        "stages_s": dict(synth.seconds_),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _gain(g: dict[str, Any]) -> str:
    before = g.get("before")
    if not before or not g.get("rows"):
        return "-"
    rel, lo, hi = (-100 * g[k] / before for k in ("gain", "high", "low"))
    return (
        f"{rel:+.1f}% [{lo:+.1f},{hi:+.1f}]" + {1: " better", -1: " WORSE", 0: ""}[g["significant"]]
    )


def with_ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's loss and rows kept as a ratio to the `off` variant of its table/gen/seed."""
    base = {
        (r["table"], r["generator"], r["seed"]): r
        for r in runs
        if r["variant"] == "off" and "error" not in r
    }
    for r in runs:
        b = base.get((r["table"], r["generator"], r["seed"]))
        if "error" in r or b is None:
            continue
        r["loss_ratio"] = r["loss"] / b["loss"] if b["loss"] else None
        r["kept_ratio"] = r["rows_kept"] / b["rows_kept"] if b["rows_kept"] else None
    return runs


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in runs:
        if "error" in r:
            continue
        key = f"{r['generator']}/{r['variant']}"
        s = out.setdefault(key, {"runs": 0, "better": 0, "worse": 0, "loss_ratios": [],
                                 "rows_kept": 0, "wrong_kept": []})  # fmt: skip
        s["runs"] += 1
        s["better"] += r["synthetic_gain"]["significant"] == 1
        s["worse"] += r["synthetic_gain"]["significant"] == -1
        s["rows_kept"] += r["rows_kept"]
        if r.get("loss_ratio") is not None:
            s["loss_ratios"].append(r["loss_ratio"])
        if r.get("wrong_label_kept") is not None:
            s["wrong_kept"].append(r["wrong_label_kept"])
    for s in out.values():
        ratios = s.pop("loss_ratios")
        s["mean_loss_ratio"] = float(np.mean(ratios)) if ratios else None
        s["max_loss_ratio"] = float(np.max(ratios)) if ratios else None
        wrong = s.pop("wrong_kept")
        s["mean_wrong_label_kept"] = float(np.mean(wrong)) if wrong else None
    return out


def report(runs: list[dict[str, Any]]) -> None:
    print(
        "\nDATE's test loss as a ratio to the 'off' variant (label_check off, reroute off) of the "
        "same table, generator and seed, measured in this run.\nsynthetic gain: DATE vs "
        "partition only, loss change in % with the paired bootstrap 95% interval (negative = "
        "better).\nwrong: share of labels that contradict the planted relation (planted only).\n"
    )
    cols = ["table", "gen", "seed", "variant", "kept", "kept/off", "cand", "label-rej",
            "rerouted", "wrong cand", "wrong kept", "loss/off", "synthetic gain", "s"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in runs:
        head = [r["table"], r["generator"], str(r["seed"]), r["variant"]]
        if "error" in r:
            print("| " + " | ".join([*head, f"failed: {r['error']}"]) + " |")
            continue
        lr, kr = r.get("loss_ratio"), r.get("kept_ratio")
        cells = [*head, str(r["rows_kept"]), "-" if kr is None else f"{kr:.2f}",
                 str(r["candidate_rows"]), str(r["label_rejected"]), str(r["rerouted"]),
                 _pct(r["wrong_label_candidates"]), _pct(r["wrong_label_kept"]),
                 "-" if lr is None else f"{lr:.3f}", _gain(r["synthetic_gain"]),
                 f"{r['seconds']:.0f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print("\nPer generator and variant:")
    for key, s in summary(runs).items():
        mean, top = s["mean_loss_ratio"], s["max_loss_ratio"]
        print(
            f"- {key}: {s['runs']} runs, {s['rows_kept']} rows kept, synthetic gain significantly "
            f"better on {s['better']}, worse on {s['worse']}; loss / off: mean "
            f"{'-' if mean is None else f'{mean:.3f}'}, max {'-' if top is None else f'{top:.3f}'}"
            f"; wrong labels kept (planted): {_pct(s['mean_wrong_label_kept'])}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", default="planted,credit,wage")
    ap.add_argument("--generators", default=",".join(GENERATORS))
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--iterations", type=int, default=1, help="generation.iterations")
    ap.add_argument(
        "--name", default="label_check", help="results file benchmarks/results/NAME.json"
    )
    args = ap.parse_args()
    tables = [t for t in args.tables.split(",") if t]
    gens = [g for g in args.generators.split(",") if g]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    for t in tables:
        if t != "planted" and t not in SOURCES:
            raise SystemExit(f"unknown table {t!r}; choose planted or from {', '.join(SOURCES)}")
    for g in gens:
        if g not in GENERATORS:
            raise SystemExit(f"unknown generator {g!r}; choose from {', '.join(GENERATORS)}")
    if "off" not in variants or any(v not in VARIANTS for v in variants):
        raise SystemExit(f"variants: 'off' (the baseline) and any of {', '.join(VARIANTS)}")

    from date_spark.config import SparkConfig
    from date_spark.runtime.spark import session
    from date_spark.testing.stub import StubServer, default_rows, planted_rows

    spark = session(SparkConfig(app_name="date-spark-label-check"))
    env = environment(spark)
    tmp = Path(tempfile.mkdtemp(prefix="date-spark-label-"))
    params = {
        "tables": tables,
        "planted_rows": PLANTED_ROWS,
        "real_tables": f"seeded samples of about {SMALL_TRAIN_ROWS} training rows (real_tables.py)",
        "stub_noise": NOISE,
        "stub_off_rule_rows_per_reply": OFF_RULE,
        "variants": {k: {"label_check": v[0], "reroute": v[1]} for k, v in VARIANTS.items()},
        "seeds": seeds,
        "generation_iterations": args.iterations,
    }
    runs: list[dict[str, Any]] = []
    for name in tables:
        frame, target, task = table(name)
        for gen in gens:
            factory = planted_rows(noise=NOISE) if name == "planted" else default_rows
            server = (
                StubServer(row_factory=factory, fault="violate_rule", bad_rows=OFF_RULE)
                if gen == "stub"
                else None
            )
            url = server.start() if server is not None else None
            try:
                for seed in seeds:
                    for variant in variants:
                        if gen == "interpolation" and VARIANTS[variant][1]:
                            continue  # interpolation writes no off-rule rows: reroute is moot
                        print(f"{name:<8} {gen:<13} seed {seed} {variant:<15}", flush=True)
                        key = {"table": name, "generator": gen, "seed": seed, "variant": variant}
                        cache = tmp / f"cache-{name}-{gen}-{seed}"
                        try:
                            rec = {**key, **run_one(spark, frame, target, task, gen, variant,
                                                    seed, url, cache, args.iterations)}  # fmt: skip
                        except Exception as exc:  # one run failing must not lose the others
                            traceback.print_exc()
                            rec = {**key, "error": f"{type(exc).__name__}: {exc}"[:300]}
                        runs.append(rec)
                        runs = with_ratios(runs)
                        write_result(args.name, params, {"runs": runs, "summary": summary(runs)},
                                     env)  # fmt: skip
            finally:
                if server is not None:
                    server.stop()
    spark.stop()
    report(runs)


if __name__ == "__main__":
    main()
