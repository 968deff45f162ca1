"""The two evaluators the paper's search (`selection.rule: holm | paper`) decides by, built from
the capped per-partition sample of real rows: the screen scores each partition's training rows
(cross-fitted), the confirmation its validation rows (cross-fitted, the training rows always in
training), so the searched set is confirmed on rows the search never scored."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from date_spark.io.split import SPLIT_COL, TRAIN, VALIDATION
from date_spark.modeling.models import ModelSpec
from date_spark.rules import Rule
from date_spark.selection.crossfit import CrossFitEvaluator, Partition

__all__ = ["search_evaluators"]


def search_evaluators(
    sample: pd.DataFrame,
    rules: Mapping[str, Rule],
    columns: Sequence[str],
    *,
    part: str,
    rest: str,
    target: str,
    encode: Callable[[pd.DataFrame], np.ndarray],
    model: ModelSpec,
    folds: int,
    seed: int,
) -> tuple[CrossFitEvaluator, CrossFitEvaluator]:
    """(screen, confirmation) over `sample`'s non-test rows: one partition per rule (`part` names
    the row's partition, `rest` the rows no rule covers, served by the global model that every
    row trains), `columns` the input columns."""
    screen, confirm = [], []
    split = sample[SPLIT_COL]
    for key, rule in rules.items():
        g = sample[sample[part] == key].drop(columns=[part])
        train = g[g[SPLIT_COL] == TRAIN].drop(columns=[SPLIT_COL])
        valid = g[g[SPLIT_COL] == VALIDATION].drop(columns=[SPLIT_COL])
        screen.append(Partition(key, rule, train))
        confirm.append(Partition(key, rule, valid, fixed=train))
    others = sample[part] == rest
    if others.any():
        names = list(columns)
        r_train, r_valid = sample[others & (split == TRAIN)], sample[others & (split == VALIDATION)]
        c_train = sample[~others & (split == TRAIN)]
        c_valid = sample[~others & (split == VALIDATION)]
        screen.append(Partition(rest, None, r_train[names], fixed=c_train[names]))
        fixed = pd.concat([sample[split == TRAIN], c_valid])[names]
        confirm.append(Partition(rest, None, r_valid[names], fixed=fixed))

    def evaluator(parts: list[Partition]) -> CrossFitEvaluator:
        return CrossFitEvaluator(
            parts, target=target, encode=encode, model=model, folds=folds, seed=seed
        )

    return evaluator(screen), evaluator(confirm)
