"""Re-routing (`generation.reroute`): generated rows outside the rule they were asked for go to the
partition they do satisfy, instead of being thrown away. Kept apart from the rounds in
`generator.py` because it is one self-contained decision about where a row belongs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from date_spark.generation.fields import DGR_COL, QRULE_COL, REQUEST_COL, REROUTED, REST
from date_spark.generation.prompts import Masker
from date_spark.generation.result import RoundStats
from date_spark.rules import Rule

__all__ = ["reroute"]


def reroute(
    off: pd.DataFrame, rnd: int, stats: RoundStats, order: Sequence[Any], masker: Masker
) -> pd.DataFrame:
    """Rows outside the rule they were asked for go to the partition they satisfy, as the rule
    set routes real rows: the first partition in `order` (discovery's DGRs, then the thin
    segments) whose rule holds, else the rest. They become rows of that partition's question (its
    DGR rule) tagged `rerouted`, so they form arms of their own (`<dgr>.r<i>...rerouted`) that
    scoring and selection judge like any other. The rows are still masked: the rules are masked to
    match."""
    target = pd.Series(REST, index=off.index, dtype=object)
    left = np.ones(len(off), dtype=bool)
    rules = {REST: Rule.true()}
    for d in order:
        if not left.any():
            break
        try:
            hit = masker.rule(d.rule).mask(off).to_numpy(dtype=bool) & left
        except Exception:  # a value the mask cannot compare (mixed types): not this rule
            continue
        target[hit] = str(d.rule_id)
        rules[str(d.rule_id)] = d.rule
        left &= ~hit
    moved = off.copy()
    moved[DGR_COL] = target
    moved[REQUEST_COL] = [
        f"{t}|r{rnd}|{REROUTED}|from {rid}" for t, rid in zip(target, off[REQUEST_COL], strict=True)
    ]
    moved[QRULE_COL] = target.map(lambda t: rules[t].dumps())
    counts = Counter(str(t) for t in target)
    stats.rerouted += len(moved)
    for t, n in counts.items():
        stats.rerouted_to[t] = stats.rerouted_to.get(t, 0) + n
    return moved
