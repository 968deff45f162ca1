"""What the label check does to rows whose labels are right.

`generation.label_check: filter` sets apart generated rows whose label the partition's model
contradicts with confidence `label_check_confidence` (the label's probability below 5%, or a
value outside the 95% band of the model's cross-fitted error). Its purpose is the LLM's wrong
labels. Here every row is a real row of the table the job never saw (the calibration's pool), so
every label is right, and what the check sets apart is what it costs: on an overconfident model
of 240 rows, the rows it calls wrong are the hard ones (a minority class, a price far from the
model's guess), the rows a model learns most from.

Per table of `benchmarks/calibration.py` at 300 input rows and seed (its draws): the library's
`generation.scoring.label_check` with the job's teacher (the selection model trained on the 240
non-test rows of one partition covering the table) on 3x as many pool rows; the share flagged
(and, for classification, the share of the rarest class flagged); the held-out change of the
configured model when all the rows are added vs only the rows the check keeps.

    .venv/bin/python benchmarks/label_check_real.py [--tables mlc_churn,diamonds] [--seeds 10]

Writes `benchmarks/results/label_check_real.json`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import calibration as cal  # noqa: E402
from crossfit_bias import mean_ci, run_per_table  # noqa: E402
from recording import write_result  # noqa: E402

VOLUME = 3  # pool rows per real row: the largest volume the keep rule tries


def run_table(spark: Any, table: str, seeds: int) -> list[dict[str, Any]]:
    from date_spark.columns import ROUND
    from date_spark.generation.fields import DGR_COL, QRULE_COL, REQUEST_COL
    from date_spark.generation.prompts import Masker
    from date_spark.generation.scoring import ScoringSpec, label_check
    from date_spark.modeling.features import FeatureEncoder
    from date_spark.modeling.models import ModelSpec, crossfit_losses, fold_ids
    from date_spark.rules import Rule
    from date_spark.schema import TableSchema, column_specs

    df, target, task = cal.load(table)
    out = []
    for seed in range(seeds):
        t0 = time.monotonic()
        train, pool, test = cal.draw(df, "300", seed)
        specs = column_specs(spark.createDataFrame(train.head(50)).schema)
        kind = "regression" if task == "regression" else "classification"
        labels = train[target].dropna().unique()
        classes = tuple(sorted(labels, key=str)) if kind == "classification" else ()
        schema = TableSchema(specs, target, kind, classes)
        enc = FeatureEncoder.from_pandas(schema, train)
        real = train.sample(frac=0.8, random_state=seed)[schema.names].reset_index(drop=True)
        model = ModelSpec.for_table(cal.DEFAULTS, schema, enc, seed=seed)
        gcfg = cal.DEFAULTS_GEN
        spec = ScoringSpec(
            encoder=enc, target=target, task=kind, columns=tuple(schema.names), sensitive=(),
            tree_max_depth=gcfg.tree_max_depth, min_arm_rows=gcfg.min_arm_rows,
            label_check="filter", label_check_confidence=gcfg.label_check_confidence,
            model=model, folds=cal.DEFAULTS.folds, seed=seed, generator="oracle",
            masker=Masker(),
        )  # fmt: skip
        n = min(VOLUME * len(real), len(pool))
        rows = pool.sample(n=n, random_state=seed)[schema.names].reset_index(drop=True)
        gen = rows.assign(**{DGR_COL: "all", ROUND: 1, REQUEST_COL: "all|r1|q0|s0",
                             QRULE_COL: Rule.true().dumps()})  # fmt: skip
        x_tr, y_tr = enc.transform(real), enc.target(real)
        base = crossfit_losses(model, x_tr, y_tr, fold_ids(real, spec.folds, seed))
        kept, flagged = label_check(gen, x_tr, y_tr, base, spec)
        held = cal.HeldOut(schema, enc, seed, train, test)
        rec: dict[str, Any] = {
            "table": table, "task": task, "seed": seed, "rows": n,
            "flagged": len(flagged) / n,
            "held_out_all": held.change(rows)["change"],
            "held_out_checked": held.change(kept[schema.names])["change"],
        }  # fmt: skip
        if kind == "classification":
            rare = rows[target].value_counts().index[-1]
            n_rare = int((rows[target] == rare).sum())
            rec["rare_class"] = str(rare)
            rec["rare_flagged"] = int((flagged[target] == rare).sum()) / max(n_rare, 1)
            rec["other_flagged"] = int((flagged[target] != rare).sum()) / max(n - n_rare, 1)
        out.append(rec)
        print(f"  {table} seed {seed}: {time.monotonic() - t0:.0f} s", flush=True)
    return out


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    frame = pd.DataFrame(records)
    out = []
    for table, g in frame.groupby("table", sort=True):
        cost, lo, hi = mean_ci(g["held_out_checked"] - g["held_out_all"])
        row = {
            "table": table, "seeds": len(g), "flagged": float(g["flagged"].mean()),
            "held_out_all": float(g["held_out_all"].mean()),
            "held_out_checked": float(g["held_out_checked"].mean()),
            "cost": cost, "cost_low": lo, "cost_high": hi,
        }  # fmt: skip
        if "rare_flagged" in g and g["rare_flagged"].notna().any():
            row["rare_flagged"] = float(g["rare_flagged"].mean())
            row["other_flagged"] = float(g["other_flagged"].mean())
        out.append(row)
    return out


def report(summary: list[dict[str, Any]]) -> None:
    print(
        f"\n{'table':10} {'flagged':>8} {'rare':>6} {'other':>6} {'all rows':>9} "
        f"{'checked':>9} {'cost of the check [95% CI]':>28}"
    )
    for s in summary:
        rare = f"{s['rare_flagged']:6.1%}" if "rare_flagged" in s else f"{'-':>6}"
        other = f"{s['other_flagged']:6.1%}" if "other_flagged" in s else f"{'-':>6}"
        print(
            f"{s['table']:10} {s['flagged']:8.1%} {rare} {other} {s['held_out_all']:+9.1%} "
            f"{s['held_out_checked']:+9.1%} {s['cost']:+9.1%} [{s['cost_low']:+.1%}, "
            f"{s['cost_high']:+.1%}]"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default=",".join(cal.SOURCES))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--name", default="label_check_real")
    args = ap.parse_args()
    tables = args.tables.split(",")
    params = {"tables": tables, "seeds": args.seeds, "input_rows": 300, "volume": VOLUME,
              "confidence": cal.DEFAULTS_GEN.label_check_confidence}  # fmt: skip
    figures, env = run_per_table(
        tables, lambda spark, t: run_table(spark, t, args.seeds), summarise, report
    )
    write_result(args.name, params, figures, env)


if __name__ == "__main__":
    main()
