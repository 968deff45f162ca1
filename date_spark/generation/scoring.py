"""Decision-tree path reasoning, pure pandas (it runs inside the scoring UDF): the label check,
the grouping of generated rows by tree path, each group's gain, and the learning-curve benefit
that decides where to generate."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from date_spark.columns import ARM, GENERATOR, ROUND, RULE
from date_spark.generation.fields import (
    AGREE_COL,
    ARM_FIELDS,
    CANDIDATE_COL,
    DGR_COL,
    FIXED_COL,
    GAIN_COL,
    GROUP_COL,
    POOLED,
    PRED_COL,
    QRULE_COL,
    REQUEST_COL,
    REROUTED,
    REST,
)
from date_spark.generation.prompts import Masker
from date_spark.io.split import SPLIT_COL, TRAIN
from date_spark.modeling.features import FeatureEncoder
from date_spark.modeling.models import ModelSpec, crossfit_losses, crossfit_many, fold_ids
from date_spark.modeling.trees import RuleTree
from date_spark.rules import Rule

__all__ = [
    "BENEFIT_DDL",
    "ScoringSpec",
    "allocate_requests",
    "label_check",
    "majority",
    "partition_benefit",
    "question_tag",
    "rank_partitions",
    "retype",
    "score_groups",
    "scoring_frame",
    "volume_requests",
]


@dataclass(frozen=True)
class ScoringSpec:
    """Everything the scoring UDF needs; pickled into the task, so it holds no secrets."""

    encoder: FeatureEncoder
    target: str
    task: str
    columns: tuple[str, ...]  # the table's columns (features + target) in input order
    sensitive: tuple[str, ...]
    tree_max_depth: int
    min_arm_rows: int
    label_check: str
    label_check_confidence: float
    model: ModelSpec
    folds: int
    seed: int
    generator: str
    masker: Masker
    # False: groups get no gain (NaN, not candidates). Set for the last round under the gain
    # rule, which keeps rows by their gain for the user's model and needs no per-group gain
    # (a refinement prompt would, and none follows the last round): K fits per group saved.
    group_gains: bool = True
    # Processes for the groups' cross-fits: more than one only where the UDF's body runs on the
    # driver (`placement`); a Spark task keeps to its core.
    workers: int = 1


def _unscored(gen: pd.DataFrame, spec: ScoringSpec) -> pd.DataFrame:
    """Rows of a partition too small to cross-fit: one unscored, non-candidate arm per round."""
    gen[ARM] = gen[DGR_COL] + ".r" + gen[ROUND].astype(str) + ".unscored"
    gen[RULE] = gen[QRULE_COL].map(lambda j: Rule.from_json(j).to_text())
    gen[GAIN_COL] = float("nan")
    gen[AGREE_COL] = True
    gen[CANDIDATE_COL] = False
    gen[PRED_COL] = None
    gen[GENERATOR] = spec.generator
    return gen


def _arm_rows(
    g: pd.DataFrame, qrule: str, qidx: str, path: Any, agrees: bool, gain: float, spec: ScoringSpec
) -> pd.DataFrame:
    """One group's rows with its arm columns: the arm id (DGR, round, question, path, agreement),
    the question's rule AND the tree path, the gain and whether it is a candidate."""
    rule = Rule.from_json(qrule)
    rule = rule.and_(path.rule).simplify() if path is not None else rule.simplify()
    first = g.iloc[0]
    where = f"l{path.leaf}" if path is not None else "lpool"
    ad = "a" if agrees else "d"
    arm = (
        f"{first[DGR_COL]}.r{int(first[ROUND])}.{where}.{ad}.{REROUTED}"
        if qidx == REROUTED
        else f"{first[DGR_COL]}.r{int(first[ROUND])}.{qidx}.{where}.{ad}"
    )
    g = g.drop(columns=["_leaf", "_agree", "_pred", "_q"])
    g[ARM] = arm
    g[RULE] = rule.to_text()
    g[GAIN_COL] = float(gain)
    g[AGREE_COL] = agrees
    g[CANDIDATE_COL] = bool(gain > 0)
    g[PRED_COL] = str(path.prediction) if path is not None else majority(g[spec.target])
    g[GENERATOR] = spec.generator
    return g


def score_groups(gen: pd.DataFrame, part: pd.DataFrame, spec: ScoringSpec) -> pd.DataFrame:
    """Group generated rows of one partition by (question, tree path, label agreement) and score
    each group's gain: the drop in the partition's mean cross-fitted loss (`models.
    crossfit_losses`, the model selection uses, on the training rows selection screens on) when
    the group is added. The validation split is the confirmation's: never read here. Returns the
    rows with the arm columns added."""
    out_cols = [*spec.columns, DGR_COL, ROUND, REQUEST_COL, QRULE_COL] + [
        f.name for f in ARM_FIELDS
    ]
    if gen.empty:
        return pd.DataFrame(columns=out_cols)
    gen = spec.masker.unmask_frame(gen.reset_index(drop=True))
    is_fixed = (
        part[FIXED_COL].fillna(False).astype(bool)
        if FIXED_COL in part
        else pd.Series(False, index=part.index)
    )
    train = part[(part[SPLIT_COL] == TRAIN) & ~is_fixed].reset_index(drop=True)
    fixed_rows = part[(part[SPLIT_COL] == TRAIN) & is_fixed]
    rng = np.random.default_rng(spec.seed)
    for col in spec.sensitive:
        pool = train[col].dropna().to_numpy() if col in train and len(train) else np.array([None])
        gen[col] = rng.choice(pool if len(pool) else np.array([None]), size=len(gen))
    enc, task = spec.encoder, spec.task
    if len(train) < max(5, spec.folds):
        return _unscored(gen, spec)[out_cols]
    x_tr, y_tr = enc.transform(train), enc.target(train)
    # the rest partition is served by the global model: every covered row trains it too
    fixed = (enc.transform(fixed_rows), enc.target(fixed_rows)) if len(fixed_rows) else None
    folds = fold_ids(train[list(spec.columns)], spec.folds, spec.seed)
    base = crossfit_losses(spec.model, x_tr, y_tr, folds, fixed=fixed)
    gen, rejected = label_check(gen, x_tr, y_tr, base, spec, fixed)
    if gen.empty:
        return rejected[out_cols]
    x_gen, y_gen = enc.transform(gen), enc.target(gen)
    tree = RuleTree.fit(
        x_tr, y_tr, enc, task, max_depth=spec.tree_max_depth, min_samples_leaf=2, seed=spec.seed
    )
    paths = {p.leaf: p for p in tree.paths(x_tr)}
    leaf = tree.route(gen, list(paths.values()))
    pred = tree.predict(x_gen)
    if task == "regression":
        tol = 2.0 * float(np.sqrt(np.mean(base))) if len(base) else np.inf
        agree = np.abs(y_gen.astype(float) - pred.astype(float)) <= tol
    else:
        agree = y_gen == pred
    base_loss = float(np.mean(base))

    qtag = gen[REQUEST_COL].map(question_tag)
    gen = gen.assign(_leaf=leaf, _agree=agree, _pred=[str(p) for p in pred], _q=qtag)
    gen = gen[gen["_leaf"] >= 0]  # a value the path rules cannot place: no arm can claim it
    # Paths holding fewer than `min_arm_rows` rows are pooled per (question, agreement): a 1-2 row
    # arm moves the loss by less than the refit noise, so no test could ever judge it. Re-routed
    # rows (question tag `rerouted`) form arms of their own.
    keys = [QRULE_COL, "_q", "_leaf", "_agree"]
    size = gen.groupby(keys)["_leaf"].transform("size")
    gen.loc[size < spec.min_arm_rows, "_leaf"] = POOLED
    groups = list(gen.groupby(keys, sort=True))
    gains = [math.nan] * len(groups)
    if spec.group_gains:
        extras = [(x_gen[g.index.to_numpy()], y_gen[g.index.to_numpy()]) for _, g in groups]
        with_group = crossfit_many(
            spec.model, x_tr, y_tr, folds, extras, fixed=fixed, workers=spec.workers
        )
        gains = [base_loss - float(np.mean(w)) for w in with_group]
    parts = []
    for (key, g), gain in zip(groups, gains, strict=True):
        k: tuple[Any, ...] = key
        qrule, qidx, lf, ag = str(k[0]), str(k[1]), int(k[2]), bool(k[3])
        parts.append(_arm_rows(g, qrule, qidx, paths.get(lf), ag, gain, spec))
    if len(rejected):
        parts.append(rejected)
    if not parts:
        return pd.DataFrame(columns=out_cols)
    return pd.concat(parts, ignore_index=True)[out_cols]


BENEFIT_DDL = (
    f"{DGR_COL} string, train_rows long, loss double, loss_half double, slope double, "
    "benefit double"
)


def scoring_frame(sample: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """What the scoring UDF cogroups with: each partition's sampled rows under its own key, and,
    under the rest's key, the covered training rows (at most `cap`) as fixed rows (the rest is
    served by the global model, which every row trains)."""
    pdf = sample.copy()
    pdf[GROUP_COL] = pdf[DGR_COL]
    pdf[FIXED_COL] = False
    covered = sample[(sample[DGR_COL] != REST) & (sample[SPLIT_COL] == TRAIN)]
    if (sample[DGR_COL] == REST).any() and len(covered):
        if len(covered) > cap:
            covered = covered.sample(n=cap, random_state=seed).sort_index()
        covered = covered.copy()
        covered[GROUP_COL] = REST
        covered[FIXED_COL] = True
        pdf = pd.concat([pdf, covered], ignore_index=True)
    return pdf


def partition_benefit(part: pd.DataFrame, spec: ScoringSpec, added_rows: int) -> pd.DataFrame:
    """Expected benefit of generated rows for one partition, from its learning curve: the
    cross-fitted loss of the model trained on half of the other folds vs on all of them gives the
    relative loss drop per doubling of the rows (`slope`); `added_rows` more rows on `n` are
    expected to cut the loss by about ``slope * log2(1 + added_rows / n)`` (`benefit`). A
    partition whose model has stopped learning gains nothing from more rows of the same kind; a
    thin one that is still learning gains most."""
    train = part[part[SPLIT_COL] == TRAIN].reset_index(drop=True)
    dgr = str(part[DGR_COL].iloc[0]) if len(part) else ""
    n = len(train)
    loss = half = float("nan")
    if n >= max(2 * spec.folds, 10):
        x, y = spec.encoder.transform(train), spec.encoder.target(train)
        folds = fold_ids(train[list(spec.columns)], spec.folds, spec.seed)
        loss = float(np.mean(crossfit_losses(spec.model, x, y, folds)))
        half = float(np.mean(crossfit_losses(spec.model, x, y, folds, train_fraction=0.5)))
    out = {DGR_COL: dgr, "train_rows": n, "loss": loss, "loss_half": half}
    slope = max(0.0, (half - loss) / loss) if loss > 0 and np.isfinite(half) else 0.0
    benefit = slope * float(np.log2(1.0 + added_rows / max(n, 1)))
    return pd.DataFrame([{**out, "slope": slope, "benefit": benefit}])


def allocate_requests(benefit: Mapping[str, float], per_rule: int) -> dict[str, int]:
    """Spread ``per_rule * len(benefit)`` requests per question round over the DGRs in
    proportion to their expected benefit, at least one each (no benefit anywhere: even)."""
    keys = list(benefit)
    total = per_rule * len(keys)
    weights = np.array([max(0.0, float(benefit[k])) for k in keys])
    if not keys:
        return {}
    if weights.sum() <= 0:
        return {k: per_rule for k in keys}
    spare = total - len(keys)
    raw = weights / weights.sum() * spare
    extra = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - extra), kind="stable")[: spare - int(extra.sum())]:
        extra[i] += 1
    return {k: 1 + int(e) for k, e in zip(keys, extra, strict=True)}


def rank_partitions(
    frame: pd.DataFrame,
    support: Mapping[str, Any],
    thin_ids: Collection[str],
    added_rows: int,
    max_rules: int,
) -> tuple[pd.DataFrame, list[str]]:
    """The benefit frame (`partition_benefit` per partition) ranked by expected benefit, then
    support, then id, with a row per thin segment (too small for a learning curve of its own: it
    takes the rest's slope); and the ids of the `max_rules` to prompt, topped up with partitions
    that had no sampled row. `support` maps every partition id to its training rows, in order."""
    rest = frame[frame[DGR_COL] == REST]
    if len(rest) and thin_ids:
        slope = float(rest["slope"].iloc[0])
        thin = pd.DataFrame(
            [
                {
                    DGR_COL: k,
                    "train_rows": int(support[k]),
                    "loss": float(rest["loss"].iloc[0]),
                    "loss_half": float(rest["loss_half"].iloc[0]),
                    "slope": slope,
                    "benefit": slope * float(np.log2(1 + added_rows / max(1, support[k]))),
                }
                for k in sorted(thin_ids)
            ]
        )
        frame = pd.concat([frame, thin], ignore_index=True)
    frame = frame[frame[DGR_COL].isin(list(support))].copy()
    frame["support"] = frame[DGR_COL].map(lambda k: int(support[k]))
    frame = frame.sort_values(
        ["benefit", "support", DGR_COL], ascending=[False, False, True], kind="mergesort"
    ).reset_index(drop=True)
    top = list(frame[DGR_COL])[:max_rules]
    missing = [k for k in support if k not in set(frame[DGR_COL])]  # no sampled row
    top += missing[: max(0, max_rules - len(top))]
    return frame, top


def volume_requests(
    real_rows: Mapping[str, int],
    *,
    per_real_row: float,
    rows_per_request: int,
    iterations: int,
    max_per_partition: int,
    max_total: int,
) -> tuple[dict[str, int], dict[str, int], str]:
    """Requests per round for each prompted partition so that, over all rounds, it is asked for
    about ``per_real_row`` rows per real row (selection tries volumes up to 3x its rows). The two
    caps are cost limits a user sets, so they hold: a partition is never asked for more than
    `max_per_partition` rows, the job for more than `max_total` (when the job's cap is short, the
    requests are shared in proportion, largest remainder first, and a partition too small for
    one request gets none; the line says so). One request is the least a job asks for. Returns
    (requests per round, rows asked for in all, why: the line the run prints)."""
    per_round = rows_per_request * iterations  # rows one request per round brings over the run
    keys = list(real_rows)
    if not keys:
        return {}, {}, f"no partition to ask rows for over {iterations} round(s)"
    want = {
        k: min(max_per_partition, round(per_real_row * max(n, 1))) for k, n in real_rows.items()
    }
    cap_each = max(1, max_per_partition // per_round)
    need = {k: min(cap_each, max(1, math.ceil(w / per_round))) for k, w in want.items()}
    budget = max(1, max_total // per_round)
    requests = dict(need)
    scaled = sum(need.values()) > budget
    if scaled:
        total = sum(need.values())
        raw = np.array([need[k] * budget / total for k in keys])
        share = np.floor(raw).astype(int)
        for i in np.argsort(-(raw - share), kind="stable")[: budget - int(share.sum())]:
            share[i] += 1
        requests = {k: int(r) for k, r in zip(keys, share, strict=True)}
    asked = {k: r * per_round for k, r in requests.items()}
    capped = [k for k, w in want.items() if w == max_per_partition]
    unasked = [k for k in keys if requests[k] == 0]
    why = (
        f"{sum(asked.values())} rows asked for over {iterations} round(s) "
        f"({rows_per_request} per request): {per_real_row:g} per real row of each partition"
        + (
            f", {len(capped)} capped at max_rows_per_partition={max_per_partition}"
            if capped
            else ""
        )
        + (f", shared to fit max_generated_rows={max_total}" if scaled else "")
        + (
            f"; {len(unasked)} of {len(keys)} partitions too small for one request under it: "
            + ", ".join(unasked)
            if unasked
            else ""
        )
    )
    return requests, asked, why


def label_check(
    gen: pd.DataFrame,
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    base: np.ndarray,
    spec: ScoringSpec,
    fixed: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label hygiene: a teacher (the model, trained on the partition's training rows) flags
    generated rows whose label it contradicts with confidence `label_check_confidence`: for
    classification, the label's probability is below ``1 - confidence``; for regression, the
    value lies outside the two-sided ``confidence`` band of the model's cross-fitted error.
    "filter" returns flagged rows apart, as a non-candidate arm (`.rejected`, visible in the arms
    table); "relabel" gives them the teacher's label; "off" does nothing. A wrong label is the
    one flaw a rule check cannot see, and a few flipped rows can pass a noisy screen."""
    empty = gen.iloc[:0]
    if spec.label_check == "off" or gen.empty:
        return gen, empty
    from statistics import NormalDist

    if fixed is not None:
        x_tr = np.vstack([x_tr, fixed[0]])
        y_tr = np.concatenate([np.asarray(y_tr, dtype=object), np.asarray(fixed[1], dtype=object)])
    teacher = spec.model.fit(x_tr, y_tr)
    x_gen, y_gen = spec.encoder.transform(gen), spec.encoder.target(gen)
    conf = spec.label_check_confidence
    if spec.task == "regression":
        band = NormalDist().inv_cdf(0.5 + conf / 2) * float(np.sqrt(np.mean(base)))
        pred = teacher.predict(x_gen)
        flagged = np.abs(np.asarray(y_gen, dtype=float) - pred) > band
        better: Any = pred
    else:
        proba = teacher.proba(x_gen)
        idx = spec.model.label_index(y_gen)
        p_label = np.where(idx >= 0, proba[np.arange(len(idx)), np.maximum(idx, 0)], 0.0)
        flagged = p_label < 1.0 - conf
        better = np.asarray(spec.model.classes, dtype=object)[np.argmax(proba, axis=1)]
    if not flagged.any():
        return gen, empty
    if spec.label_check == "relabel":
        gen = gen.copy()
        relabelled = pd.Series(better, index=gen.index)[flagged]
        gen[spec.target] = gen[spec.target].astype(object)
        gen.loc[flagged, spec.target] = relabelled.to_numpy()
        return retype(gen, spec.target, spec.task), empty
    bad = gen[flagged].copy()
    qidx = bad[REQUEST_COL].map(question_tag)
    bad[ARM] = bad[DGR_COL].astype(str) + ".r" + bad[ROUND].astype(str) + "." + qidx + ".rejected"
    bad[RULE] = bad[QRULE_COL].map(lambda j: Rule.from_json(j).simplify().to_text())
    bad[GAIN_COL] = float("nan")
    bad[AGREE_COL] = False
    bad[CANDIDATE_COL] = False
    bad[PRED_COL] = [str(v) for v in np.asarray(better, dtype=object)[flagged]]
    bad[GENERATOR] = spec.generator
    return gen[~flagged].reset_index(drop=True), bad.reset_index(drop=True)


def question_tag(request_id: Any) -> str:
    """The question part of a request id (`<dgr>|r<round>|q<i>|s<rep>`; `rerouted` for re-routed
    rows), "q0" when the id has none."""
    parts = str(request_id).split("|")
    return parts[2] if len(parts) > 2 else "q0"


def retype(gen: pd.DataFrame, target: str, task: str) -> pd.DataFrame:
    """Labels put back by the teacher take the column's numeric type when they are numbers."""
    if task == "regression":
        gen[target] = pd.to_numeric(gen[target])
    else:
        converted = pd.to_numeric(gen[target], errors="coerce")
        if converted.notna().all():
            gen[target] = converted
    return gen


def majority(labels: pd.Series) -> str:
    mode = labels.mode()
    return str(mode.iloc[0]) if len(mode) else ""
