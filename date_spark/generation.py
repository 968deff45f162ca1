"""Algorithm 2: DGR-guided generation with decision-tree path reasoning and rule refinement.

Before round 1, where to generate: each partition's learning curve (the selection model's
cross-fitted loss with half vs all of its training rows, one grouped pandas UDF) gives its
expected benefit from more rows; the `max_rules` partitions with the most are prompted, with the
request budget spread in proportion (`partition_benefit`, `allocate_requests`). Thin segments that
discovery left below its support floor compete too (their rows are scored in the rest partition,
served by the global model).

Per round (one Spark stage of LLM calls, one of scoring):
1. Questions: round 1 asks for rows under each prompted DGR; rounds 2..I ask under the rules the
   LLM itself proposed in the reflective prompt (each intersected with its parent DGR, so its rows
   are scored in the partition they belong to; a DGR with no usable proposal is asked again as it
   is). A row prompt shows the question's own partition first (its rule and `own_rows` real
   rows), then last round's tree-path feedback for it, then other partitions as context.
2. The requests DataFrame goes through the LLM gateway (`llm.gateway.run`): rows come back
   validated against the question's rule, the data's domains (ordered ranges widened by
   `generation.domain_margin`) and the label's values. Rejected rows are counted per reason and
   per column (`RoundStats.rejected`, `.rejected_by_column`), so a run shows which column kills
   rows.
3. Decision-tree reasoning, per partition in a cogrouped pandas UDF: a label check (a teacher
   model) sets apart rows whose label it contradicts with high confidence; a tree fitted on the
   partition's training rows routes the generated rows; rows are grouped by (question,
   root-to-leaf path, generated label agrees with the tree), paths with fewer than
   `min_arm_rows` rows pooled. Each group's gain is the drop of the partition's mean
   cross-fitted loss (`models.crossfit_losses`: the selection model, every training row scored
   once) when the group is added: the same measure selection screens with, on the same rows, so
   the prior the bandit starts from predicts what it then measures. Groups with gain > 0 are
   candidate arms; the rest stay in the arms table, marked, so the refinement prompt can learn
   from them. The validation split is the confirmation's: never read here.
4. Refinement (rounds < I): per DGR a reflective prompt shows its best and worst groups (rule,
   path, predicted label, gain, a few rows) and current class counts, and asks for better rules in
   the rule grammar. Proposals are parsed against the schema and dropped, counted by reason, when
   they name unknown columns or out-of-domain values, contradict the DGR, or match no training row.
   (The rules come back through the gateway as rows of a one-column schema, so they are validated
   like any other answer; the rows for them are asked for in the next round's question.)

Test rows never enter prompts, training or scoring: the input's `_date_split = 'test'` rows are
dropped on entry. Sensitive columns (`generation.sensitive_columns`) are never sent to the LLM; a
generated row gets a value drawn at random from its partition's training rows for each of them.

`generation.generator: interpolation` replaces the LLM with rule-bounded SMOTE-style interpolation
inside each partition (pairs of same-label training rows; numeric and date values interpolated,
categorical and boolean values taken from either parent; rows outside the DGR dropped), and goes
through the same tree scoring, so its arms are comparable.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from date_spark.columns import ARM, GENERATOR, ROUND, RULE, named_col
from date_spark.config import Config
from date_spark.errors import ConfigError, RuleError
from date_spark.features import FeatureEncoder
from date_spark.llm import gateway
from date_spark.llm.budget import Budget
from date_spark.llm.rows import REASONS, RowColumn, RowSchema
from date_spark.models import ModelSpec, crossfit_losses, fold_ids
from date_spark.prompts import ExampleBlock, HistoryItem, Masker, generation_messages, header
from date_spark.prompts import refinement_messages as build_refinement
from date_spark.rules import CategorySet, Rule, count_rules, parse_rule
from date_spark.schema import Kind, TableSchema
from date_spark.spark import to_pandas
from date_spark.split import SPLIT_COL, TEST, TRAIN, row_uniform
from date_spark.trees import RuleTree

log = logging.getLogger(__name__)

DGR_COL = "_date_dgr"
ROUND_COL = ROUND
REQUEST_COL = "_date_request"
QRULE_COL = "_date_qrule"
ARM_COL = ARM
RULE_COL = RULE
GAIN_COL = "_date_gain"
AGREE_COL = "_date_agree"
CANDIDATE_COL = "_date_candidate"
PRED_COL = "_date_predicted"
_ORDER_COL = "_date_order"
_POOLED = -2  # the leaf id of pooled small paths
REROUTED = "rerouted"  # the question tag (and arm id suffix) of re-routed rows
REST = "_rest"  # the partition of rows no DGR covers (the global model's)
GROUP_COL = "_date_group"  # the scoring partition of a generated row: its DGR, or REST
FIXED_COL = "_date_fixed"  # sample rows trained on but never scored (the rest's covered rows)
GENERATOR_COL = GENERATOR
META_FIELDS = [
    T.StructField(DGR_COL, T.StringType()),
    T.StructField(ROUND_COL, T.IntegerType()),
    T.StructField(REQUEST_COL, T.StringType()),
    T.StructField(QRULE_COL, T.StringType()),
]
ARM_FIELDS = [
    T.StructField(ARM_COL, T.StringType()),
    T.StructField(RULE_COL, T.StringType()),
    T.StructField(GAIN_COL, T.DoubleType()),
    T.StructField(AGREE_COL, T.BooleanType()),
    T.StructField(CANDIDATE_COL, T.BooleanType()),
    T.StructField(PRED_COL, T.StringType()),
    T.StructField(GENERATOR_COL, T.StringType()),
]


class DiscoveryLike(Protocol):
    """What generation needs from Algorithm 1's result."""

    @property
    def dgrs(self) -> Sequence[Any]: ...  # each has rule_id, rule, support, val_error

    @property
    def encoder(self) -> FeatureEncoder: ...


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass
class RoundStats:
    round: int
    questions: int = 0
    requests: int = 0
    valid_rows: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # generated rows, one reason each
    # column -> reason -> rejected rows that failed on that column (a row may fail on several)
    rejected_by_column: dict[str, dict[str, int]] = field(default_factory=dict)
    clipped: dict[str, int] = field(default_factory=dict)  # column -> values clipped in kept rows
    groups: int = 0
    candidate_arms: int = 0
    rows_in_candidates: int = 0
    label_rejected: int = 0  # generated rows whose label the teacher contradicted (label_check)
    # `violates_rule` rows re-routed to the partition they satisfy (generation.reroute): still
    # counted in `rejected`, not in `valid_rows`; by the partition they went to
    rerouted: int = 0
    rerouted_to: dict[str, int] = field(default_factory=dict)
    proposed_rules: int = 0
    refined_rules_used: int = 0
    refined_dropped: dict[str, int] = field(default_factory=dict)
    llm: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class GenerationResult:
    rows: pd.DataFrame  # every generated row: input columns + meta + arm columns
    arms: pd.DataFrame  # one row per group: arm id, DGR, round, rule, n_rows, gain, labels
    rounds: list[RoundStats]
    generator: str
    budget_exhausted: bool = False
    prompts: list[str] = field(default_factory=list)  # every prompt sent, for audit and tests
    benefits: pd.DataFrame = field(default_factory=pd.DataFrame)  # per DGR: learning curve

    @property
    def candidate_arms(self) -> pd.DataFrame:
        return self.arms[self.arms["candidate"]]

    def rejects(self) -> tuple[dict[str, int], dict[str, dict[str, int]], dict[str, int]]:
        """Over all rounds: rejected rows by reason, the per-column table, clipped values."""
        rejected: Counter[str] = Counter()
        table: dict[str, Counter[str]] = {}
        clipped: Counter[str] = Counter()
        for r in self.rounds:
            rejected.update(r.rejected)
            for col, reasons in r.rejected_by_column.items():
                table.setdefault(col, Counter()).update(reasons)
            clipped.update(r.clipped)
        return dict(rejected), _ordered_table(table), dict(sorted(clipped.items()))

    def summary(self) -> dict[str, Any]:
        rejected, by_column, clipped = self.rejects()
        return {
            "generator": self.generator,
            "rounds": len(self.rounds),
            "generated_rows": len(self.rows),
            "valid_rows": sum(r.valid_rows for r in self.rounds),
            "groups": len(self.arms),
            "candidate_arms": int(self.arms["candidate"].sum()) if len(self.arms) else 0,
            "rejected": rejected,
            "rejected_by_column": by_column,
            "clipped": clipped,
            "refined_rules_used": sum(r.refined_rules_used for r in self.rounds),
            "label_rejected": sum(r.label_rejected for r in self.rounds),
            "rerouted": sum(r.rerouted for r in self.rounds),
            "rerouted_to": self.rerouted_to(),
            "budget_exhausted": self.budget_exhausted,
        }

    def rerouted_to(self) -> dict[str, int]:
        """Over all rounds: re-routed rows by the partition they went to."""
        total: Counter[str] = Counter()
        for r in self.rounds:
            total.update(r.rerouted_to)
        return dict(sorted(total.items()))

    def metrics(self) -> dict[str, float]:
        """The summary flattened for MLflow: `rejected_<reason>`,
        `rejected_by_column.<column>.<reason>` and `clipped.<column>` besides the counts."""
        s = self.summary()
        out = {k: float(v) for k, v in s.items() if isinstance(v, (int, float))}
        for reason, n in s["rejected"].items():
            out[f"rejected_{reason}"] = float(n)
        for col, reasons in s["rejected_by_column"].items():
            for reason, n in reasons.items():
                out[f"rejected_by_column.{col}.{reason}"] = float(n)
        for col, n in s["clipped"].items():
            out[f"clipped.{col}"] = float(n)
        for dgr, n in s["rerouted_to"].items():
            out[f"rerouted_to.{dgr}"] = float(n)
        return out

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.rows.to_parquet(d / "rows.parquet", index=False)
        self.arms.to_parquet(d / "arms.parquet", index=False)
        self.benefits.to_parquet(d / "benefits.parquet", index=False)
        (d / "rounds.json").write_text(json.dumps([asdict(r) for r in self.rounds], indent=2))

    @staticmethod
    def load(directory: str | Path, generator: str = "llm") -> GenerationResult:
        d = Path(directory)
        rounds = [RoundStats(**r) for r in json.loads((d / "rounds.json").read_text())]
        bpath = d / "benefits.parquet"
        return GenerationResult(
            pd.read_parquet(d / "rows.parquet"),
            pd.read_parquet(d / "arms.parquet"),
            rounds,
            generator,
            benefits=pd.read_parquet(bpath) if bpath.exists() else pd.DataFrame(),
        )

    def arms_frame(self, spark: SparkSession) -> DataFrame:
        return spark.createDataFrame(self.arms)


# ----------------------------------------------------------------------------------------------
# Scoring: decision-tree path reasoning (pure pandas, runs inside the UDF)
# ----------------------------------------------------------------------------------------------


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


def score_groups(gen: pd.DataFrame, part: pd.DataFrame, spec: ScoringSpec) -> pd.DataFrame:
    """Group generated rows of one partition by (question, tree path, label agreement) and score
    each group's gain: the drop in the partition's mean cross-fitted loss (`models.
    crossfit_losses`, the model selection uses, on the training rows selection screens on) when
    the group is added. The validation split is the confirmation's: never read here. Returns the
    rows with the arm columns added."""
    out_cols = [*spec.columns, DGR_COL, ROUND_COL, REQUEST_COL, QRULE_COL] + [
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
        gen[ARM_COL] = gen[DGR_COL] + ".r" + gen[ROUND_COL].astype(str) + ".unscored"
        gen[RULE_COL] = gen[QRULE_COL].map(lambda j: Rule.from_json(j).to_text())
        gen[GAIN_COL] = float("nan")
        gen[AGREE_COL] = True
        gen[CANDIDATE_COL] = False
        gen[PRED_COL] = None
        gen[GENERATOR_COL] = spec.generator
        return gen[out_cols]
    x_tr, y_tr = enc.transform(train), enc.target(train)
    # the rest partition is served by the global model: every covered row trains it too
    fixed = (enc.transform(fixed_rows), enc.target(fixed_rows)) if len(fixed_rows) else None
    folds = fold_ids(train[list(spec.columns)], spec.folds, spec.seed)
    base = crossfit_losses(spec.model, x_tr, y_tr, folds, fixed=fixed)
    gen, rejected = _label_check(gen, x_tr, y_tr, base, spec, fixed)
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

    qtag = gen[REQUEST_COL].map(_question_tag)
    gen = gen.assign(_leaf=leaf, _agree=agree, _pred=[str(p) for p in pred], _q=qtag)
    gen = gen[gen["_leaf"] >= 0]  # a value the path rules cannot place: no arm can claim it
    # Paths holding fewer than `min_arm_rows` rows are pooled per (question, agreement): a 1-2 row
    # arm moves the loss by less than the refit noise, so no test could ever judge it. Re-routed
    # rows (question tag `rerouted`) form arms of their own.
    keys = [QRULE_COL, "_q", "_leaf", "_agree"]
    size = gen.groupby(keys)["_leaf"].transform("size")
    gen.loc[size < spec.min_arm_rows, "_leaf"] = _POOLED
    parts = []
    for key, g in gen.groupby(keys, sort=True):
        k: tuple[Any, ...] = key
        qrule, qidx, lf, ag = str(k[0]), str(k[1]), int(k[2]), bool(k[3])
        idx = g.index.to_numpy()
        with_group = crossfit_losses(spec.model, x_tr, y_tr, folds, extra=(x_gen[idx], y_gen[idx]))
        gain = base_loss - float(np.mean(with_group))
        path = paths.get(lf)
        rule = Rule.from_json(qrule)
        rule = rule.and_(path.rule).simplify() if path is not None else rule.simplify()
        first = g.iloc[0]
        where = f"l{lf}" if path is not None else "lpool"
        ad = "a" if ag else "d"
        arm = (
            f"{first[DGR_COL]}.r{int(first[ROUND_COL])}.{where}.{ad}.{REROUTED}"
            if qidx == REROUTED
            else f"{first[DGR_COL]}.r{int(first[ROUND_COL])}.{qidx}.{where}.{ad}"
        )
        g = g.drop(columns=["_leaf", "_agree", "_pred", "_q"])
        g[ARM_COL] = arm
        g[RULE_COL] = rule.to_text()
        g[GAIN_COL] = float(gain)
        g[AGREE_COL] = ag
        g[CANDIDATE_COL] = bool(gain > 0)
        g[PRED_COL] = str(path.prediction) if path is not None else _majority(g[spec.target])
        g[GENERATOR_COL] = spec.generator
        parts.append(g)
    if len(rejected):
        parts.append(rejected)
    if not parts:
        return pd.DataFrame(columns=out_cols)
    return pd.concat(parts, ignore_index=True)[out_cols]


BENEFIT_DDL = (
    f"{DGR_COL} string, train_rows long, loss double, loss_half double, slope double, "
    "benefit double"
)


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


def _label_check(
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
        return _retype(gen, spec.target, spec.task), empty
    bad = gen[flagged].copy()
    qidx = bad[REQUEST_COL].map(_question_tag)
    bad[ARM_COL] = (
        bad[DGR_COL].astype(str) + ".r" + bad[ROUND_COL].astype(str) + "." + qidx + ".rejected"
    )
    bad[RULE_COL] = bad[QRULE_COL].map(lambda j: Rule.from_json(j).simplify().to_text())
    bad[GAIN_COL] = float("nan")
    bad[AGREE_COL] = False
    bad[CANDIDATE_COL] = False
    bad[PRED_COL] = [str(v) for v in np.asarray(better, dtype=object)[flagged]]
    bad[GENERATOR_COL] = spec.generator
    return gen[~flagged].reset_index(drop=True), bad.reset_index(drop=True)


def _question_tag(request_id: Any) -> str:
    """The question part of a request id (`<dgr>|r<round>|q<i>|s<rep>`; `rerouted` for re-routed
    rows), "q0" when the id has none."""
    parts = str(request_id).split("|")
    return parts[2] if len(parts) > 2 else "q0"


def _retype(gen: pd.DataFrame, target: str, task: str) -> pd.DataFrame:
    """Labels put back by the teacher take the column's numeric type when they are numbers."""
    if task == "regression":
        gen[target] = pd.to_numeric(gen[target])
    else:
        converted = pd.to_numeric(gen[target], errors="coerce")
        if converted.notna().all():
            gen[target] = converted
    return gen


def _majority(labels: pd.Series) -> str:
    mode = labels.mode()
    return str(mode.iloc[0]) if len(mode) else ""


# ----------------------------------------------------------------------------------------------
# Interpolation generator (no LLM)
# ----------------------------------------------------------------------------------------------


def interpolate(
    train: pd.DataFrame, rule: Rule, schema: TableSchema, n: int, seed: int
) -> pd.DataFrame:
    """Rule-bounded SMOTE-style rows from same-label pairs of `train` (which lies in `rule`)."""
    rng = np.random.default_rng(seed)
    if len(train) < 2 or n <= 0:
        return train.iloc[:0][schema.names].copy()
    target = schema.target
    if schema.task == "classification":
        groups = [g for _, g in train.groupby(target) if len(g) >= 2]
        weights = np.array([len(g) for g in groups], dtype=float)
        if not groups:
            return train.iloc[:0][schema.names].copy()
        picks = rng.choice(len(groups), size=n, p=weights / weights.sum())
    else:
        groups, picks = [train], np.zeros(n, dtype=int)
    rows = []
    for gi in picks:
        g = groups[gi]
        a, b = g.iloc[rng.choice(len(g), size=2, replace=False)].to_dict("records")
        lam = rng.random()
        row: dict[str, Any] = {}
        for spec in schema.columns:
            va, vb = a[spec.name], b[spec.name]
            if spec.name == target and schema.task == "classification":
                row[spec.name] = va
            elif spec.kind is Kind.NUMERIC and pd.notna(va) and pd.notna(vb):
                v = float(va) + lam * (float(vb) - float(va))
                row[spec.name] = round(v) if spec.integral else v
            elif spec.kind in (Kind.DATE, Kind.TIMESTAMP) and pd.notna(va) and pd.notna(vb):
                ta, tb = pd.Timestamp(va), pd.Timestamp(vb)
                t = ta + (tb - ta) * lam
                row[spec.name] = t.date() if spec.kind is Kind.DATE else t.to_pydatetime()
            else:
                row[spec.name] = va if rng.random() < 0.5 else vb
        rows.append(row)
    out = pd.DataFrame(rows, columns=schema.names)
    for spec in schema.columns:
        if spec.kind is Kind.NUMERIC and spec.integral:
            out[spec.name] = pd.to_numeric(out[spec.name]).astype("Int64")
    return out[rule.mask(out).to_numpy(dtype=bool)].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Driver side
# ----------------------------------------------------------------------------------------------


def _typed_domains(
    spark_df: DataFrame, schema: TableSchema, max_values: int = 50
) -> tuple[dict[str, list[Any]], dict[str, tuple[Any, Any]]]:
    """Domains of low-cardinality columns and ranges of ordered ones, over training rows only
    (one aggregation job)."""
    aggs = []
    for c in schema.columns:
        col = named_col(c.name)
        if c.kind.ordered:
            aggs += [F.min(col).alias(f"min::{c.name}"), F.max(col).alias(f"max::{c.name}")]
        elif c.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
            aggs.append(F.slice(F.collect_set(col), 1, max_values + 1).alias(f"set::{c.name}"))
    row = spark_df.agg(*aggs).first()
    assert row is not None
    domains: dict[str, list[Any]] = {}
    ranges: dict[str, tuple[Any, Any]] = {}
    for c in schema.columns:
        if c.kind.ordered:
            ranges[c.name] = (row[f"min::{c.name}"], row[f"max::{c.name}"])
        elif c.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
            vals = row[f"set::{c.name}"]
            if len(vals) <= max_values:
                domains[c.name] = sorted(vals, key=lambda v: (str(type(v)), v))
    return domains, ranges


def free_text_in(sample: pd.DataFrame, schema: TableSchema, max_chars: int) -> set[str]:
    """Categorical feature columns of `sample` with a value longer than `max_chars` or holding a
    control character (a line break): free text (see `io.free_text_columns`)."""
    out = set()
    for c in schema.features:
        if c.kind is not Kind.CATEGORICAL or c.name not in sample:
            continue
        text = sample[c.name].dropna().astype(str)
        if len(text) and (
            int(text.str.len().max()) > max_chars or bool(text.str.contains(r"[\x00-\x1f]").any())
        ):
            out.add(c.name)
    return out


def _partition_sample(routed: DataFrame, dgr_ids: Sequence[str], cap: int, seed: int) -> DataFrame:
    """Up to about `cap` training + validation rows per DGR, drawn in one pass."""
    counts = {
        r[DGR_COL]: int(r["count"])
        for r in routed.where(F.col(DGR_COL).isin(*dgr_ids)).groupBy(DGR_COL).count().collect()
    }
    frac = None
    for d in dgr_ids:
        f = min(1.0, cap / max(1, counts.get(d, 0)))
        frac = (
            F.when(F.col(DGR_COL) == d, F.lit(f))
            if frac is None
            else frac.when(F.col(DGR_COL) == d, F.lit(f))
        )
    assert frac is not None
    draw = row_uniform(routed.columns, seed)
    return routed.where(F.col(DGR_COL).isin(*dgr_ids)).where(draw < frac.otherwise(0.0))


def _stratified_examples(
    sample: pd.DataFrame, target: str, per_block: int, seed: int
) -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    train = sample[sample[SPLIT_COL] == TRAIN]
    for dgr, g in train.groupby(DGR_COL, sort=True):
        if per_block <= 0:
            out[str(dgr)] = g.iloc[:0]
            continue
        parts = [
            lg.sample(
                n=min(len(lg), max(1, per_block // max(1, g[target].nunique()))), random_state=seed
            )
            for _, lg in g.groupby(target, sort=True)
        ]
        out[str(dgr)] = pd.concat(parts).sample(frac=1.0, random_state=seed).head(per_block)
    return out


@dataclass(frozen=True)
class ThinSegment:
    """A thin segment discovery left to the global model, prompted like a DGR; its rows are
    scored in the rest partition."""

    rule_id: str
    rule: Rule
    support: int
    val_error: float = float("nan")


@dataclass(frozen=True)
class Question:
    dgr_id: str
    index: int
    rule: Rule


class Generator:
    """Runs Algorithm 2 for one job. Holds the partition sample (cached, small) between rounds."""

    def __init__(
        self,
        data: DataFrame,
        discovery: DiscoveryLike,
        schema: TableSchema,
        cfg: Config,
        *,
        route: Any,
        base_url: str | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.cfg = cfg
        self.gcfg = cfg.generation
        self.schema = schema
        self.discovery = discovery
        self.base_url = base_url
        self.budget = budget if budget is not None else Budget.from_config(cfg.llm)
        self.spark = data.sparkSession
        sensitive = tuple(self.gcfg.sensitive_columns)
        unknown = [c for c in sensitive if c not in schema.names]
        if unknown:
            raise ConfigError(
                f"generation.sensitive_columns names {unknown[0]!r}, not an input column"
            )
        if schema.target in sensitive:
            raise ConfigError("the target cannot be a sensitive column; remove it from the list")
        self.sensitive = sensitive
        self.prompt_budget = prompt_budget(cfg)
        thin = [
            ThinSegment(t.rule_id, t.rule, int(t.support)) for t in getattr(discovery, "thin", [])
        ]
        self.thin_ids = {t.rule_id for t in thin}
        self.all_dgrs: list[Any] = sorted(
            [*discovery.dgrs, *thin], key=lambda d: (-d.support, str(d.rule_id))
        )
        self.dgrs = self.all_dgrs[: self.gcfg.max_rules]  # re-ranked by benefit in prepare()
        self.requests = {str(d.rule_id): self.gcfg.requests_per_rule for d in self.dgrs}
        for d in self.all_dgrs:
            leaked = d.rule.columns() & set(sensitive)
            if leaked:
                raise ConfigError(
                    f"rule {d.rule_id} uses sensitive column {sorted(leaked)[0]!r}; exclude "
                    f"sensitive columns from discovery so their values never reach a prompt"
                )
        self.by_id = {str(d.rule_id): d for d in self.dgrs}
        self.benefits = pd.DataFrame()
        non_test = data.where(F.col(SPLIT_COL) != TEST)
        # rows no DGR covers form the rest partition (the global model's)
        self.routed = non_test.transform(route).withColumn(
            DGR_COL, F.coalesce(F.col(DGR_COL), F.lit(REST))
        )
        self.columns = tuple(schema.names)
        self.input_fields = [data.schema[c] for c in self.columns]

    # -- preparation ----------------------------------------------------------------------------
    def prepare(self) -> None:
        # Every DGR is sampled (selection scores and reports all partitions); the top
        # `max_rules` by expected benefit are prompted.
        ids = [str(d.rule_id) for d in self.all_dgrs if str(d.rule_id) not in self.thin_ids]
        sample = _partition_sample(
            self.routed, [*ids, REST], self.gcfg.partition_sample_rows, self.cfg.seed
        )
        self.sample_sdf = sample.select(*[named_col(c) for c in self.columns], DGR_COL, SPLIT_COL)
        # capped per DGR: small by construction; in a fixed row order, whatever the partitioning
        keyed = self.sample_sdf.withColumn(_ORDER_COL, F.xxhash64(*self.sample_sdf.columns))
        self.sample_pd = (
            to_pandas(keyed)
            .sort_values(_ORDER_COL, kind="mergesort")
            .drop(columns=_ORDER_COL)
            .reset_index(drop=True)
        )
        # Re-create the sample from driver memory so later stages do not re-sample the table.
        self.sample_sdf = self.spark.createDataFrame(self.sample_pd, schema=self.sample_sdf.schema)
        train = self.sample_pd[self.sample_pd[SPLIT_COL] == TRAIN]
        self.domains, self.ranges = _typed_domains(
            self.spark.createDataFrame(train, schema=self.sample_sdf.schema), self.schema
        )
        # Free text is no category list: enumerating it would put every long value into each
        # prompt and request schema, and the LLM could never reproduce one exactly.
        self.free_text = free_text_in(self.sample_pd, self.schema, self.gcfg.max_value_chars)
        self.domains = {c: v for c, v in self.domains.items() if c not in self.free_text}
        self.examples = _stratified_examples(
            self._with_thin(self.sample_pd),
            self.schema.target,
            max(self.gcfg.example_rows, self.gcfg.own_rows),
            self.cfg.seed,
        )
        self.score_sdf = self._scoring_sample()
        masked_cols = {
            c: v
            for c, v in self.domains.items()
            if self.schema.column(c).kind is Kind.CATEGORICAL and c != self.schema.target
        }
        self.masker = (
            Masker.build(masked_cols, self.cfg.seed) if self.gcfg.mask_categoricals else Masker()
        )
        self.prompt_columns = [c for c in self.columns if c not in self.sensitive]
        shown_domains = {
            c: [self.masker.value(c, v) for v in vals] for c, vals in self.domains.items()
        }
        self.head = header(
            self.schema,
            self.prompt_columns,
            shown_domains,
            self.ranges,
            self.gcfg.max_value_chars,
        )
        self.spec = ScoringSpec(
            encoder=self.discovery.encoder,
            target=self.schema.target,
            task=self.schema.task,
            columns=self.columns,
            sensitive=self.sensitive,
            tree_max_depth=self.gcfg.tree_max_depth,
            min_arm_rows=self.gcfg.min_arm_rows,
            label_check=self.gcfg.label_check,
            label_check_confidence=self.gcfg.label_check_confidence,
            model=ModelSpec.for_table(
                self.cfg.selection, self.schema, self.discovery.encoder, seed=self.cfg.seed
            ),
            folds=self.cfg.selection.folds,
            seed=self.cfg.seed,
            generator=self.gcfg.generator,
            masker=self.masker,
        )
        self._rank_by_benefit()

    def _with_thin(self, sample: pd.DataFrame) -> pd.DataFrame:
        """The sample plus, for each thin segment, its rows of the rest tagged with its id."""
        rest = sample[sample[DGR_COL] == REST]
        parts = [sample]
        for d in self.all_dgrs:
            if str(d.rule_id) in self.thin_ids and len(rest):
                mine = rest[d.rule.mask(rest).to_numpy(dtype=bool)]
                parts.append(mine.assign(**{DGR_COL: str(d.rule_id)}))
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else sample

    def _scoring_sample(self) -> DataFrame:
        """What the scoring UDF cogroups with: each partition's sampled rows under its own key,
        and, under the rest's key, the covered training rows as fixed rows (the rest is served by
        the global model, which every row trains)."""
        pdf = self.sample_pd.copy()
        pdf[GROUP_COL] = pdf[DGR_COL]
        pdf[FIXED_COL] = False
        covered = self.sample_pd[
            (self.sample_pd[DGR_COL] != REST) & (self.sample_pd[SPLIT_COL] == TRAIN)
        ]
        if (self.sample_pd[DGR_COL] == REST).any() and len(covered):
            cap = max(self.gcfg.partition_sample_rows, 20_000)
            if len(covered) > cap:
                covered = covered.sample(n=cap, random_state=self.cfg.seed).sort_index()
            covered = covered.copy()
            covered[GROUP_COL] = REST
            covered[FIXED_COL] = True
            pdf = pd.concat([pdf, covered], ignore_index=True)
        schema = T.StructType(
            [
                *self.sample_sdf.schema.fields,
                T.StructField(GROUP_COL, T.StringType()),
                T.StructField(FIXED_COL, T.BooleanType()),
            ]
        )
        return self.spark.createDataFrame(pdf, schema=schema)

    def _rank_by_benefit(self) -> None:
        """Learning curve per partition, in one grouped pandas UDF across the cluster; the
        `max_rules` DGRs with the largest expected benefit are prompted, with requests in
        proportion to it (`partition_benefit`, `allocate_requests`)."""
        spec = self.spec
        per_rule = self.gcfg.requests_per_rule
        added = self.gcfg.rows_per_request * per_rule * self.gcfg.iterations

        def fn(pdf: pd.DataFrame) -> pd.DataFrame:
            return partition_benefit(pdf, spec, added)

        frame = to_pandas(self.sample_sdf.groupBy(DGR_COL).applyInPandas(fn, schema=BENEFIT_DDL))
        by_id = {str(d.rule_id): d for d in self.all_dgrs}
        rest = frame[frame[DGR_COL] == REST]
        if len(rest) and self.thin_ids:
            # a thin segment is too small for a learning curve of its own: the rest's slope
            slope = float(rest["slope"].iloc[0])
            thin = pd.DataFrame(
                [
                    {
                        DGR_COL: k,
                        "train_rows": int(by_id[k].support),
                        "loss": float(rest["loss"].iloc[0]),
                        "loss_half": float(rest["loss_half"].iloc[0]),
                        "slope": slope,
                        "benefit": slope * float(np.log2(1 + added / max(1, by_id[k].support))),
                    }
                    for k in sorted(self.thin_ids)
                ]
            )
            frame = pd.concat([frame, thin], ignore_index=True)
        frame = frame[frame[DGR_COL].isin(list(by_id))]
        frame["support"] = frame[DGR_COL].map(lambda k: int(by_id[k].support))
        frame = frame.sort_values(
            ["benefit", "support", DGR_COL], ascending=[False, False, True], kind="mergesort"
        ).reset_index(drop=True)
        top = list(frame[DGR_COL])[: self.gcfg.max_rules]
        missing = [k for k in by_id if k not in set(frame[DGR_COL])]  # no sampled row
        top += missing[: max(0, self.gcfg.max_rules - len(top))]
        self.dgrs = [by_id[k] for k in top]
        self.by_id = {k: by_id[k] for k in top}
        benefit = frame.set_index(DGR_COL)["benefit"].to_dict()
        self.requests = allocate_requests({k: benefit.get(k, 0.0) for k in top}, per_rule)
        frame["prompted"] = frame[DGR_COL].isin(top)
        frame["requests"] = frame[DGR_COL].map(self.requests).fillna(0).astype(int)
        self.benefits = frame
        log.info(
            "generation: %d of %d partitions (DGRs, thin segments) prompted, by benefit: %s",
            len(top),
            len(by_id),
            ", ".join(
                f"{r[DGR_COL]} ({r['train_rows']} rows, slope {r['slope']:.2f}, "
                f"{r['requests']} requests)"
                for r in frame[frame["prompted"]].to_dict("records")
            ),
        )

    def _block(self, dgr_id: str, rows: int) -> ExampleBlock | None:
        d = self.by_id.get(dgr_id)
        examples = self.examples.get(dgr_id)
        if d is None or examples is None:
            return None
        return ExampleBlock(
            self.masker.rule(d.rule),
            int(d.support),
            float(d.val_error),
            self.masker.frame(examples[self.prompt_columns].head(rows)),
        )

    def _blocks(self) -> list[ExampleBlock]:
        """Context blocks: the first `example_blocks` prompted DGRs (by expected benefit)."""
        out = []
        for d in self.dgrs[: self.gcfg.example_blocks]:
            block = self._block(str(d.rule_id), self.gcfg.example_rows)
            if block is not None:
                out.append(block)
        return out

    def _row_schema(self, rule: Rule) -> RowSchema:
        shown_domains = {
            c: [self.masker.value(c, v) for v in vals] for c, vals in self.domains.items()
        }
        return RowSchema.from_table(
            self.schema,
            self.masker.rule(rule),
            domains=shown_domains,
            ranges=self.ranges,
            n_rows=self.gcfg.rows_per_request,
            columns=self.prompt_columns,
            margin=self.gcfg.domain_margin,
            out_of_range=self.gcfg.out_of_range,
        )

    # -- one round ------------------------------------------------------------------------------
    def _llm_rows(self, questions: Sequence[Question], rnd: int, stats: RoundStats) -> pd.DataFrame:
        blocks = self._blocks()
        items, extra_dgr, extra_round, extra_q, seeds = [], [], [], [], []
        for q in questions:
            messages = generation_messages(
                head=self.head,
                columns=self.prompt_columns,
                blocks=blocks,
                target=self.masker.rule(q.rule),
                n_rows=self.gcfg.rows_per_request,
                budget=self.prompt_budget,
                own=self._block(q.dgr_id, self.gcfg.own_rows),
                feedback=self.feedback.get(q.dgr_id, []),
                min_own_rows=self.gcfg.own_rows,
                max_value_chars=self.gcfg.max_value_chars,
            )
            schema = self._row_schema(q.rule)
            for rep in range(self.requests.get(q.dgr_id, self.gcfg.requests_per_rule)):
                rid = f"{q.dgr_id}|r{rnd}|q{q.index}|s{rep}"
                items.append((rid, messages, schema))
                extra_dgr.append(q.dgr_id)
                extra_round.append(str(rnd))
                extra_q.append(q.rule.dumps())
                seeds.append((self.cfg.llm.seed or 0) + 1000 * rnd + 10 * q.index + rep)
                self.prompts.append(messages[-1]["content"])
            self._check_own_rows(messages[-1]["content"])
        stats.requests = len(items)
        if not items:
            return pd.DataFrame()
        req = gateway.requests_frame(
            self.spark,
            items,
            seed=seeds,
            temperature=[self.gcfg.temperature] * len(items),
            **{DGR_COL: extra_dgr, "_date_round_s": extra_round, QRULE_COL: extra_q},
        )
        out = gateway.run(
            req,
            self.cfg.llm,
            base_url=self.base_url,
            budget=self.budget,
            keep_columns=[DGR_COL, "_date_round_s", QRULE_COL],
        )
        self._absorb(out.stats, stats)
        pdf = out.pandas
        rows: list[dict[str, Any]] = []
        off: list[dict[str, Any]] = []
        names = set(self.prompt_columns)
        for rec in pdf.to_dict("records"):
            for key, into in (("rows", rows), ("off_rule", off)):
                if key == "off_rule" and not self.gcfg.reroute:
                    continue  # counted as violates_rule by the gateway, and dropped
                for r in json.loads(rec[key]) if rec[key] else []:
                    if set(r) - names:
                        continue
                    r = dict(r)
                    r[DGR_COL] = rec[DGR_COL]
                    r[ROUND_COL] = rnd
                    r[REQUEST_COL] = rec["request_id"]
                    r[QRULE_COL] = rec[QRULE_COL]
                    into.append(r)
        valid = _typed(pd.DataFrame(rows), self.schema)
        if not off:
            return valid
        moved = self._reroute(_typed(pd.DataFrame(off), self.schema), rnd, stats)
        return pd.concat([valid, moved], ignore_index=True) if len(valid) else moved

    def _reroute(self, off: pd.DataFrame, rnd: int, stats: RoundStats) -> pd.DataFrame:
        """Rows outside the rule they were asked for go to the partition they satisfy, as the
        rule set routes real rows: the first DGR in discovery's order whose rule holds, else the
        first thin segment's, else the rest. They become rows of that partition's question (its
        DGR rule) tagged `rerouted`, so they form arms of their own (`<dgr>.r<i>...rerouted`) that
        scoring and selection judge like any other. The rows are still masked: the rules are
        masked to match."""
        target = pd.Series(REST, index=off.index, dtype=object)
        left = np.ones(len(off), dtype=bool)
        order = [d for d in self.discovery.dgrs if str(d.rule_id) not in self.thin_ids]
        order += [d for d in self.all_dgrs if str(d.rule_id) in self.thin_ids]
        rules = {REST: Rule.true()}
        for d in order:
            if not left.any():
                break
            try:
                hit = self.masker.rule(d.rule).mask(off).to_numpy(dtype=bool) & left
            except Exception:  # a value the mask cannot compare (mixed types): not this rule
                continue
            target[hit] = str(d.rule_id)
            rules[str(d.rule_id)] = d.rule
            left &= ~hit
        moved = off.copy()
        moved[DGR_COL] = target
        moved[REQUEST_COL] = [
            f"{t}|r{rnd}|{REROUTED}|from {rid}"
            for t, rid in zip(target, off[REQUEST_COL], strict=True)
        ]
        moved[QRULE_COL] = target.map(lambda t: rules[t].dumps())
        counts = Counter(str(t) for t in target)
        stats.rerouted += len(moved)
        for t, n in counts.items():
            stats.rerouted_to[t] = stats.rerouted_to.get(t, 0) + n
        return moved

    def _check_own_rows(self, prompt: str) -> None:
        """Warn once when the budget leaves fewer own-partition rows than `own_rows`."""
        if getattr(self, "_own_rows_warned", False) or not self.gcfg.own_rows:
            return
        own = next((p for p in prompt.split("\n\n") if p.startswith("This partition:")), "")
        shown = sum(1 for line in own.splitlines() if line.startswith("{"))
        if shown < min(self.gcfg.own_rows, self.gcfg.example_rows or self.gcfg.own_rows):
            self._own_rows_warned = True
            log.warning(
                "generation: a prompt budget of %d tokens shows only %d of %d real rows of the "
                "question's own partition for this table (%d columns); raise "
                "generation.prompt_token_budget (benchmarks/prompt_budget.py measures what it "
                "takes)",
                self.prompt_budget,
                shown,
                self.gcfg.own_rows,
                len(self.prompt_columns),
            )

    def _absorb(self, gstats: Any, stats: RoundStats, *, rows: bool = True) -> None:
        """Add one gateway stage's stats to the round. Rejects of a row stage go to the row
        tables; those of a refinement stage (its replies carry rules, not rows) to
        `refined_dropped` as `reply_<reason>`."""
        for k, v in gstats.as_metrics(prefix="").items():
            if k.startswith(("rejected_", "clipped.")):
                continue
            if "latency" in k or k == "budget_exhausted":
                stats.llm[k] = max(stats.llm.get(k, 0.0), float(v))
            else:
                stats.llm[k] = stats.llm.get(k, 0.0) + float(v)
        if rows:
            for k, n in gstats.rejected.items():
                stats.rejected[k] = stats.rejected.get(k, 0) + int(n)
            for col, reasons in gstats.rejected_by_column.items():
                mine = stats.rejected_by_column.setdefault(col, {})
                for k, n in reasons.items():
                    mine[k] = mine.get(k, 0) + int(n)
            for col, n in gstats.clipped.items():
                stats.clipped[col] = stats.clipped.get(col, 0) + int(n)
        else:
            for k, n in gstats.rejected.items():
                key = f"reply_{k}"
                stats.refined_dropped[key] = stats.refined_dropped.get(key, 0) + int(n)
        if gstats.budget_exhausted:
            self.budget_exhausted = True

    def _interp_rows(self, questions: Sequence[Question], rnd: int) -> pd.DataFrame:
        train = self.sample_pd[self.sample_pd[SPLIT_COL] == TRAIN]
        parts = []
        for q in questions:
            n = self.gcfg.rows_per_request * self.requests.get(q.dgr_id, 1)
            rows = interpolate(
                train[train[DGR_COL] == q.dgr_id][list(self.columns)],
                q.rule,
                self.schema,
                n,
                seed=self.cfg.seed + 1000 * rnd + q.index,
            )
            rows = rows.drop(columns=list(self.sensitive))
            rows[DGR_COL] = q.dgr_id
            rows[ROUND_COL] = rnd
            rows[REQUEST_COL] = f"{q.dgr_id}|r{rnd}|q{q.index}|interp"
            rows[QRULE_COL] = q.rule.dumps()
            parts.append(rows)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def _score(self, generated: pd.DataFrame) -> pd.DataFrame:
        """Tree-path scoring per partition, in a cogrouped pandas UDF across the cluster."""
        if generated.empty:
            return pd.DataFrame()
        gen_fields = [f for f in self.input_fields if f.name not in self.sensitive] + META_FIELDS
        gen_schema = T.StructType(gen_fields)
        gen = generated.reindex(columns=[f.name for f in gen_fields])
        gen[GROUP_COL] = gen[DGR_COL].where(~gen[DGR_COL].isin(list(self.thin_ids)), REST)
        gen_schema = T.StructType([*gen_fields, T.StructField(GROUP_COL, T.StringType())])
        gen_sdf = self.spark.createDataFrame(gen, schema=gen_schema)
        out_schema = T.StructType(self.input_fields + META_FIELDS + ARM_FIELDS)
        spec = self.spec
        cols = [f.name for f in out_schema.fields]

        def fn(g: pd.DataFrame, p: pd.DataFrame) -> pd.DataFrame:
            if g.empty:
                return pd.DataFrame(columns=cols)
            return score_groups(g, p, spec)[cols]

        scored = (
            gen_sdf.groupBy(GROUP_COL)
            .cogroup(self.score_sdf.groupBy(GROUP_COL))
            .applyInPandas(fn, schema=out_schema)
        )
        return to_pandas(scored)

    # -- refinement -----------------------------------------------------------------------------
    def _history(self, mine: pd.DataFrame) -> list[HistoryItem]:
        """One partition's scored groups of a round, best and worst first (`history_items`),
        for the refinement prompt and the next round's row prompt. Rejected rows (label check)
        have no gain and are left out."""
        kinds = self.schema.kinds
        history = []
        for _, g in mine.groupby(ARM_COL, sort=True):
            first = g.iloc[0]
            if pd.isna(first[GAIN_COL]):
                continue
            history.append(
                HistoryItem(
                    rule=self.masker.rule(parse_rule(first[RULE_COL], kinds)),
                    predicted=first[PRED_COL],
                    gain=float(first[GAIN_COL]),
                    rows=self.masker.frame(g[self.prompt_columns]),
                )
            )
        history = sorted(history, key=lambda h: -h.gain)
        if self.gcfg.history_items and len(history) > self.gcfg.history_items:
            k = self.gcfg.history_items
            history = history[: (k + 1) // 2] + history[len(history) - k // 2 :]
        return history

    def _refine(
        self, scored: pd.DataFrame, all_rows: pd.DataFrame, rnd: int, stats: RoundStats
    ) -> list[Question]:
        kinds = self.schema.kinds
        items, dgr_ids = [], []
        rule_schema = RowSchema(
            columns=(RowColumn("rule", Kind.CATEGORICAL),),
            n_rows=self.gcfg.refined_rules_per_rule,
        )
        for dgr_id, d in self.by_id.items():
            mine = scored[scored[DGR_COL] == dgr_id]
            if mine.empty:
                continue
            history = self._history(mine)
            counts = None
            if self.schema.task == "classification":
                labels = all_rows[all_rows[DGR_COL] == dgr_id][self.schema.target]
                counts = {str(k): int(v) for k, v in labels.value_counts().items()}
            messages = build_refinement(
                head=self.head,
                columns=self.prompt_columns,
                dgr=self.masker.rule(d.rule),
                history=history,
                class_counts=counts,
                n_rules=self.gcfg.refined_rules_per_rule,
                budget=self.prompt_budget,
                max_value_chars=self.gcfg.max_value_chars,
            )
            items.append((f"{dgr_id}|r{rnd}|refine", messages, rule_schema))
            dgr_ids.append(dgr_id)
            self.prompts.append(messages[-1]["content"])
        if not items:
            return []
        req = gateway.requests_frame(
            self.spark,
            items,
            temperature=[self.gcfg.temperature] * len(items),
            **{DGR_COL: dgr_ids},
        )
        out = gateway.run(
            req, self.cfg.llm, base_url=self.base_url, budget=self.budget, keep_columns=[DGR_COL]
        )
        self._absorb(out.stats, stats, rows=False)
        dropped: Counter[str] = Counter(stats.refined_dropped)
        proposals: list[tuple[str, Rule]] = []
        for rec in out.pandas.to_dict("records"):
            dgr_id = rec[DGR_COL]
            parent = self.by_id[dgr_id].rule
            for r in json.loads(rec["rows"]) if rec["rows"] else []:
                stats.proposed_rules += 1
                try:
                    rule = self.masker.unmask_rule(parse_rule(str(r.get("rule", "")), kinds))
                except RuleError:
                    dropped["unparseable"] += 1
                    continue
                if rule.columns() & set(self.sensitive):
                    dropped["sensitive_column"] += 1
                    continue
                if rule.columns() & self.free_text:
                    dropped["free_text_column"] += 1
                    continue
                if not self._in_domain(rule):
                    dropped["out_of_domain"] += 1
                    continue
                combined = parent.and_(rule).simplify()
                if not combined.conjunctions:
                    dropped["contradicts_partition"] += 1
                    continue
                if combined == parent.simplify():
                    dropped["no_change"] += 1
                    continue
                proposals.append((dgr_id, combined))
        proposals = list(dict.fromkeys(proposals))
        questions: list[Question] = []
        if proposals:
            train = self.sample_sdf.where(F.col(SPLIT_COL) == TRAIN)
            sizes = count_rules(train, [r for _, r in proposals])
            for i, (dgr_id, rule) in enumerate(proposals):
                if sizes[i] == 0:
                    dropped["empty_on_training_rows"] += 1
                    continue
                questions.append(Question(dgr_id, len(questions) + 1, rule))
        stats.refined_dropped = dict(dropped)
        return questions

    def _in_domain(self, rule: Rule) -> bool:
        for conj in rule.conjunctions:
            for col, view in conj.bounds(self.schema.kinds).items():
                dom = self.domains.get(col)
                if not isinstance(view, CategorySet) or view.allowed is None or dom is None:
                    continue
                if not set(view.allowed) <= set(dom):
                    return False
        return True

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> GenerationResult:
        self.prompts: list[str] = []
        self.feedback: dict[str, list[HistoryItem]] = {}
        self.budget_exhausted = False
        self.prepare()
        questions = [Question(str(d.rule_id), 0, d.rule) for d in self.dgrs]
        all_scored: list[pd.DataFrame] = []
        rounds: list[RoundStats] = []
        for rnd in range(1, self.gcfg.iterations + 1):
            t0 = time.monotonic()
            stats = RoundStats(round=rnd, questions=len(questions))
            log.info(
                "generation round %d of %d: %s rows for %d rules",
                rnd,
                self.gcfg.iterations,
                "asking the LLM for" if self.gcfg.generator == "llm" else "interpolating",
                len(questions),
            )
            if self.gcfg.generator == "llm":
                generated = self._llm_rows(questions, rnd, stats)
            else:
                generated = self._interp_rows(questions, rnd)
                stats.requests = 0
            stats.valid_rows = len(generated) - stats.rerouted
            scored = self._score(generated)
            if not scored.empty:
                all_scored.append(scored)
                arms = scored.groupby(ARM_COL).agg(
                    cand=(CANDIDATE_COL, "first"), n=(ARM_COL, "size")
                )
                stats.groups = len(arms)
                stats.label_rejected = int(scored[ARM_COL].str.endswith(".rejected").sum())
                stats.candidate_arms = int(arms["cand"].sum())
                stats.rows_in_candidates = int(arms.loc[arms["cand"], "n"].sum())
            stats.refined_rules_used = sum(1 for q in questions if q.index > 0)
            # the tree-path feedback of this round goes into the next round's row prompts
            self.feedback = (
                {str(k): self._history(g) for k, g in scored.groupby(DGR_COL)}
                if not scored.empty
                else {}
            )
            last = rnd == self.gcfg.iterations
            next_q: list[Question] = []
            if not last and not self.budget_exhausted:
                if self.gcfg.generator == "llm" and not scored.empty:
                    history = pd.concat(all_scored, ignore_index=True)
                    next_q = self._refine(scored, history, rnd, stats)
                covered = {q.dgr_id for q in next_q}
                # A partition without a usable refined rule is asked again under its DGR.
                next_q += [
                    Question(str(d.rule_id), 0, d.rule)
                    for d in self.dgrs
                    if str(d.rule_id) not in covered
                ]
            stats.seconds = round(time.monotonic() - t0, 3)
            rounds.append(stats)
            log.info(
                "generation round %d: %d questions, %d requests, %d valid rows, %d rejected, "
                "%d groups, %d candidate arms, %d refined rules next, %.1fs",
                rnd, stats.questions, stats.requests, stats.valid_rows,
                sum(stats.rejected.values()), stats.groups, stats.candidate_arms,
                sum(1 for q in next_q if q.index > 0), stats.seconds,
            )  # fmt: skip
            for line in reject_table(stats.rejected_by_column, stats.clipped):
                log.info("generation round %d rejects: %s", rnd, line)
            questions = next_q
            if self.budget_exhausted:
                log.warning("LLM budget exhausted after round %d; finishing with what we have", rnd)
                break
        empty = [*self.columns] + [f.name for f in META_FIELDS + ARM_FIELDS]
        # An empty result keeps its columns, so callers can group and select without special cases.
        rows = (
            pd.concat(all_scored, ignore_index=True) if all_scored else pd.DataFrame(columns=empty)
        )
        return GenerationResult(
            rows=rows,
            arms=arms_table(rows, self.schema.target),
            rounds=rounds,
            generator=self.gcfg.generator,
            budget_exhausted=self.budget_exhausted,
            prompts=list(self.prompts),
            benefits=self.benefits,
        )


def _ordered_table(table: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    """Columns by rows rejected (most first, then name), reasons in validation order."""
    order = {r: i for i, r in enumerate(REASONS)}
    out: dict[str, dict[str, int]] = {}
    for col in sorted(table, key=lambda c: (-sum(table[c].values()), c)):
        reasons = {r: int(n) for r, n in table[col].items() if n}
        if reasons:
            out[col] = dict(sorted(reasons.items(), key=lambda kv: order.get(kv[0], len(order))))
    return out


def reject_table(
    by_column: dict[str, dict[str, int]], clipped: dict[str, int] | None = None
) -> list[str]:
    """The per-column reject table as aligned text lines (empty when nothing was rejected or
    clipped): one line per column, one count per reason, then the clipped values."""
    clipped = clipped or {}
    cols = list(_ordered_table({c: Counter(r) for c, r in by_column.items()}))
    cols += sorted(c for c in clipped if c not in by_column)
    if not cols:
        return []
    reasons = [r for r in REASONS if any(r in by_column.get(c, {}) for c in cols)]
    heads = [*reasons, "clipped"] if clipped else reasons
    width = max(len("column"), *(len(c) for c in cols))
    lines = ["column".ljust(width) + "".join(f"  {h:>13}" for h in heads)]
    for c in cols:
        counts = [by_column.get(c, {}).get(r, 0) for r in reasons]
        if clipped:
            counts.append(clipped.get(c, 0))
        lines.append(c.ljust(width) + "".join(f"  {n if n else '-':>13}" for n in counts))
    return lines


def prompt_budget(cfg: Config) -> int:
    """`generation.prompt_token_budget`, capped for the embedded local model by what its context
    window leaves after the answer (`llm.local.n_ctx - llm.max_tokens`)."""
    budget = cfg.generation.prompt_token_budget
    if cfg.generation.generator == "llm" and cfg.llm.provider == "local" and not cfg.llm.base_url:
        budget = min(budget, max(256, cfg.llm.local.n_ctx - cfg.llm.max_tokens))
    return budget


def _typed(pdf: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """JSON carries dates and timestamps as ISO text; give them back their types."""
    for spec in schema.columns:
        if spec.name not in pdf.columns:
            continue
        if spec.kind is Kind.DATE:
            pdf[spec.name] = pd.to_datetime(pdf[spec.name], errors="coerce").dt.date
        elif spec.kind is Kind.TIMESTAMP:
            pdf[spec.name] = pd.to_datetime(pdf[spec.name], errors="coerce")
    return pdf


def arms_table(rows: pd.DataFrame, target: str) -> pd.DataFrame:
    """One row per group: what selection and the report read."""
    cols = [
        "arm_id",
        "dgr_id",
        "round",
        "rule",
        "n_rows",
        "gain",
        "agree",
        "candidate",
        "predicted",
        "labels",
        "generator",
    ]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for arm, g in rows.groupby(ARM_COL, sort=True):
        first = g.iloc[0]
        labels = {str(k): int(v) for k, v in g[target].value_counts().items()}
        out.append(
            {
                "arm_id": arm,
                "dgr_id": first[DGR_COL],
                "round": int(first[ROUND_COL]),
                "rule": first[RULE_COL],
                "n_rows": len(g),
                "gain": float(first[GAIN_COL]) if pd.notna(first[GAIN_COL]) else float("nan"),
                "agree": bool(first[AGREE_COL]),
                "candidate": bool(first[CANDIDATE_COL]),
                "predicted": first[PRED_COL],
                "labels": json.dumps(labels, sort_keys=True),
                "generator": first[GENERATOR_COL],
            }
        )
    return pd.DataFrame(out, columns=cols)


def generate(
    data: DataFrame,
    discovery: DiscoveryLike,
    schema: TableSchema,
    cfg: Config,
    *,
    route: Any,
    base_url: str | None = None,
    budget: Budget | None = None,
) -> GenerationResult:
    """Run Algorithm 2. `data` carries `_date_split` (test rows are dropped here); `route` is the
    DGR router (`Discovery.route(column="_date_dgr")`)."""
    return Generator(
        data, discovery, schema, cfg, route=route, base_url=base_url, budget=budget
    ).run()
