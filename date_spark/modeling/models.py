"""The one model: what generation's gain, selection's test and the evaluation train and score.

Before, three stages used three tree settings and 0/1 flips, so the prior that ordered the bandit
did not predict what selection measured, and selection's test had no power. Now one `ModelSpec`
(built from `selection.model`, the model the user will train downstream) fits every model, and
one task loss scores it, per row:

- classification: the Brier score ``sum_k (p_k - [y = k])^2`` over the table's classes (default;
  bounded, so a confident tree leaf cannot dominate a paired test) or the log-loss; the 0/1 error
  is reported beside it;
- regression: the squared error.

Cross-fitting (`crossfit_losses`) gives every scored row one out-of-fold loss: the rows are split
into K folds by a hash of their values, and each fold is predicted by a model trained on the other
folds, plus rows that are always trained on (`fixed`), plus the candidate synthetic rows
(`extra`). Comparing two calls that differ only in `extra` row by row is the paired test that
generation's gain, selection's screen and its confirmation all use.

Models are fitted with native thread pools pinned to one thread: Spark already runs a task per
core, and oversubscribed OpenMP made small fits many times slower here (measured in discovery).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from date_spark.config import SelectionConfig
from date_spark.errors import ConfigError
from date_spark.modeling.features import FeatureEncoder
from date_spark.schema import TableSchema

MODEL_KINDS: tuple[str, ...] = (
    "hist_gradient_boosting",
    "decision_tree",
    "linear",
    "logistic",
    "random_forest",
)
_LOG_EPS = 1e-6  # log-loss clip: a pure leaf's 0 probability costs 13.8, not infinity

__all__ = [
    "MODEL_KINDS",
    "FittedModel",
    "ModelSpec",
    "crossfit_losses",
    "crossfit_many",
    "estimator",
    "fold_ids",
    "one_thread",
    "resolve_loss",
]


def resolve_loss(loss: str, task: str) -> str:
    """The concrete loss for `task` ("auto": Brier for classification, squared error else)."""
    if loss == "auto":
        return "squared_error" if task == "regression" else "brier"
    if task == "regression" and loss != "squared_error":
        raise ConfigError(f"loss {loss!r} is for classification; a regression uses squared_error")
    if task != "regression" and loss == "squared_error":
        raise ConfigError("loss squared_error is for regression; use brier or log_loss")
    if loss not in ("brier", "log_loss", "squared_error"):
        raise ConfigError(f"unknown loss {loss!r}; use auto, brier, log_loss or squared_error")
    return loss


def estimator(
    kind: str,
    task: str,
    *,
    categorical: Sequence[int] = (),
    n_features: int | None = None,
    max_depth: int | None = None,
    seed: int = 42,
) -> Any:
    """An unfitted scikit-learn estimator of `kind` over the `FeatureEncoder` matrix (float64,
    NaN = missing; categorical columns hold codes 0..K-1)."""
    reg = task == "regression"
    cat = sorted(set(categorical))
    if kind == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        mask = None
        if cat and n_features:
            mask = [i in set(cat) for i in range(n_features)]
        hgb = HistGradientBoostingRegressor if reg else HistGradientBoostingClassifier
        return hgb(max_depth=max_depth, categorical_features=mask, random_state=seed)
    if kind == "decision_tree":
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        tree = DecisionTreeRegressor if reg else DecisionTreeClassifier
        return tree(max_depth=max_depth, min_samples_leaf=5, random_state=seed)
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        rf = RandomForestRegressor if reg else RandomForestClassifier
        return rf(
            n_estimators=50, max_depth=max_depth, min_samples_leaf=2, n_jobs=1, random_state=seed
        )
    if kind in ("linear", "logistic"):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        impute = SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True)
        numeric = Pipeline([("impute", impute), ("scale", StandardScaler())])
        est = Ridge(alpha=1.0) if reg else LogisticRegression(C=1.0, max_iter=500)
        if n_features is None:
            return Pipeline([("prep", numeric), ("model", est)])
        num = [i for i in range(n_features) if i not in set(cat)]
        parts: list[tuple[str, Any, list[int]]] = []
        if cat:  # codes, NaN for missing: one-hot keeps NaN as its own category
            parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cat))
        if num:
            parts.append(("num", numeric, num))
        return Pipeline([("prep", ColumnTransformer(parts)), ("model", est)])
    raise ConfigError(f"unknown model {kind!r}; use one of {', '.join(MODEL_KINDS)}")


@dataclass(frozen=True)
class ModelSpec:
    """Which model, for which task, scored by which loss. Plain data: pickled into UDFs.

    `classes` are every label of the table in a fixed order (classification): a model trained on
    a fold that lacks a class still gives that class a probability (0), so losses of models
    trained on different rows stay comparable."""

    kind: str
    task: str
    loss: str = "auto"
    classes: tuple[Any, ...] = ()
    categorical: tuple[int, ...] = ()
    n_features: int | None = None
    max_depth: int | None = None
    seed: int = 42
    _index: dict[Any, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"unknown model {self.kind!r}; use one of {', '.join(MODEL_KINDS)}")
        object.__setattr__(self, "loss", resolve_loss(self.loss, self.task))
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.classes)})

    @staticmethod
    def for_table(
        cfg: SelectionConfig,
        schema: TableSchema,
        encoder: FeatureEncoder,
        *,
        seed: int = 42,
        kind: str | None = None,
    ) -> ModelSpec:
        """The spec the config names for this table (`kind` overrides `cfg.model`, e.g. with
        `evaluation.model`)."""
        return ModelSpec(
            kind=kind or cfg.model,
            task=schema.task,
            loss=cfg.loss,
            classes=tuple(schema.classes),
            categorical=tuple(encoder.categorical_indices),
            n_features=len(encoder),
            max_depth=cfg.model_max_depth,
            seed=seed,
        )

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    @property
    def loss_name(self) -> str:
        """How reports name the loss."""
        return {"brier": "Brier score", "log_loss": "log-loss", "squared_error": "MSE"}[self.loss]

    def make(self) -> Any:
        return estimator(
            self.kind,
            self.task,
            categorical=self.categorical,
            n_features=self.n_features,
            max_depth=self.max_depth,
            seed=self.seed,
        )

    def label_index(self, y: np.ndarray) -> np.ndarray:
        """Class positions of labels in `classes` (-1 for a label the table does not have)."""
        return pd.Series(np.asarray(y, dtype=object)).map(self._index).fillna(-1).to_numpy(int)

    def fit(self, X: np.ndarray, y: np.ndarray) -> FittedModel:
        """Fit on (X, y). Fewer than two rows, or one class, gives the constant model.
        Classifiers learn class positions in `classes`, so every model speaks the same labels."""
        if self.regression:
            target = np.asarray(y, dtype=np.float64)
            if len(target) < 2:
                return FittedModel(self, None, float(np.mean(target)) if len(target) else 0.0)
        else:
            target = self.label_index(y)
            known = target >= 0
            X, target = X[known], target[known]
            if len(target) < 2 or len(np.unique(target)) < 2:
                return FittedModel(self, None, self._prior(target))
        model = self.make()
        with warnings.catch_warnings(), one_thread():
            warnings.simplefilter("ignore")
            model.fit(_without_empty_columns(X), target)
        return FittedModel(self, model, None)

    def _prior(self, idx: np.ndarray) -> np.ndarray:
        k = max(len(self.classes), 1)
        if len(idx):
            return np.bincount(idx, minlength=k)[:k] / len(idx)
        return np.full(k, 1.0 / k)


_CONTROLLER: list[Any] = []  # this process's thread-pool controller, made once


def one_thread() -> Any:
    """Native thread pools (OpenMP, BLAS) at one thread, for a block. Spark already runs one task
    per core, and oversubscribed pools made a boosted-tree fit 40x slower there (16 s vs 0.4 s);
    on the driver's small frames an OpenMP team per call spent its time waiting (predicting 300
    rows took 0.2 s per call under load). Results do not depend on the thread count. The
    controller is made once per process: making one lists the loaded libraries each time."""
    if not _CONTROLLER:
        import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the controller must see)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1)


def _without_empty_columns(X: np.ndarray) -> np.ndarray:
    """A column with no value in these rows (a 5%-null column among a small partition's rows, one
    of 300) breaks scikit-learn's histogram binning ("window shape cannot be larger than input
    array shape"). As a constant 0 it offers no split, which is all an empty column can say;
    predictions still see NaN there, which the model routes as it learned to."""
    if X.dtype.kind != "f" or not len(X):
        return X
    empty = np.isnan(X).all(axis=0)
    if not empty.any():
        return X
    out = X.copy()
    out[:, empty] = 0.0
    return out


@dataclass
class FittedModel:
    """A fitted estimator, or a constant (mean / class frequencies) when the rows allow none."""

    spec: ModelSpec
    estimator: Any | None
    constant: Any

    def proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities in `spec.classes` order, shape (n, len(classes))."""
        n, k = len(X), len(self.spec.classes)
        if self.estimator is None:
            return np.tile(np.asarray(self.constant, dtype=float), (n, 1))
        out = np.zeros((n, k))
        if n == 0:
            return out
        with warnings.catch_warnings(), one_thread():
            warnings.simplefilter("ignore")
            p = np.asarray(self.estimator.predict_proba(X), dtype=float)
        out[:, np.asarray(self.estimator.classes_, dtype=int)] = p
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.spec.regression:
            if self.estimator is None:
                return np.full(len(X), float(self.constant))
            with one_thread():
                return np.asarray(self.estimator.predict(X), dtype=np.float64)
        classes = np.asarray(self.spec.classes, dtype=object)
        return classes[np.argmax(self.proba(X), axis=1)] if len(X) else classes[:0]

    def losses(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The task loss of each row (see the module doc)."""
        return row_losses(self.spec, self, X, y)

    def errors(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """0/1 misclassification per row (squared error for regression)."""
        if self.spec.regression:
            return row_losses(self.spec, self, X, y)
        pred = self.predict(X)
        return np.asarray(pred != np.asarray(y, dtype=object), dtype=np.float64)


def row_losses(spec: ModelSpec, model: FittedModel, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    if spec.regression:
        diff = np.asarray(y, dtype=np.float64) - model.predict(X)
        return np.asarray(diff**2, dtype=np.float64)
    p = model.proba(X)
    idx = spec.label_index(y)
    rows = np.arange(len(idx))
    known = idx >= 0
    p_true = np.zeros(len(idx))
    p_true[known] = p[rows[known], idx[known]]
    if spec.loss == "log_loss":
        return np.asarray(-np.log(np.clip(p_true, _LOG_EPS, 1.0)), dtype=np.float64)
    # Brier: sum over classes of (p_k - onehot_k)^2 = sum p^2 - 2 p_true + 1
    return np.asarray((p**2).sum(axis=1) - 2.0 * p_true + 1.0, dtype=np.float64)


def fold_ids(frame: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """Fold of each row in 0..k-1 from a hash of its values and `seed`: the same row lands in the
    same fold in generation's UDF and in selection on the driver, whatever the row order."""
    if k < 2:
        raise ConfigError(f"cross-fitting needs at least 2 folds, got {k}")
    if frame.empty:
        return np.zeros(0, dtype=int)
    key = str(seed).encode()[:16].ljust(16, b"0").decode()
    h = pd.util.hash_pandas_object(frame, index=False, hash_key=key).to_numpy(np.uint64)
    folds = (h % np.uint64(k)).astype(int)
    if len(frame) >= k and len(np.unique(folds)) < k:  # tiny or degenerate: deal rows round-robin
        order = np.argsort(h, kind="stable")
        folds = np.empty(len(frame), dtype=int)
        folds[order] = np.arange(len(frame)) % k
    return folds


def crossfit_losses(
    spec: ModelSpec,
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    *,
    fixed: tuple[np.ndarray, np.ndarray] | None = None,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
    errors: bool = False,
    train_fraction: float = 1.0,
) -> np.ndarray:
    """One out-of-fold loss per row of (X, y): fold f is predicted by a model trained on the other
    folds + `fixed` rows + `extra` rows. With `errors`, the 0/1 error instead (see the module).
    `train_fraction` < 1 trains on a seeded share of the other folds only (a learning curve)."""
    n = len(y)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    parts_x = [fixed[0]] if fixed is not None and len(fixed[1]) else []
    parts_y = [fixed[1]] if fixed is not None and len(fixed[1]) else []
    if extra is not None and len(extra[1]):
        parts_x.append(extra[0])
        parts_y.append(extra[1])
    rng = np.random.default_rng(spec.seed)
    for f in np.unique(folds):
        held = folds == f
        use = ~held
        if train_fraction < 1.0:
            idx = np.flatnonzero(use)
            keep = rng.choice(idx, size=max(2, round(train_fraction * len(idx))), replace=False)
            use = np.zeros(n, dtype=bool)
            use[keep] = True
        tx = np.vstack([X[use], *parts_x]) if parts_x else X[use]
        ty = np.concatenate([_obj(y[use]), *map(_obj, parts_y)]) if parts_y else y[use]
        model = spec.fit(tx, ty)
        out[held] = model.errors(X[held], y[held]) if errors else model.losses(X[held], y[held])
    return out


def crossfit_many(
    spec: ModelSpec,
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    extras: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    fixed: tuple[np.ndarray, np.ndarray] | None = None,
    workers: int = 1,
) -> list[np.ndarray]:
    """`crossfit_losses` with each of `extras` added, in `workers` processes
    (`placement.parallel_map`; the same losses as one after the other)."""
    from date_spark.runtime.placement import parallel_map

    run = functools.partial(_crossfit_with, spec, X, y, folds, fixed)
    return parallel_map(run, list(extras), workers)


def _crossfit_with(
    spec: ModelSpec,
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    fixed: tuple[np.ndarray, np.ndarray] | None,
    extra: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    return crossfit_losses(spec, X, y, folds, fixed=fixed, extra=extra)


def _obj(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=object)
