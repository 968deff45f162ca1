"""Algorithm 1 of DATE: discover distribution-guiding rules (DGRs) with model sharing, on Spark.

A DGR is a condition in DNF plus one model that explains the rows it covers within an error
threshold rho. The search is top-down, level by level (breadth first):

    level 1: the empty conjunction (every training row). Its model's error, a reference model's
             error (the noise floor) and the constant predictor's error fix the threshold rho_eff;
             this level also fits the feature encoder and the global model.
    level L: pop up to `max_candidates_per_level` conjunctions from a priority queue; for each:
        - if an existing model fits the candidate's rows within rho_eff: add the conjunction to
          that model's DNF (model sharing; no training);
        - else train a new model on 75% of its rows, validate on 25%; accept when error <= rho_eff;
        - else split it with a decision tree fitted on its rows and queue the children
          C AND side (one per side, plus C AND col is null when the column has nulls).
    stop when the queue is empty, uncovered rows <= `stop_uncovered_fraction`, or at `max_levels`
    or the time budget (then the result is marked incomplete). Rows no DGR covers are served by a
    global model (a decision tree on the root sample).

Decisions where the paper and the authors' code are silent (see ../shared/reference/METHOD.md);
every "measured" below is on `datasets.planted_regimes` (5 regimes, 5% label noise):

* **Threshold (`rho_mode`)**. "absolute": rho_eff = rho, as in the paper. A rho below the table's
  irreducible error (0.05 with 5% label noise) can never be met, so discovery warns and ends with
  no DGR instead of searching for hours. "relative" (default, rho = 0.25):
  rho_eff = floor * (root_error / floor) ** rho, where root_error is the DGR model fitted on the
  whole table and floor = min(root_error, a gradient-boosted reference model's error) estimates
  what no partition can beat (noise plus finite-sample error). rho places the threshold between
  the two on a log scale, so one default serves error rates and MSE that span orders of magnitude
  (a linear share of the gap accepted regime mixtures in regression: measured). With the default
  the planted classification table gets rho_eff ~0.09-0.11 at 5% noise. The root itself is
  accepted (one DGR for everything: the table is homogeneous for the model) when its error is
  within two standard errors of the floor. "variance": rho_eff = rho * the constant predictor's
  error (the target's variance for regression, 1 - majority share for classification). Errors are
  1 - accuracy for classification and MSE for regression (`error()`).
* **Model class**. Default "linear" (logistic / ridge regression on one-hot categoricals and
  standardised, mean-imputed numerics with missing-value indicators). A depth-6 tree fits the union
  of two planted regimes as well as one regime (5-9% error either way: measured), so no threshold on
  its error can tell them apart; a linear model fits a regime near the noise floor and a union at
  24-30%. Trees and forests stay available (`model`); the global model is a decision tree.
* **Splits**. The splitting tree is fitted to the *residuals* of the candidate's rejected model
  (`split_target`), so splits fall where that model fails, i.e. at regime boundaries (model-based
  recursive partitioning); the authors' tree on the label prefers each regime's own label
  thresholds (measured), whose children look homogeneous because the label is constant there.
  Categories in that tree are ordered by the model's per-category score vectors (`trees.
  score_order`), so ``c in ('a', 'b')`` can be found even when the model's own category effects
  leave every category's mean residual at zero. Columns are ranked by the shallowest depth at
  which the residual tree splits on them substantially, then by total gain (`SUBSTANTIAL_GAIN`):
  a regime variable sits above the label thresholds it conditions. Children of the best split
  only (`splits_per_candidate` = 1) are queued: the authors' breadth (every split node, `None`) lets
  more overlapping candidates face the threshold, and with noisy validation errors some regime
  mixture passes (measured: purity fell to ~0.5 on half of the seeds). Among the best split per
  column, the top `lookahead_splits` are refitted on their children, and the best-ranked split is
  replaced only when another one's children fit significantly better (`_split_proposals`).
* **Disjoint rules**. Every candidate is kept logically disjoint from the accepted conjunctions: a
  candidate that overlaps a conjunction accepted after it was queued is rewritten into the disjoint
  pieces C AND NOT A (NOT (a1 AND a2) = NOT a1 OR (a1 AND NOT a2); NOT (x < t) = x >= t OR
  x is null). So a DGR's rule describes exactly the rows its model was validated on, rules never
  overlap, and routing does not depend on rule order. A candidate that overlaps a conjunction
  accepted earlier in the same level is deferred (re-queued, rewritten at the next pop).
* **Null routing**. Split children are ``col < d`` / ``col >= d`` (categoricals ``col in S`` /
  ``col not in S``) plus an explicit ``col is null`` child when the column holds nulls, so every
  row goes to exactly one child (`date_spark.trees`). NaN in float columns is treated as null.
* **Minimum support**. A candidate needs max(`min_rows`, `min_support` * rows) rows to be
  evaluated; smaller ones stay uncovered (global model).
* **Model sharing**. Existing models are scored on each candidate's sampled rows before training.
  A candidate whose majority label (mean, for regression) alone meets rho_eff never joins another
  model: any model predicting that label would "fit" it, gluing unrelated regions. Candidates of
  one level train concurrently, so the level's new models are then cross-scored on each other's
  sampled rows (a pass over the cached sample, not the table) and a later candidate joins an
  earlier model that fits it. A shared DGR's `val_error` is the support-weighted mean of its
  conjunctions' errors (own 25% holdout for the trained one, the whole sample for shared ones).

Spark shape (per level, by design 2 full passes; the driver holds rules, models and counts only):
1. one aggregation counts every candidate's rows (`rules.count_rules`, one `count(when)` each);
2. one pass draws a sample capped per candidate: a per-candidate fraction min(1, cap / count),
   one projected ``when`` per candidate into an array of matching candidate ids, kept only for rows
   that fall in some candidate's fraction; only that sample is exploded, cached, and sent to
   ``groupBy(candidate).applyInPandas``, which runs the sharing check (existing models pickled into
   the function's closure), trains + validates the new model and, if rejected, returns the split
   predicates. The in-level sharing check reads the cached sample again; then it is unpersisted.
Level 1 scans twice too (statistics, root sample). The passes are measured, not declared: every
query on the table carries an observed row counter (`date_spark.scans`), and each level's log line
and `LevelStats.scans` give rows read / table rows ("not measured" where the session does not
report observed metrics). DataFrame API only, within Spark 3.5, so it runs on Spark Connect. Native
thread pools are pinned to one thread inside UDFs (Spark already runs a task per core;
oversubscription made a fit 40x slower here).
Determinism: samples are drawn from a hash of each row and the seed (`split.row_uniform`, so
they do not depend on partitioning), rows are sorted by a hash of their values inside each group,
and every model seed derives from the run seed and the candidate's text.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import pickle
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from date_spark.columns import named_col
from date_spark.config import DiscoveryConfig
from date_spark.errors import DiscoveryError, InputError
from date_spark.features import FeatureEncoder
from date_spark.models import estimator
from date_spark.rules import Conjunction, Predicate, Rule, assign_rules, count_rules
from date_spark.scans import ScanMeter, format_passes
from date_spark.schema import Kind, TableSchema
from date_spark.spark import sql_conf, to_pandas
from date_spark.split import holdout_mask, row_uniform
from date_spark.trees import RuleTree, Split, score_order

logger = logging.getLogger("date_spark.discovery")

CAND_COL = "_date_cand"
KEY_COL = "_date_key"
_RAND_COL = "_date_r"
_IDS_COL = "_date_ids"
_FORMAT_VERSION = 1
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
# Results
# ================================================================================================


@dataclass(frozen=True)
class DGR:
    """One distribution-guiding rule: a DNF condition and the model that explains its rows."""

    rule_id: str
    rule: Rule
    model_id: int
    support: int
    val_error: float


@dataclass(frozen=True)
class Part:
    """One accepted conjunction: which model serves it and how it got there."""

    conjunction: Conjunction
    model_id: int
    support: int
    val_error: float
    level: int
    shared: bool


@dataclass(frozen=True)
class LevelStats:
    level: int
    candidates: int  # popped from the queue
    evaluated: int  # with enough rows, sampled and sent to the UDF
    accepted: int  # new models
    shared: int  # joined an existing model
    rejected: int
    deferred: int
    dropped: int  # too few rows
    trainings: int
    covered_rows: int
    coverage: float
    scans: float | None  # full passes over the table, measured (None: not measured)
    seconds: float


@dataclass(frozen=True)
class Thin:
    """A region the search dropped because it holds fewer training rows than the support floor
    (`min_rows`, `min_support`) but at least `thin_min_rows`: served by the global model, and
    still a segment where generated rows may help (generation prompts it, selection scores it in
    the rest partition)."""

    rule_id: str
    rule: Rule
    support: int


class Discovery:
    """What `discover` found: DGRs with their models, the global model and the search's record."""

    def __init__(
        self,
        *,
        dgrs: list[DGR],
        parts: list[Part],
        models: dict[int, Any],
        global_model: Any,
        encoder: FeatureEncoder,
        schema: TableSchema,
        rho: float,
        rho_mode: str,
        incomplete: bool,
        levels: list[LevelStats],
        trainings: int,
        shared: int,
        n_rows: int,
        stats: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        thin: Sequence[Thin] = (),
    ) -> None:
        self.dgrs = dgrs
        self.thin: list[Thin] = list(thin)
        self.parts = parts
        self.models = models
        self.global_model = global_model
        self.encoder = encoder
        self.schema = schema
        self.rho = rho
        self.rho_mode = rho_mode
        self.incomplete = incomplete
        self.levels = levels
        self.trainings = trainings
        self.shared = shared
        self.n_rows = n_rows
        self.stats: dict[str, Any] = dict(stats or {})
        self.config: dict[str, Any] = dict(config or {})

    # -- summaries -------------------------------------------------------------------------------
    @property
    def covered_rows(self) -> int:
        return sum(p.support for p in self.parts)

    @property
    def coverage(self) -> float:
        return self.covered_rows / self.n_rows if self.n_rows else 0.0

    def rules(self) -> dict[str, Rule]:
        return {d.rule_id: d.rule for d in self.dgrs}

    def __repr__(self) -> str:
        return (
            f"Discovery({len(self.dgrs)} DGRs, {len(self.parts)} conjunctions, "
            f"coverage={self.coverage:.3f}, rho={self.rho:.4g}, incomplete={self.incomplete})"
        )

    # -- Spark -----------------------------------------------------------------------------------
    def route(
        self, mode: str = "first", column: str = "_date_rule_id"
    ) -> Callable[[DataFrame], DataFrame]:
        """`DataFrame -> DataFrame` tagging each row with its DGR id (null: uncovered). One
        projection; rules are disjoint, so "first" and "all" agree on the training rows."""
        if mode not in ("first", "all"):
            raise DiscoveryError(f"route mode must be 'first' or 'all', not {mode!r}")
        return assign_rules(self.rules(), mode, column)  # type: ignore[arg-type]

    def predict(self, column: str = "_date_pred") -> Callable[[DataFrame], DataFrame]:
        """`DataFrame -> DataFrame` adding `column`: each row's prediction by its DGR's model, or
        by the global model when no DGR covers it. One `mapInPandas` pass; the models travel as
        bytes in the function's closure."""
        if self.global_model is None or any(d.model_id not in self.models for d in self.dgrs):
            raise DiscoveryError(
                "this Discovery has no fitted models (loaded from JSON alone); use Discovery.load"
            )
        payload = _dumps(
            {
                "encoder": self.encoder,
                "task": self.schema.task,
                "rules": [(d.rule.dumps(), _dumps(self.models[d.model_id])) for d in self.dgrs],
                "global": _dumps(self.global_model),
            }
        )
        out_type = _prediction_type(self.schema)
        kinds = self.encoder.kinds
        needed = self.encoder.names

        def transform(df: DataFrame) -> DataFrame:
            missing = [c for c in needed if c not in df.columns]
            if missing:
                raise InputError(f"cannot predict: columns {missing} are missing from the frame")
            base = df.drop(column) if column in df.columns else df
            schema = T.StructType([*base.schema.fields, T.StructField(column, out_type, True)])

            def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
                return _predict_batches(batches, payload, column, kinds)

            return base.mapInPandas(fn, schema)

        return transform

    def rules_frame(self, spark: SparkSession) -> DataFrame:
        """rule_id, rule text, model_id, support, val_error, conjunctions: one row per DGR."""
        rows = [
            (
                d.rule_id,
                d.rule.to_text(),
                d.model_id,
                d.support,
                float(d.val_error),
                len(d.rule.conjunctions),
            )
            for d in self.dgrs
        ]
        return spark.createDataFrame(
            rows,
            "rule_id string, rule string, model_id int, support long, val_error double, "
            "conjunctions int",
        )

    # -- persistence -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": "date-spark/discovery",
            "version": _FORMAT_VERSION,
            "schema": json.loads(self.schema.to_json()),
            "encoder": self.encoder.to_json(),
            "rho": self.rho,
            "rho_mode": self.rho_mode,
            "incomplete": self.incomplete,
            "trainings": self.trainings,
            "shared": self.shared,
            "n_rows": self.n_rows,
            "dgrs": [
                {
                    "rule_id": d.rule_id,
                    "rule": d.rule.to_json(),
                    "text": d.rule.to_text(),
                    "model_id": d.model_id,
                    "support": d.support,
                    "val_error": d.val_error,
                }
                for d in self.dgrs
            ],
            "parts": [
                {
                    "conjunction": p.conjunction.to_json(),
                    "model_id": p.model_id,
                    "support": p.support,
                    "val_error": p.val_error,
                    "level": p.level,
                    "shared": p.shared,
                }
                for p in self.parts
            ],
            "levels": [asdict(s) for s in self.levels],
            "thin": [
                {"rule_id": t.rule_id, "rule": t.rule.to_json(), "support": t.support}
                for t in self.thin
            ],
            "stats": _jsonable(self.stats),
            "config": _jsonable(self.config),
        }

    @staticmethod
    def from_json(
        d: Mapping[str, Any],
        models: Mapping[int, Any] | None = None,
        global_model: Any = None,
    ) -> Discovery:
        """Rebuild from `to_json()`; pass the fitted models (or use `load`) to `predict`."""
        if d.get("format") != "date-spark/discovery":
            raise DiscoveryError("not a date-spark discovery file (missing format marker)")
        schema = TableSchema.from_json(json.dumps(d["schema"]))
        kinds = schema.kinds
        dgrs = [
            DGR(
                str(x["rule_id"]),
                Rule.from_json(x["rule"], kinds),
                int(x["model_id"]),
                int(x["support"]),
                float(x["val_error"]),
            )
            for x in d["dgrs"]
        ]
        parts = [
            Part(
                Rule.from_json({"any": [p["conjunction"]]}, kinds).conjunctions[0],
                int(p["model_id"]),
                int(p["support"]),
                float(p["val_error"]),
                int(p["level"]),
                bool(p["shared"]),
            )
            for p in d.get("parts", [])
        ]
        return Discovery(
            dgrs=dgrs,
            parts=parts,
            models={int(k): v for k, v in (models or {}).items()},
            global_model=global_model,
            encoder=FeatureEncoder.from_json(d["encoder"]),
            schema=schema,
            rho=float(d["rho"]),
            rho_mode=str(d.get("rho_mode", "absolute")),
            incomplete=bool(d["incomplete"]),
            levels=[LevelStats(**s) for s in d.get("levels", [])],
            trainings=int(d.get("trainings", 0)),
            shared=int(d.get("shared", 0)),
            n_rows=int(d.get("n_rows", 0)),
            stats=d.get("stats"),
            config=d.get("config"),
            thin=[
                Thin(str(t["rule_id"]), Rule.from_json(t["rule"], kinds), int(t["support"]))
                for t in d.get("thin", [])
            ],
        )

    @staticmethod
    def models_path(path: str | Path) -> Path:
        p = Path(path)
        return p.with_name(p.stem + ".models.pkl")

    def save(self, path: str | Path) -> Path:
        """Write the rules as JSON to `path` and the pickled models to `<stem>.models.pkl` beside
        it (a pickle: load only files this library wrote)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True), encoding="utf-8")
        blob = {
            "models": {k: _dumps(m) for k, m in self.models.items()},
            "global": _dumps(self.global_model),
        }
        self.models_path(p).write_bytes(_dumps(blob))
        return p

    @staticmethod
    def load(path: str | Path) -> Discovery:
        p = Path(path)
        if not p.is_file():
            raise DiscoveryError(f"discovery file {str(p)!r} does not exist")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DiscoveryError(
                f"discovery file {str(p)!r} is not valid JSON: {err.msg}"
            ) from None
        mp = Discovery.models_path(p)
        models: dict[int, Any] = {}
        global_model = None
        if mp.is_file():
            blob = pickle.loads(mp.read_bytes())
            models = {int(k): pickle.loads(v) for k, v in blob["models"].items()}
            global_model = pickle.loads(blob["global"])
        return Discovery.from_json(d, models, global_model)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _prediction_type(schema: TableSchema) -> T.DataType:
    if schema.task == "regression":
        return T.DoubleType()
    return spark_type(schema.column(schema.target).spark_type)


def spark_type(simple: str) -> T.DataType:
    """A Spark type from its simpleString (no JVM round trip, so it works on Spark Connect)."""
    s = simple.strip().lower()
    table: dict[str, T.DataType] = {
        "tinyint": T.ByteType(),
        "byte": T.ByteType(),
        "smallint": T.ShortType(),
        "short": T.ShortType(),
        "int": T.IntegerType(),
        "integer": T.IntegerType(),
        "bigint": T.LongType(),
        "long": T.LongType(),
        "float": T.FloatType(),
        "double": T.DoubleType(),
        "string": T.StringType(),
        "boolean": T.BooleanType(),
        "date": T.DateType(),
        "timestamp": T.TimestampType(),
    }
    if s in table:
        return table[s]
    if s.startswith("decimal"):
        inner = s[s.find("(") + 1 : s.find(")")] if "(" in s else "10,0"
        prec, scale = (int(x) for x in inner.split(","))
        return T.DecimalType(prec, scale)
    return T.StringType()


def _predict_batches(
    batches: Iterator[pd.DataFrame], payload: bytes, column: str, kinds: Mapping[str, Kind]
) -> Iterator[pd.DataFrame]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield from _predict_batches_inner(batches, payload, column, kinds)


def _predict_batches_inner(
    batches: Iterator[pd.DataFrame], payload: bytes, column: str, kinds: Mapping[str, Kind]
) -> Iterator[pd.DataFrame]:
    state = pickle.loads(payload)
    enc: FeatureEncoder = state["encoder"]
    task = state["task"]
    rules = [(Rule.from_json(r, kinds), pickle.loads(m)) for r, m in state["rules"]]
    glob = pickle.loads(state["global"])
    for pdf in batches:
        n = len(pdf)
        if n == 0:
            yield pdf.assign(**{column: pd.Series([], dtype=object)})
            continue
        X = enc.transform(pdf)
        pred = np.empty(n, dtype=np.float64 if task == "regression" else object)
        done = np.zeros(n, dtype=bool)
        for rule, model in rules:
            m = rule.mask(pdf).to_numpy(dtype=bool) & ~done
            if m.any():
                pred[m] = model.predict(X[m])
                done |= m
        if (~done).any():
            pred[~done] = glob.predict(X[~done])
        out = pd.Series(pred, index=pdf.index)
        if task != "regression":
            out = out.map(lambda v: v.item() if hasattr(v, "item") else v)
        yield pdf.assign(**{column: out})


# ================================================================================================
# Per-candidate evaluation (runs inside applyInPandas, on one candidate's sampled rows)
# ================================================================================================


@dataclass(frozen=True)
class _EvalSpec:
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
    """Run with native thread pools (OpenMP, BLAS) at one thread: Spark already runs one task
    per core, and oversubscribed pools made a boosted-tree fit 40x slower here (16 s vs 0.4 s)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return fn(*args, **kwargs)

    return wrapper


@_one_thread
def _evaluate_group(pdf: pd.DataFrame, spec: _EvalSpec) -> pd.DataFrame:
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
    spec: _EvalSpec,
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
    spec: _EvalSpec, enc: FeatureEncoder, model: Any, X: np.ndarray, y: np.ndarray, seed: int
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


def _root_extras(
    spec: _EvalSpec,
    enc: FeatureEncoder,
    X: np.ndarray,
    y: np.ndarray,
    val: np.ndarray,
    root_loss: np.ndarray,
    seed: int,
) -> dict[str, Any]:
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
    return {
        "encoder": enc,
        "floor": float(floor),
        "baseline": baseline,
        "root_se": se,
        "global": _dumps(glob),
        "global_error": float(global_error),
    }


def _evaluator(spec: _EvalSpec) -> Callable[[pd.DataFrame], pd.DataFrame]:
    # A plain closure (not functools.partial): applyInPandas inspects the function's type hints.
    def evaluate(pdf: pd.DataFrame) -> pd.DataFrame:
        return _evaluate_group(pdf, spec)

    return evaluate


def _cross_scorer(spec: _CrossSpec) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def score(pdf: pd.DataFrame) -> pd.DataFrame:
        return _cross_group(pdf, spec)

    return score


@dataclass(frozen=True)
class _CrossSpec:
    encoder: FeatureEncoder
    task: str
    models: Mapping[int, bytes]


@_one_thread
def _cross_group(pdf: pd.DataFrame, spec: _CrossSpec) -> pd.DataFrame:
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


# ================================================================================================
# Backends: where rows live. The search below only sees counts, samples and small results.
# ================================================================================================


@dataclass(frozen=True)
class TableStats:
    n_rows: int
    null_counts: Mapping[str, int]
    target_min: Any
    target_max: Any


class SearchBackend(Protocol):
    """The four data operations of one search level."""

    def stats(self) -> TableStats: ...

    def count(self, conjunctions: Sequence[Conjunction]) -> list[int]: ...

    def draw(
        self, level: int, conjunctions: Sequence[Conjunction], fractions: Sequence[float]
    ) -> Any: ...

    def apply(
        self,
        sample: Any,
        fn: Callable[[pd.DataFrame], pd.DataFrame],
        ddl: str,
        only: Sequence[int] | None = None,
    ) -> pd.DataFrame: ...

    def release(self, sample: Any) -> None: ...

    def passes(self) -> float | None:
        """Full passes over the table so far, measured; None where it cannot be measured."""
        ...


class SparkBackend:
    """The table stays in Spark: one aggregation per count, one pass per sample."""

    def __init__(self, df: DataFrame, schema: TableSchema, seed: int) -> None:
        cols = [f.name for f in schema.features] + [schema.target]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DiscoveryError(
                f"columns {missing} of the schema are missing from the training frame"
            )
        types = {f.name: f.dataType for f in df.schema.fields}
        proj = []
        for c in cols:
            col = named_col(c)
            if isinstance(types[c], (T.FloatType, T.DoubleType)):
                # NaN counts as null, as in rules.mask: the Spark filter and the pandas mask agree.
                col = F.when(F.isnan(col), F.lit(None)).otherwise(col)
            proj.append(col.alias(c))
        self.df = df.select(*proj).filter(named_col(schema.target).isNotNull())
        self.schema = schema
        self.cols = cols
        self.seed = seed
        self.meter = ScanMeter()  # every query on self.df goes through meter.observe
        self.n_rows = 0

    def stats(self) -> TableStats:
        feats = [f.name for f in self.schema.features]
        tgt = named_col(self.schema.target)
        aggs = [F.count(F.lit(1)).alias("n"), F.min(tgt).alias("tmin"), F.max(tgt).alias("tmax")]
        aggs += [
            F.count(F.when(named_col(c).isNull(), 1)).alias(f"null{i}") for i, c in enumerate(feats)
        ]
        row = self.meter.observe(self.df).agg(*aggs).first()
        assert row is not None
        self.n_rows = int(row["n"])
        return TableStats(
            int(row["n"]),
            {c: int(row[f"null{i}"]) for i, c in enumerate(feats)},
            row["tmin"],
            row["tmax"],
        )

    def count(self, conjunctions: Sequence[Conjunction]) -> list[int]:
        got = count_rules(self.meter.observe(self.df), [Rule((c,)) for c in conjunctions])
        return [got[i] for i in range(len(conjunctions))]

    def draw(
        self, level: int, conjunctions: Sequence[Conjunction], fractions: Sequence[float]
    ) -> DataFrame:
        r = F.col(_RAND_COL)
        draw = row_uniform(self.cols, self.seed * 1_000_003 + level)  # layout-independent
        tagged = self.meter.observe(self.df).withColumn(_RAND_COL, draw)
        top = max(fractions)
        if top < 1.0:
            tagged = tagged.filter(r < F.lit(float(top)))  # cheap: most rows stop here
        ids = F.array(
            *[
                F.when(c.to_column() & (r < F.lit(float(f))), F.lit(i))
                for i, (c, f) in enumerate(zip(conjunctions, fractions, strict=True))
            ]
        )
        sample = tagged.select(
            F.explode(F.filter(ids, lambda x: x.isNotNull())).alias(CAND_COL),
            F.xxhash64(*[named_col(c) for c in self.cols]).alias(KEY_COL),
            *[named_col(c) for c in self.cols],
        )
        return sample.cache()

    def apply(
        self,
        sample: DataFrame,
        fn: Callable[[pd.DataFrame], pd.DataFrame],
        ddl: str,
        only: Sequence[int] | None = None,
    ) -> pd.DataFrame:
        src = sample if only is None else sample.filter(F.col(CAND_COL).isin(*list(only)))
        return to_pandas(src.groupBy(CAND_COL).applyInPandas(fn, ddl))

    def release(self, sample: DataFrame) -> None:
        sample.unpersist()

    def passes(self) -> float | None:
        return self.meter.passes(self.n_rows)


# ================================================================================================
# The search
# ================================================================================================


@dataclass
class _Cand:
    conj: Conjunction
    tier: int  # 0: deferred (was acceptable), 1: child of a split
    priority: float
    pushed_at: int  # accepted conjunctions at queue time: rewrite against the ones after it

    def key(self) -> tuple[int, float, str]:
        return (self.tier, -self.priority, self.conj.to_text())


def _disjoint(a: Conjunction, b: Conjunction) -> bool:
    return a.and_(b).simplify() is None


def _complement(p: Predicate, nullable: bool) -> list[Predicate]:
    """Predicates that together match exactly the rows `p` does not (nulls included)."""
    null = [Predicate(p.column, "is null")] if nullable else []
    flip = {
        "<": ">=",
        "<=": ">",
        ">": "<=",
        ">=": "<",
        "=": "!=",
        "!=": "=",
        "in": "not in",
        "not in": "in",
    }
    if p.op == "is null":
        return [Predicate(p.column, "is not null")]
    if p.op == "is not null":
        return [Predicate(p.column, "is null")]
    return [Predicate(p.column, flip[p.op], p.value), *null]


def subtract(c: Conjunction, a: Conjunction, null_columns: frozenset[str]) -> list[Conjunction]:
    """Disjoint conjunctions whose union is c AND NOT a (nulls handled as in SQL)."""
    if _disjoint(c, a):
        return [c]
    out: list[Conjunction] = []
    prefix: Conjunction | None = c
    for p in a.predicates:
        assert prefix is not None
        for q in _complement(p, p.column in null_columns):
            piece = prefix.and_(q).simplify()
            if piece is not None:
                out.append(piece)
        prefix = prefix.and_(p).simplify()
        if prefix is None:
            break
    return out


def effective_rho(mode: str, rho: float, root_error: float, floor: float, baseline: float) -> float:
    """The error threshold a DGR must meet (see the module doc)."""
    if mode == "absolute":
        return rho
    if mode == "variance":
        return rho * baseline
    f = min(floor, root_error)
    if f <= 0:  # a perfect floor: the log scale has no room, interpolate linearly
        return rho * root_error
    return f * (root_error / f) ** rho


def _check_config(cfg: DiscoveryConfig) -> None:
    if not isinstance(cfg.rho, (int, float)) or not math.isfinite(cfg.rho) or cfg.rho <= 0:
        raise DiscoveryError(f"discovery.rho={cfg.rho!r} must be a finite number above 0")
    if cfg.rho_mode != "absolute" and cfg.rho >= 1:
        raise DiscoveryError(
            f"discovery.rho={cfg.rho} with rho_mode={cfg.rho_mode} must be below 1"
        )
    if cfg.max_candidates_per_level < 2:
        raise DiscoveryError(
            f"discovery.max_candidates_per_level={cfg.max_candidates_per_level} cannot hold the "
            f"two children of a split; use at least 2"
        )
    if cfg.sample_per_candidate < max(2 * cfg.min_rows, 20):
        raise DiscoveryError(
            f"discovery.sample_per_candidate={cfg.sample_per_candidate} is too small to train "
            f"and validate a candidate of min_rows={cfg.min_rows}; use at least "
            f"{max(2 * cfg.min_rows, 20)}"
        )


def discover(
    df: DataFrame, schema: TableSchema, cfg: DiscoveryConfig, *, seed: int = 42
) -> Discovery:
    """Run Algorithm 1 on the training rows `df` (test rows split off by the caller) and return
    the DGRs, their models and a global model for the rest."""
    if schema.task not in ("classification", "regression"):
        raise DiscoveryError(f"unknown task {schema.task!r}; use classification or regression")
    _check_config(cfg)
    with sql_conf(df.sparkSession):
        return run_search(SparkBackend(df, schema, seed), schema, cfg, seed=seed)


def run_search(
    backend: SearchBackend,
    schema: TableSchema,
    cfg: DiscoveryConfig,
    *,
    seed: int = 42,
    clock: Callable[[], float] = time.monotonic,
) -> Discovery:
    """The engine-independent search loop (the module doc); `backend` owns the rows."""
    _check_config(cfg)
    return _Search(backend, schema, cfg, seed, clock).run()


def level_fractions(counts: Sequence[int], n_cols: int, cfg: DiscoveryConfig) -> list[float]:
    """Sampling fraction per candidate: `sample_per_candidate` rows each, scaled down together
    so the level's cached sample stays within `sample_cells` (a 300-column table would otherwise
    cache 50 candidates x 20,000 rows x 300 cells and exhaust a 1 GB driver)."""
    rows = [min(n, cfg.sample_per_candidate) for n in counts]
    total = sum(rows) * max(1, n_cols)
    scale = min(1.0, cfg.sample_cells / total) if total else 1.0
    floor = 2 * cfg.min_rows
    return [
        min(1.0, max(r * scale, min(r, floor)) / n) if n else 1.0
        for r, n in zip(rows, counts, strict=True)
    ]


class _Search:
    def __init__(
        self,
        backend: SearchBackend,
        schema: TableSchema,
        cfg: DiscoveryConfig,
        seed: int,
        clock: Callable[[], float],
    ) -> None:
        self.b = backend
        self.schema = schema
        self.cfg = cfg
        self.seed = seed
        self.clock = clock
        self.t0 = clock()
        self.kinds = schema.kinds
        self.queue: list[_Cand] = []
        self.queued: set[Conjunction] = set()
        self.seen: set[Conjunction] = set()
        self.accepted: list[Conjunction] = []
        self.thin: list[tuple[Conjunction, int]] = []  # dropped below the support floor
        # accepted conjunction -> (model key, count, error, level, shared); model key is an int
        # (existing model id) or ("new", level, cand index) until the level is resolved.
        self.records: list[dict[str, Any]] = []
        self.model_bytes: dict[int, bytes] = {}
        self.levels: list[LevelStats] = []
        self.passes_before: float | None = 0.0  # at the level's start (level 1: the statistics)
        self.trainings = 0
        self.incomplete = False
        self.stop_reason = ""

    # -- helpers ---------------------------------------------------------------------------------
    def _seed_for(self, c: Conjunction) -> int:
        return (zlib.crc32(c.to_text().encode("utf-8")) ^ (self.seed * 2654435761)) % (2**31 - 1)

    def _push(self, c: Conjunction, tier: int, priority: float, pushed_at: int) -> None:
        if c in self.queued or c in self.seen:
            return
        if len(c.predicates) > self.cfg.max_conjunction_length:
            return
        self.queue.append(_Cand(c, tier, priority, pushed_at))
        self.queued.add(c)

    def _rewrite(self, cand: _Cand) -> list[Conjunction]:
        pieces = [cand.conj]
        for a in self.accepted[cand.pushed_at :]:
            nxt: list[Conjunction] = []
            for p in pieces:
                nxt.extend(subtract(p, a, self.null_columns))
            pieces = nxt
        return pieces

    def _pop(self) -> list[_Cand]:
        """Up to `max_candidates_per_level` candidates, each disjoint from every accepted rule."""
        k = self.cfg.max_candidates_per_level
        batch: list[_Cand] = []
        taken: set[Conjunction] = set()
        overflow: list[_Cand] = []
        self.queue.sort(key=_Cand.key, reverse=True)  # best last: pop() is O(1)
        while self.queue and len(batch) < k:
            cand = self.queue.pop()
            self.queued.discard(cand.conj)
            for piece in self._rewrite(cand):
                if (
                    piece in self.seen
                    or piece in taken
                    or len(piece.predicates) > self.cfg.max_conjunction_length
                ):
                    continue
                fresh = _Cand(piece, cand.tier, cand.priority, len(self.accepted))
                if len(batch) < k:
                    batch.append(fresh)
                    taken.add(piece)
                else:
                    overflow.append(fresh)
        for c in overflow:
            self._push(c.conj, c.tier, c.priority, c.pushed_at)
        return batch

    def _elapsed(self) -> float:
        return self.clock() - self.t0

    def _spec(
        self, root: bool, seeds: Mapping[int, int], rho: float | None, models: Mapping[int, bytes]
    ) -> _EvalSpec:
        c = self.cfg
        return _EvalSpec(
            schema=self.schema,
            encoder=None if root else self.encoder,
            model=c.model,
            max_depth=c.model_max_depth,
            global_model=c.global_model,
            validation_fraction=c.validation_fraction,
            split_depth=c.split_tree_depth,
            split_target=c.split_target,
            splits_per_candidate=c.splits_per_candidate,
            lookahead_splits=c.lookahead_splits,
            max_categories=c.max_categories,
            rho=rho,
            root=root,
            seeds=dict(seeds),
            models=dict(models),
        )

    def _children(self, parent: Conjunction, count: int, splits_json: str, level_start: int) -> int:
        pushed = 0
        for s in json.loads(splits_json):
            preds = [Predicate.from_json(p, self.kinds) for p in s["preds"]]
            col = s["column"]
            if not s["null_split"] and col in self.null_columns:
                preds.append(Predicate(col, "is null"))
            for p in preds:
                child = parent.and_(p).simplify()
                if child is None or child == parent:
                    continue
                before = len(self.queue)
                self._push(child, 1, count * float(s["gain"]), level_start)
                pushed += len(self.queue) - before
        return pushed

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> Discovery:
        cfg = self.cfg
        st = self.b.stats()
        self.n = st.n_rows
        if self.n < max(cfg.min_rows, 2):
            raise DiscoveryError(
                f"the training table has {self.n} rows with a target; discovery needs at least "
                f"min_rows={cfg.min_rows}"
            )
        if st.target_min == st.target_max:
            raise DiscoveryError(
                f"the target {self.schema.target!r} is constant ({st.target_min!r} in every row); "
                f"there is nothing to model"
            )
        self.null_columns = frozenset(c for c, k in st.null_counts.items() if k > 0)
        self.min_support = max(cfg.min_rows, math.ceil(cfg.min_support * self.n))
        self._root_level()
        level = 1
        while True:
            uncovered = self.n - sum(r["count"] for r in self.records)
            if uncovered <= cfg.stop_uncovered_fraction * self.n:
                self.stop_reason = "coverage"
                break
            if not self.queue:
                self.stop_reason = "exhausted"
                break
            if level >= cfg.max_levels:
                self.incomplete, self.stop_reason = True, "max_levels"
                break
            last = self.levels[-1].seconds if self.levels else 0.0
            if self._elapsed() + last > cfg.time_budget_s:
                self.incomplete, self.stop_reason = True, "time_budget"
                logger.warning(
                    "discovery: time budget %.0f s reached after %.1f s and %d levels; the result "
                    "is incomplete",
                    cfg.time_budget_s,
                    self._elapsed(),
                    level,
                )
                break
            level += 1
            self._level(level)
        return self._result()

    def _root_level(self) -> None:
        t = self.clock()
        cfg = self.cfg
        root = Conjunction()
        frac = level_fractions([self.n], len(self.schema.features) + 1, cfg)[0]
        seeds = {0: self._seed_for(root)}
        sample = self.b.draw(1, [root], [frac])
        try:
            res = self.b.apply(sample, _evaluator(self._spec(True, seeds, None, {})), RESULT_DDL)
        finally:
            self.b.release(sample)
        if len(res) != 1:
            raise DiscoveryError("the root sample is empty; the training table has no usable rows")
        r = res.iloc[0]
        extra = pickle.loads(r["extra"])
        self.encoder: FeatureEncoder = extra["encoder"]
        self.global_model = pickle.loads(extra["global"])
        self.root_error = float(r["val_error"])
        self.floor = float(extra["floor"])
        self.baseline = float(extra["baseline"])
        self.global_error = float(extra["global_error"])
        self.rho = effective_rho(cfg.rho_mode, cfg.rho, self.root_error, self.floor, self.baseline)
        self.trainings = 1
        self.seen.add(root)
        accept_root = self.root_error <= self.rho
        if cfg.rho_mode == "relative":
            accept_root = accept_root or self.root_error <= self.floor + 2 * extra["root_se"]
        logger.info(
            "discovery: %d rows; root %s error %.4f, floor %.4f, global %s %.4f, constant %.4f "
            "-> rho_eff %.4f (%s, rho=%g); min support %d rows",
            self.n,
            cfg.model,
            self.root_error,
            self.floor,
            cfg.global_model,
            self.global_error,
            self.baseline,
            self.rho,
            cfg.rho_mode,
            cfg.rho,
            self.min_support,
        )
        if cfg.rho_mode == "absolute" and self.rho < self.floor:
            logger.warning(
                "discovery: rho=%g is below the estimated error floor %.4f of this table (label "
                "noise); few or no rules can meet it. Use rho_mode=relative.",
                cfg.rho,
                self.floor,
            )
        if accept_root:
            self.accepted.append(root)
            self.model_bytes[0] = bytes(r["model"])
            self.records.append(
                {
                    "conj": root,
                    "model": 0,
                    "count": self.n,
                    "error": self.root_error,
                    "level": 1,
                    "shared": False,
                }
            )
        else:
            self._children(root, self.n, r["splits"], 0)
        self._log(1, 1, 1, int(accept_root), 0, int(not accept_root), 0, 0, 1, t)

    def _log(
        self,
        level: int,
        cands: int,
        evaluated: int,
        accepted: int,
        shared: int,
        rejected: int,
        deferred: int,
        dropped: int,
        trainings: int,
        t: float,
    ) -> None:
        covered = sum(r["count"] for r in self.records)
        now = self.b.passes()  # every query of the level has returned: its passes are counted
        before = self.passes_before
        scans = None if now is None or before is None else round(now - before, 4)
        self.passes_before = now
        s = LevelStats(
            level,
            cands,
            evaluated,
            accepted,
            shared,
            rejected,
            deferred,
            dropped,
            trainings,
            covered,
            covered / self.n if self.n else 0.0,
            scans,
            self.clock() - t,
        )
        self.levels.append(s)
        logger.info(
            "discovery level %d: %d candidates (%d evaluated, %d too small), %d accepted, "
            "%d shared, %d rejected, %d deferred; coverage %.1f%% (%d rows); %s; %.1f s",
            level,
            cands,
            evaluated,
            dropped,
            accepted,
            shared,
            rejected,
            deferred,
            100 * s.coverage,
            covered,
            format_passes(scans),
            s.seconds,
        )

    def _level(self, level: int) -> None:
        t = self.clock()
        cfg = self.cfg
        level_start = len(self.accepted)
        batch = self._pop()
        if not batch:
            self._log(level, 0, 0, 0, 0, 0, 0, 0, 0, t)
            return
        counts = self.b.count([c.conj for c in batch])
        live: list[tuple[_Cand, int]] = []
        for c, n in zip(batch, counts, strict=True):
            self.seen.add(c.conj)
            if n >= self.min_support:
                live.append((c, n))
            elif n >= max(1, self.cfg.thin_min_rows):
                self.thin.append((c.conj, n))
        dropped = len(batch) - len(live)
        if not live:
            self._log(level, len(batch), 0, 0, 0, 0, 0, dropped, 0, t)
            return
        conjs = [c.conj for c, _ in live]
        fracs = level_fractions([n for _, n in live], len(self.schema.features) + 1, cfg)
        seeds = {i: self._seed_for(c) for i, c in enumerate(conjs)}
        models = self.model_bytes if cfg.model_sharing else {}
        spec = self._spec(False, seeds, self.rho, models)
        sample = self.b.draw(level, conjs, fracs)
        try:
            res = self.b.apply(sample, _evaluator(spec), RESULT_DDL)
            by_id = {int(r[CAND_COL]): r for _, r in res.iterrows()}
            decided = self._decide(level, live, by_id, level_start)
            cross = self._cross_check(sample, decided)
        finally:
            self.b.release(sample)
        accepted, shared, rejected, deferred, trained = self._resolve(level, decided, cross)
        self.trainings += trained
        self._log(
            level,
            len(batch),
            len(live),
            accepted,
            shared,
            rejected,
            deferred,
            dropped,
            trained,
            t,
        )

    def _decide(
        self, level: int, live: list[tuple[_Cand, int]], by_id: Mapping[int, Any], level_start: int
    ) -> dict[str, Any]:
        """Walk the level's candidates in priority order: accept, share, defer or split."""
        new: list[int] = []  # candidate indices accepted with a new model, in order
        shared = rejected = deferred = trained = 0
        level_records: list[dict[str, Any]] = []
        for i, (cand, n) in enumerate(live):
            r = by_id.get(i)
            if r is None:  # no sampled row (cannot happen with n >= min_support > 0)
                continue
            trained += int(bool(r["trained"]))
            ok_shared = int(r["shared_model"]) >= 0
            ok_new = bool(r["accepted"])
            stale = any(not _disjoint(cand.conj, a) for a in self.accepted[level_start:])
            if ok_shared or ok_new:
                if stale:
                    # Its rows changed under it: re-queue; the next pop rewrites it into the pieces
                    # outside what this level accepted (the unchanged conjunction stays "seen").
                    deferred += 1
                    if cand.conj not in self.queued:
                        self.queue.append(_Cand(cand.conj, 0, float(n), level_start))
                        self.queued.add(cand.conj)
                    continue
                self.accepted.append(cand.conj)
                rec = {"conj": cand.conj, "count": n, "level": level, "cand": i}
                if ok_shared:
                    shared += 1
                    rec.update(
                        model=int(r["shared_model"]), error=float(r["shared_error"]), shared=True
                    )
                else:
                    new.append(i)
                    rec.update(
                        model=None,
                        error=float(r["val_error"]),
                        shared=False,
                        bytes=bytes(r["model"]),
                    )
                level_records.append(rec)
            else:
                rejected += 1
                self._children(cand.conj, n, r["splits"], level_start)
        return {
            "new": new,
            "records": level_records,
            "shared": shared,
            "rejected": rejected,
            "deferred": deferred,
            "trained": trained,
        }

    def _cross_check(self, sample: Any, decided: Mapping[str, Any]) -> dict[tuple[int, int], float]:
        """Errors of this level's new models on each other's candidates (in-level sharing)."""
        new = decided["new"]
        if not self.cfg.model_sharing or len(new) < 2:
            return {}
        recs = {r["cand"]: r for r in decided["records"]}
        spec = _CrossSpec(self.encoder, self.schema.task, {i: recs[i]["bytes"] for i in new})
        res = self.b.apply(sample, _cross_scorer(spec), CROSS_DDL, only=new)
        return {
            (int(r[CAND_COL]), int(r["model_id"])): float(r["error"]) for _, r in res.iterrows()
        }

    def _resolve(
        self, level: int, decided: Mapping[str, Any], cross: Mapping[tuple[int, int], float]
    ) -> tuple[int, int, int, int, int]:
        kept: list[tuple[int, int]] = []  # (cand index, model id) of new models kept
        shared = decided["shared"]
        accepted = 0
        for rec in decided["records"]:
            if not rec["shared"]:
                i = rec["cand"]
                fits = [
                    (cross[(i, j)], mid)
                    for j, mid in kept
                    if cross.get((i, j), math.inf) <= self.rho
                ]
                if fits:
                    err, mid = min(fits)
                    rec.update(model=mid, error=err, shared=True)
                    shared += 1
                else:
                    mid = len(self.model_bytes)
                    while mid in self.model_bytes:
                        mid += 1
                    self.model_bytes[mid] = rec["bytes"]
                    kept.append((i, mid))
                    rec["model"] = mid
                    accepted += 1
                rec.pop("bytes", None)
            self.records.append(rec)
        return accepted, shared, decided["rejected"], decided["deferred"], decided["trained"]

    def _result(self) -> Discovery:
        models = {mid: pickle.loads(b) for mid, b in self.model_bytes.items()}
        parts = [
            Part(
                r["conj"],
                int(r["model"]),
                int(r["count"]),
                float(r["error"]),
                int(r["level"]),
                bool(r["shared"]),
            )
            for r in self.records
        ]
        dgrs: list[DGR] = []
        for mid in sorted(self.model_bytes):
            mine = [p for p in parts if p.model_id == mid]
            if not mine:
                continue
            support = sum(p.support for p in mine)
            err = sum(p.val_error * p.support for p in mine) / max(support, 1)
            rule = Rule(tuple(p.conjunction for p in mine))
            dgrs.append(DGR(f"dgr{mid}", rule, mid, support, float(err)))
        shared = sum(1 for p in parts if p.shared)
        disc = Discovery(
            dgrs=dgrs,
            parts=parts,
            models=models,
            global_model=self.global_model,
            encoder=self.encoder,
            schema=self.schema,
            rho=self.rho,
            rho_mode=self.cfg.rho_mode,
            incomplete=self.incomplete,
            levels=self.levels,
            trainings=self.trainings,
            shared=shared,
            n_rows=self.n,
            stats={
                "root_error": self.root_error,
                "floor": self.floor,
                "baseline": self.baseline,
                "global_error": self.global_error,
                "min_support": self.min_support,
                "stop_reason": self.stop_reason,
                "seconds": self._elapsed(),
            },
            config=self.cfg.model_dump(mode="json"),
            thin=[
                Thin(f"thin{i}", Rule((c,)), n)
                for i, (c, n) in enumerate(sorted(self.thin, key=lambda t: (-t[1], t[0].to_text())))
            ]
            if self.cfg.thin_min_rows > 0
            else [],
        )
        logger.info(
            "discovery done: %d DGRs (%d conjunctions, %d shared), %d trainings, coverage %.1f%%, "
            "%.1f s, stop: %s%s",
            len(dgrs),
            len(parts),
            shared,
            self.trainings,
            100 * disc.coverage,
            self._elapsed(),
            self.stop_reason,
            " (incomplete)" if self.incomplete else "",
        )
        return disc
