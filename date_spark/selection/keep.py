"""The gain rule as a selection: generated rows grouped per partition, copies dropped, volumes
decided by `date_spark.selection.gain`, the kept rows returned as a `Selection` like the other
rules' (tagged with their arm, with a trace of every volume tried)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from date_spark.columns import ARM, PARENTS
from date_spark.config import SelectionConfig
from date_spark.modeling.models import ModelSpec
from date_spark.rules import Rule
from date_spark.runtime.placement import driver_workers
from date_spark.selection.copies import CopyCount, find_copies
from date_spark.selection.gain import GainEvaluator, decide
from date_spark.selection.result import Selection, TraceStep

__all__ = ["drop_copies", "gain_evaluator", "select_by_gain"]


def drop_copies(
    generated: pd.DataFrame,
    real: pd.DataFrame,
    test: pd.DataFrame | None,
    *,
    target: str,
    encode: Callable[[pd.DataFrame], np.ndarray],
    categorical: Sequence[int] = (),
) -> tuple[pd.DataFrame, CopyCount]:
    """`generated` without its exact copies of `real` (non-test) or `test` rows, and the count."""
    cols = [c for c in real.columns if c in generated.columns]
    refs = [real[cols], test[cols] if test is not None else real[cols].iloc[:0]]
    exact, near = find_copies(
        generated[cols], refs, target=target, encode=encode, categorical=categorical
    )
    count = CopyCount(
        rows=len(generated),
        exact_train=int((exact == 0).sum()),
        exact_test=int((exact == 1).sum()),
        near=int(near.sum()),
    )
    return generated[exact < 0].reset_index(drop=True), count


def gain_evaluator(
    real: pd.DataFrame,
    cfg: SelectionConfig,
    *,
    target: str,
    encode: Callable[[pd.DataFrame], np.ndarray],
    model: ModelSpec,
    seed: int = 42,
) -> GainEvaluator:
    """The evaluator `select_by_gain` scores with (keep it to rerun selection without refits).
    It runs on the driver, so its fits may use the driver's cores (`placement`)."""
    return GainEvaluator(
        real, target=target, encode=encode, model=model, folds=cfg.folds,
        repeats=cfg.repeats, seed=seed, max_rows=cfg.max_rows, workers=driver_workers(),
    )  # fmt: skip


def select_by_gain(
    generated: pd.DataFrame,
    real: pd.DataFrame,
    cfg: SelectionConfig,
    *,
    part: str,
    target: str,
    encode: Callable[[pd.DataFrame], np.ndarray],
    model: ModelSpec,
    rules: Mapping[str, Rule] | None = None,
    seed: int = 42,
    evaluator: GainEvaluator | None = None,
) -> Selection:
    """Keep generated rows by their expected gain for one model trained on real + kept rows.

    `generated`: input columns + `ARM` + `part` (the partition each row was generated for);
    `real`: the non-test real rows, input columns + `part`. A partition key absent from `real`
    (a thin segment, scored inside the rest) counts the real rows its rule in `rules` matches.
    Each partition's rows are taken in a seeded random order (never by a score measured on the
    same rows, which would carry the search's luck into the estimate) of their content, so the
    same rows give the same decision whatever order the endpoint's answers arrived in. A
    `PARENTS` column in `generated` names the real rows (by `real`'s index labels) each row was
    derived from."""
    columns = [c for c in real.columns if c != part]
    if evaluator is None:
        evaluator = gain_evaluator(real[columns], cfg, target=target, encode=encode, model=model,
                                   seed=seed)  # fmt: skip
    counts = real[part].value_counts()
    pools: dict[str, tuple[int, pd.DataFrame]] = {}
    for key in sorted(generated[part].astype(str).unique()) if len(generated) else []:
        rows = _by_content(generated[generated[part].astype(str) == key], columns)
        order = np.random.default_rng([seed, zlib.crc32(key.encode())]).permutation(len(rows))
        n_real = int(counts.get(key, 0))
        rule = (rules or {}).get(key)
        if not n_real and rule is not None:
            n_real = int(rule.mask(real[columns]).sum())
        pools[key] = (max(n_real, 1), rows.iloc[order].reset_index(drop=True))
    carried = [*columns, PARENTS] if PARENTS in generated.columns else columns
    decision, kept = decide(
        {k: (n, r[carried]) for k, (n, r) in pools.items()},
        evaluator,
        fractions=cfg.volumes,
        keep_z=cfg.keep_z,
        power=cfg.power,
    )
    frames = [pools[k][1].iloc[: len(v)][[*columns, ARM]] for k, v in kept.items()]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*columns, ARM])
    selected = list(dict.fromkeys(rows[ARM].astype(str))) if len(rows) else []
    trace = [
        TraceStep(
            step=i + 1,
            arm_id=f"{p.key}@{e.rows}",
            quality=math.nan,
            diversity=math.nan,
            utility=math.nan,
            ucb=math.nan,
            accepted=p.kept and e.rows == p.rows,
            score_after=-(e.base_loss - e.gain),
            reason=f"{p.key}: {e.rows} rows, gain {e.gain:.4g} (se {e.se:.2g}), shrunk z="
            f"{e.shrunk_z:.2f}" + (": kept" if p.kept and e.rows == p.rows else ""),
            gain=e.gain,
            z=e.shrunk_z,
            rows=e.rows,
        )
        for i, (p, e) in enumerate((p, e) for p in decision.partitions for e in p.tried)
    ]
    joint = decision.joint
    base = -decision.base_loss
    return Selection(
        selected=selected,
        rows=rows,
        trace=trace,
        best_score=base + joint.gain if joint is not None else base,
        baseline=base,
        strategy="gain",
        stop_reason=decision.text(),
        evaluations=evaluator.fits,
        screened=list(selected),
        gain=decision,
    )


def _by_content(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`rows` sorted by a hash of their values (ties kept in order): the order concurrent
    requests were answered in, which varies from run to run, no longer reaches the decision."""
    if len(rows) < 2:
        return rows
    keys = pd.util.hash_pandas_object(rows[columns].astype(str), index=False).to_numpy()
    return rows.iloc[np.argsort(keys, kind="stable")]
