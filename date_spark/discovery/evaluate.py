"""One candidate's evaluation, run inside `applyInPandas` on its sampled rows: the sharing check,
training and validating its model, and, when rejected, the split proposals its children come
from; plus the model helpers (`error`, `fit_model`) the search and the evaluation share. The
decisions are explained in `date_spark.discovery`'s module doc."""

from __future__ import annotations

import functools
import json
import math
import pickle
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from date_spark.discovery.backend import CAND_COL, KEY_COL
from date_spark.io.split import holdout_mask
from date_spark.modeling.features import FeatureEncoder
from date_spark.modeling.models import estimator, one_thread
from date_spark.modeling.trees import RuleTree, Split, score_order
from date_spark.schema import TableSchema

__all__ = [
    "CROSS_DDL",
    "RESULT_DDL",
    "SUBSTANTIAL_GAIN",
    "CrossSpec",
    "EvalSpec",
    "RootExtras",
    "candidate_evaluator",
    "cross_scorer",
    "error",
    "fit_model",
    "losses",
    "residuals",
]

# Columns are ranked by the shallowest depth at which the residual tree splits on them with at
# least this share of its best node's gain, then by their total gain. A regime variable sits above
# the label thresholds it conditions (which the tree repeats in every regime branch); noise splits
# the greedy tree puts at its root carry little gain and do not count (measured).
SUBSTANTIAL_GAIN = 0.25

RESULT_DDL = (
    f"{CAND_COL} int, n long, n_val long, shared_model int, shared_error double, trained boolean, "
    "accepted boolean, "
    "val_error double, model binary, splits string, extra binary"
)
CROSS_DDL = f"{CAND_COL} int, model_id int, error double, n long"


# ================================================================================================
# Models
# ================================================================================================


def losses(model: Any, X: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Per-row loss: 0/1 misclassification or squared error."""
    pred = np.asarray(model.predict(X))
    if task == "regression":
        return np.asarray((np.asarray(y, dtype=np.float64) - pred.astype(np.float64)) ** 2)
    return np.asarray(pred != np.asarray(y), dtype=np.float64)


def error(model: Any, X: np.ndarray, y: np.ndarray, task: str) -> float:
    """The DGR error of `model` on (X, y): 1 - accuracy (classification) or MSE (regression)."""
    if len(y) == 0:
        return float("nan")
    return float(np.mean(losses(model, X, y, task)))


def fit_model(
    kind: str,
    task: str,
    encoder: FeatureEncoder,
    X: np.ndarray,
    y: np.ndarray,
    *,
    max_depth: int | None,
    seed: int,
) -> Any:
    """Fit `kind` on (X, y); a single-class sample gets a constant classifier."""
    if task != "regression" and len(np.unique(y)) < 2:
        from sklearn.dummy import DummyClassifier

        return DummyClassifier(strategy="most_frequent").fit(X, y)
    model = estimator(
        kind,
        task,
        categorical=encoder.categorical_indices,
        n_features=len(encoder),
        max_depth=max_depth,
        seed=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    return model


def _no_empty_columns(X: np.ndarray) -> np.ndarray:
    """X with columns missing in every row set to 0: scikit-learn's histogram binning fails on a
    column with no value at all (a column almost always null can be empty in a sample)."""
    if X.dtype.kind != "f" or not X.size:
        return X
    empty = np.isnan(X).all(axis=0)
    return np.where(empty[None, :], 0.0, X) if empty.any() else X


def _floor_model(task: str, encoder: FeatureEncoder, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cats = [i in set(encoder.categorical_indices) for i in range(len(encoder))]
    cls = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    return cls(max_iter=200, categorical_features=cats if any(cats) else None, random_state=seed)


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


# ================================================================================================
# Per-candidate evaluation (runs inside applyInPandas, on one candidate's sampled rows)
# ================================================================================================


@dataclass(frozen=True)
class EvalSpec:
    schema: TableSchema
    encoder: FeatureEncoder | None  # None at the root: fitted from the root sample
    model: str
    max_depth: int | None
    global_model: str
    validation_fraction: float
    split_depth: int
    split_target: str
    splits_per_candidate: int | None
    lookahead_splits: int
    max_categories: int
    rho: float | None  # None at the root (not known yet)
    root: bool
    seeds: Mapping[int, int]
    models: Mapping[int, bytes] = field(default_factory=dict)  # for the sharing check


def _result_frame(row: dict[str, Any]) -> pd.DataFrame:
    cols = [c.strip().split(" ")[0] for c in RESULT_DDL.split(",")]
    return pd.DataFrame([{c: row.get(c) for c in cols}], columns=cols)


def _one_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run `fn` with native thread pools at one thread (`models.one_thread`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_thread():
            return fn(*args, **kwargs)

    return wrapper


@_one_thread
def _evaluate_group(pdf: pd.DataFrame, spec: EvalSpec) -> pd.DataFrame:
    """Sharing check, else train + validate; for a rejected candidate also its split nodes."""
    cid = int(pdf[CAND_COL].iloc[0])
    pdf = pdf.sort_values(KEY_COL, kind="mergesort").reset_index(drop=True)
    task = spec.schema.task
    enc = spec.encoder or FeatureEncoder.from_pandas(spec.schema, pdf, spec.max_categories)
    X = enc.transform(pdf)
    y = enc.target(pdf)
    seed = int(spec.seeds[cid])
    row: dict[str, Any] = {
        CAND_COL: cid,
        "n": len(y),
        "n_val": 0,
        "shared_model": -1,
        "shared_error": np.nan,
        "trained": False,
        "accepted": False,
        "val_error": np.nan,
        "model": None,
        "splits": "[]",
        "extra": None,
    }
    if spec.models and spec.rho is not None and _constant_error(y, task) > spec.rho:
        # A region whose majority label (or mean) alone meets rho would "fit" any model that
        # predicts that label: sharing there would glue unrelated regions into one DGR.
        best_id, best_err = -1, math.inf
        for mid in sorted(spec.models):
            e = error(pickle.loads(spec.models[mid]), X, y, task)
            if e < best_err:
                best_id, best_err = mid, e
        if best_err <= spec.rho:
            row.update(shared_model=best_id, shared_error=best_err)
            return _result_frame(row)
    val = holdout_mask(len(y), spec.validation_fraction, seed)
    if val.sum() == 0 or (~val).sum() == 0:
        val = np.zeros(len(y), dtype=bool)
        val[: len(y) // 2] = True
    model = fit_model(spec.model, task, enc, X[~val], y[~val], max_depth=spec.max_depth, seed=seed)
    loss = losses(model, X[val], y[val], task)
    err = float(loss.mean()) if len(loss) else math.inf
    accepted = spec.rho is not None and err <= spec.rho
    row.update(trained=True, val_error=err, n_val=int(val.sum()))
    row["accepted"] = accepted
    if accepted or spec.root:
        row["model"] = _dumps(model)
    if not accepted or spec.root:
        splits = _split_proposals(spec, enc, model, pdf, X, y, val, seed)
        row["splits"] = json.dumps(
            [
                {
                    "column": s.column,
                    "preds": [p.to_json() for p in s.partition(with_nulls=False)],
                    "null_split": s.is_null_split,
                    "gain": s.gain,
                    "fracs": [s.frac_left, s.frac_right],
                }
                for s in splits
            ]
        )
    if spec.root:
        row["extra"] = _dumps(_root_extras(spec, enc, X, y, val, loss, seed))
    return _result_frame(row)


def _constant_error(y: np.ndarray, task: str) -> float:
    """Error of predicting the majority label (classification) or the mean (regression)."""
    if len(y) == 0:
        return 0.0
    if task == "regression":
        return float(np.var(np.asarray(y, dtype=np.float64)))
    _, counts = np.unique(y, return_counts=True)
    return float(1.0 - counts.max() / len(y))


def residuals(model: Any, X: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """y - prediction (regression) or one-hot label - predicted probability (one column for two
    classes): where and how the model misses."""
    if task == "regression":
        return np.asarray(y, dtype=np.float64) - np.asarray(model.predict(X), dtype=np.float64)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    classes = np.asarray(model.classes_)
    onehot = (np.asarray(y)[:, None] == classes[None, :]).astype(np.float64)
    r = onehot - proba
    return r[:, 1] if r.shape[1] == 2 else r


def _split_proposals(
    spec: EvalSpec,
    enc: FeatureEncoder,
    model: Any,
    pdf: pd.DataFrame,
    X: np.ndarray,
    y: np.ndarray,
    val: np.ndarray,
    seed: int,
) -> list[Split]:
    """The splits whose children get queued.

    `splits_per_candidate` None: every split node of the tree (the authors' breadth). Otherwise
    each column's best split, ranked as `SUBSTANTIAL_GAIN` says; the top `lookahead_splits` are
    scored by refitting the candidate's model on each child (train part) and pooling the
    children's validation losses. The best-ranked split stands unless another one's children
    fit significantly better (paired difference over the same validation rows, two standard
    errors): the ranking alone can take a regime's own label threshold for a boundary when they
    tie, and child fit alone is noise when every child is still a mixture (both measured on the
    planted tables). A scored split's gain becomes its error reduction, which orders the queue."""
    found = _split_nodes_for(spec, enc, model, X, y, seed)
    k = spec.splits_per_candidate
    if k is None:
        return found
    best: dict[str, Split] = {}
    total: dict[str, float] = {}
    top = found[0].gain if found else 0.0
    shallow: dict[str, int] = {}
    for s in found:  # highest gain first: each column's best node stands for the column
        best.setdefault(s.column, s)
        total[s.column] = total.get(s.column, 0.0) + s.gain
        if s.gain >= SUBSTANTIAL_GAIN * top:
            shallow[s.column] = min(shallow.get(s.column, s.depth), s.depth)
    ranked = sorted(
        (replace(s, gain=total[s.column]) for s in best.values()),
        key=lambda s: (shallow.get(s.column, 1 << 30), -s.gain, s.node),
    )
    pool = ranked[: max(spec.lookahead_splits, k)]
    if spec.lookahead_splits <= 1 or len(pool) <= 1 or val.sum() < 2:
        return ranked[:k]
    task = spec.schema.task
    parent = float(losses(model, X[val], y[val], task).mean())
    vidx = np.flatnonzero(val)
    pos = np.full(len(y), -1)
    pos[vidx] = np.arange(len(vidx))
    scored: list[tuple[float, int, Split, np.ndarray]] = []
    for i, s in enumerate(pool):
        lv = np.zeros(len(vidx))
        for p in s.partition(with_nulls=not s.is_null_split):
            side = p.mask(pdf).to_numpy(dtype=bool)
            tr, va = side & ~val, side & val
            if va.sum() == 0:
                continue
            child = model
            if tr.sum() >= 2:
                child = fit_model(
                    spec.model, task, enc, X[tr], y[tr], max_depth=spec.max_depth, seed=seed
                )
            lv[pos[va]] = losses(child, X[va], y[va], task)
        score = float(lv.mean())
        scored.append((score, i, replace(s, gain=max(parent - score, 0.0) + 1e-9 * s.gain), lv))
    ref = scored[0]
    challenger = min(scored, key=lambda t: (t[0], t[1]))
    if challenger is not ref:
        d = challenger[3] - ref[3]
        se = float(d.std(ddof=1) / math.sqrt(len(d)))
        if not float(d.mean()) < -2.0 * se:
            challenger = ref
    rest = sorted((t for t in scored if t is not challenger), key=lambda t: (t[0], t[1]))
    return [t[2] for t in [challenger, *rest][:k]]


def _split_nodes_for(
    spec: EvalSpec, enc: FeatureEncoder, model: Any, X: np.ndarray, y: np.ndarray, seed: int
) -> list[Split]:
    """Split nodes of a tree on the candidate's rows: fitted to the residuals of its rejected
    model (splits where the model fails: regime boundaries), or to the label (the authors')."""
    leaf = max(5, len(y) // 100)
    depth = spec.split_depth
    if spec.split_target == "residual":
        r = residuals(model, X, y, spec.schema.task)
        if np.ptp(r, axis=0).max(initial=0.0) > 0:
            rt = RuleTree.fit(
                X,
                r,
                enc,
                "regression",
                max_depth=depth,
                min_samples_leaf=leaf,
                seed=seed,
                recode=score_order(X, r, enc),
            )
            found = rt.splits(X)
            if found:
                return found
    rt = RuleTree.fit(
        X, y, enc, spec.schema.task, max_depth=depth, min_samples_leaf=leaf, seed=seed
    )
    return rt.splits(X)


@dataclass(frozen=True)
class RootExtras:
    """What the root candidate's evaluation returns beside its model (pickled in `extra`)."""

    encoder: FeatureEncoder
    floor: float  # the reference model's error: an estimate of the noise no rule can beat
    baseline: float  # the constant predictor's error
    root_se: float  # standard error of the root model's validation loss
    global_model: bytes  # the pickled global model, fitted on the whole root sample
    global_error: float


def _root_extras(
    spec: EvalSpec,
    enc: FeatureEncoder,
    X: np.ndarray,
    y: np.ndarray,
    val: np.ndarray,
    root_loss: np.ndarray,
    seed: int,
) -> RootExtras:
    """The encoder, the noise-floor estimate, the constant predictor's error and the global
    model, all from the root sample."""
    task = spec.schema.task
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task != "regression" and len(np.unique(y[~val])) < 2:
            floor = math.inf
        else:
            fm = _floor_model(task, enc, seed).fit(_no_empty_columns(X[~val]), y[~val])
            floor = error(fm, X[val], y[val], task)
    if task == "regression":
        yv = np.asarray(y, dtype=np.float64)
        baseline = float(np.mean((yv[val] - yv[~val].mean()) ** 2))
    else:
        labels, counts = np.unique(y[~val], return_counts=True)
        majority = labels[int(np.argmax(counts))]
        baseline = float(np.mean(y[val] != majority))
    kw = {"max_depth": spec.max_depth, "seed": seed}
    g_val = fit_model(spec.global_model, task, enc, X[~val], y[~val], **kw)  # type: ignore[arg-type]
    global_error = error(g_val, X[val], y[val], task)
    glob = fit_model(spec.global_model, task, enc, X, y, **kw)  # type: ignore[arg-type]
    se = float(np.std(root_loss) / math.sqrt(max(len(root_loss), 1)))
    return RootExtras(enc, float(floor), baseline, se, _dumps(glob), float(global_error))


def candidate_evaluator(spec: EvalSpec) -> Callable[[pd.DataFrame], pd.DataFrame]:
    # A plain closure (not functools.partial): applyInPandas inspects the function's type hints.
    def evaluate(pdf: pd.DataFrame) -> pd.DataFrame:
        return _evaluate_group(pdf, spec)

    return evaluate


def cross_scorer(spec: CrossSpec) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def score(pdf: pd.DataFrame) -> pd.DataFrame:
        return _cross_group(pdf, spec)

    return score


@dataclass(frozen=True)
class CrossSpec:
    encoder: FeatureEncoder
    task: str
    models: Mapping[int, bytes]


@_one_thread
def _cross_group(pdf: pd.DataFrame, spec: CrossSpec) -> pd.DataFrame:
    """Errors of this level's new models on one candidate's sampled rows."""
    cid = int(pdf[CAND_COL].iloc[0])
    pdf = pdf.sort_values(KEY_COL, kind="mergesort").reset_index(drop=True)
    X = spec.encoder.transform(pdf)
    y = spec.encoder.target(pdf)
    rows = [
        {
            CAND_COL: cid,
            "model_id": mid,
            "error": error(pickle.loads(b), X, y, spec.task),
            "n": len(y),
        }
        for mid, b in sorted(spec.models.items())
    ]
    return pd.DataFrame(rows, columns=[CAND_COL, "model_id", "error", "n"])
