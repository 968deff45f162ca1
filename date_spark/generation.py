"""Algorithm 2: DGR-guided generation with decision-tree path reasoning and rule refinement.

Per round (one Spark stage of LLM calls, one of scoring):
1. Questions: round 1 asks for rows under each DGR; rounds 2..I ask under the rules the LLM itself
   proposed in the reflective prompt (each intersected with its parent DGR, so its rows are scored
   in the partition they belong to; a DGR with no usable proposal is asked again as it is).
2. The requests DataFrame goes through the LLM gateway (`llm.gateway.run`): rows come back
   validated against the question's rule, the data's domains and the label's values.
3. Decision-tree reasoning, per partition in a cogrouped pandas UDF: a tree fitted on the
   partition's training rows routes the generated rows; rows are grouped by (question, root-to-leaf
   path, generated label agrees with the tree). Each group's validation gain is the partition
   model's error on the partition's validation rows when trained on train minus when trained on
   train + group (error rate, or MSE for regression). Groups with gain > 0 are candidate arms; the
   rest are kept in the arms table, marked, so the refinement prompt can learn from them.
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from date_spark.config import Config
from date_spark.errors import ConfigError, RuleError
from date_spark.features import FeatureEncoder
from date_spark.llm import gateway
from date_spark.llm.budget import Budget
from date_spark.llm.rows import RowColumn, RowSchema
from date_spark.prompts import ExampleBlock, HistoryItem, Masker, generation_messages, header
from date_spark.prompts import refinement_messages as build_refinement
from date_spark.rules import CategorySet, Rule, count_rules, parse_rule
from date_spark.schema import Kind, TableSchema
from date_spark.spark import to_pandas
from date_spark.split import SPLIT_COL, TEST, TRAIN, VALIDATION, row_uniform
from date_spark.trees import RuleTree

log = logging.getLogger(__name__)

DGR_COL = "_date_dgr"
ROUND_COL = "_date_round"
REQUEST_COL = "_date_request"
QRULE_COL = "_date_qrule"
ARM_COL = "_date_arm"
RULE_COL = "_date_rule"
GAIN_COL = "_date_gain"
AGREE_COL = "_date_agree"
CANDIDATE_COL = "_date_candidate"
PRED_COL = "_date_predicted"
_ORDER_COL = "_date_order"
GENERATOR_COL = "_date_generator"
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
    rejected: dict[str, int] = field(default_factory=dict)
    groups: int = 0
    candidate_arms: int = 0
    rows_in_candidates: int = 0
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

    @property
    def candidate_arms(self) -> pd.DataFrame:
        return self.arms[self.arms["candidate"]]

    def summary(self) -> dict[str, Any]:
        rejected: Counter[str] = Counter()
        for r in self.rounds:
            rejected.update(r.rejected)
        return {
            "generator": self.generator,
            "rounds": len(self.rounds),
            "generated_rows": len(self.rows),
            "groups": len(self.arms),
            "candidate_arms": int(self.arms["candidate"].sum()) if len(self.arms) else 0,
            "rejected": dict(rejected),
            "refined_rules_used": sum(r.refined_rules_used for r in self.rounds),
            "budget_exhausted": self.budget_exhausted,
        }

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.rows.to_parquet(d / "rows.parquet", index=False)
        self.arms.to_parquet(d / "arms.parquet", index=False)
        (d / "rounds.json").write_text(json.dumps([asdict(r) for r in self.rounds], indent=2))

    @staticmethod
    def load(directory: str | Path, generator: str = "llm") -> GenerationResult:
        d = Path(directory)
        rounds = [RoundStats(**r) for r in json.loads((d / "rounds.json").read_text())]
        return GenerationResult(
            pd.read_parquet(d / "rows.parquet"),
            pd.read_parquet(d / "arms.parquet"),
            rounds,
            generator,
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
    model_max_depth: int | None
    seed: int
    generator: str
    masker: Masker


def _model(task: str, depth: int | None, seed: int) -> Any:
    if task == "regression":
        return DecisionTreeRegressor(max_depth=depth, random_state=seed)
    return DecisionTreeClassifier(max_depth=depth, random_state=seed)


def _error(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if len(y_true) == 0:
        return float("nan")
    if task == "regression":
        return float(np.mean((y_true.astype(float) - y_pred.astype(float)) ** 2))
    return float(np.mean(y_true != y_pred))


def score_groups(gen: pd.DataFrame, part: pd.DataFrame, spec: ScoringSpec) -> pd.DataFrame:
    """Group generated rows of one partition by (question, tree path, label agreement) and score
    each group's validation gain. Returns the rows with the arm columns added."""
    out_cols = [*spec.columns, DGR_COL, ROUND_COL, REQUEST_COL, QRULE_COL] + [
        f.name for f in ARM_FIELDS
    ]
    if gen.empty:
        return pd.DataFrame(columns=out_cols)
    gen = spec.masker.unmask_frame(gen.reset_index(drop=True))
    train = part[part[SPLIT_COL] == TRAIN].reset_index(drop=True)
    val = part[part[SPLIT_COL] == VALIDATION].reset_index(drop=True)
    rng = np.random.default_rng(spec.seed)
    for col in spec.sensitive:
        pool = train[col].dropna().to_numpy() if col in train and len(train) else np.array([None])
        gen[col] = rng.choice(pool if len(pool) else np.array([None]), size=len(gen))
    enc, task, target = spec.encoder, spec.task, spec.target
    if len(train) < 5 or len(val) < 2 or train[target].nunique() < 1:
        gen[ARM_COL] = gen[DGR_COL] + ".r" + gen[ROUND_COL].astype(str) + ".unscored"
        gen[RULE_COL] = gen[QRULE_COL].map(lambda j: Rule.from_json(j).to_text())
        gen[GAIN_COL] = float("nan")
        gen[AGREE_COL] = True
        gen[CANDIDATE_COL] = False
        gen[PRED_COL] = None
        gen[GENERATOR_COL] = spec.generator
        return gen[out_cols]
    x_tr, y_tr = enc.transform(train), enc.target(train)
    x_val, y_val = enc.transform(val), enc.target(val)
    x_gen, y_gen = enc.transform(gen), enc.target(gen)
    tree = RuleTree.fit(
        x_tr, y_tr, enc, task, max_depth=spec.tree_max_depth, min_samples_leaf=2, seed=spec.seed
    )
    paths = {p.leaf: p for p in tree.paths(x_tr)}
    leaf = tree.route(gen, list(paths.values()))
    pred = tree.predict(x_gen)
    if task == "regression":
        resid = y_val.astype(float) - tree.predict(x_val).astype(float)
        tol = 2.0 * float(np.sqrt(np.mean(resid**2))) if len(resid) else np.inf
        agree = np.abs(y_gen.astype(float) - pred.astype(float)) <= tol
    else:
        agree = y_gen == pred
    base = _model(task, spec.model_max_depth, spec.seed).fit(x_tr, y_tr)
    base_err = _error(task, y_val, base.predict(x_val))

    gen = gen.assign(_leaf=leaf, _agree=agree, _pred=[str(p) for p in pred])
    gen = gen[gen["_leaf"] >= 0]  # a value the path rules cannot place: no arm can claim it
    parts = []
    for key, g in gen.groupby([QRULE_COL, "_leaf", "_agree"], sort=True):
        k: tuple[Any, ...] = key
        qrule, lf, ag = str(k[0]), int(k[1]), bool(k[2])
        idx = g.index.to_numpy()
        x_aug = np.vstack([x_tr, x_gen[idx]])
        y_aug = np.concatenate([y_tr, y_gen[idx]])
        err = _error(
            task,
            y_val,
            _model(task, spec.model_max_depth, spec.seed).fit(x_aug, y_aug).predict(x_val),
        )
        gain = base_err - err
        rule = Rule.from_json(qrule).and_(paths[lf].rule).simplify()
        first = g.iloc[0]
        qidx = str(first[REQUEST_COL]).split("|")[2] if "|" in str(first[REQUEST_COL]) else "q0"
        arm = f"{first[DGR_COL]}.r{int(first[ROUND_COL])}.{qidx}.l{lf}.{'a' if ag else 'd'}"
        g = g.drop(columns=["_leaf", "_agree", "_pred"])
        g[ARM_COL] = arm
        g[RULE_COL] = rule.to_text()
        g[GAIN_COL] = float(gain)
        g[AGREE_COL] = ag
        g[CANDIDATE_COL] = bool(gain > 0)
        g[PRED_COL] = str(paths[lf].prediction)
        g[GENERATOR_COL] = spec.generator
        parts.append(g)
    if not parts:
        return pd.DataFrame(columns=out_cols)
    return pd.concat(parts, ignore_index=True)[out_cols]


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
        col = F.col(f"`{c.name}`")
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
        dgrs = sorted(discovery.dgrs, key=lambda d: (-d.support, str(d.rule_id)))
        self.dgrs = dgrs[: self.gcfg.max_rules]
        for d in self.dgrs:
            leaked = d.rule.columns() & set(sensitive)
            if leaked:
                raise ConfigError(
                    f"rule {d.rule_id} uses sensitive column {sorted(leaked)[0]!r}; exclude "
                    f"sensitive columns from discovery so their values never reach a prompt"
                )
        self.by_id = {str(d.rule_id): d for d in self.dgrs}
        non_test = data.where(F.col(SPLIT_COL) != TEST)
        self.routed = non_test.transform(route)
        self.columns = tuple(schema.names)
        self.input_fields = [data.schema[c] for c in self.columns]

    # -- preparation ----------------------------------------------------------------------------
    def prepare(self) -> None:
        ids = list(self.by_id)
        sample = _partition_sample(self.routed, ids, self.gcfg.partition_sample_rows, self.cfg.seed)
        self.sample_sdf = sample.select(
            *[F.col(f"`{c}`") for c in self.columns], DGR_COL, SPLIT_COL
        )
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
            self.sample_pd, self.schema.target, self.gcfg.example_rows, self.cfg.seed
        )
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
            model_max_depth=self.cfg.discovery.model_max_depth,
            seed=self.cfg.seed,
            generator=self.gcfg.generator,
            masker=self.masker,
        )

    def _blocks(self) -> list[ExampleBlock]:
        blocks = []
        for d in self.dgrs[: self.gcfg.example_blocks]:
            rows = self.examples.get(str(d.rule_id))
            if rows is None:
                continue
            blocks.append(
                ExampleBlock(
                    self.masker.rule(d.rule),
                    int(d.support),
                    float(d.val_error),
                    self.masker.frame(rows[self.prompt_columns]),
                )
            )
        return blocks

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
                budget=self.gcfg.prompt_token_budget,
                max_value_chars=self.gcfg.max_value_chars,
            )
            schema = self._row_schema(q.rule)
            for rep in range(self.gcfg.requests_per_rule):
                rid = f"{q.dgr_id}|r{rnd}|q{q.index}|s{rep}"
                items.append((rid, messages, schema))
                extra_dgr.append(q.dgr_id)
                extra_round.append(str(rnd))
                extra_q.append(q.rule.dumps())
                seeds.append((self.cfg.llm.seed or 0) + 1000 * rnd + 10 * q.index + rep)
                self.prompts.append(messages[-1]["content"])
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
        rows = []
        names = set(self.prompt_columns)
        for rec in pdf.to_dict("records"):
            if not rec["rows"]:
                continue
            for r in json.loads(rec["rows"]):
                if set(r) - names:
                    continue
                r = dict(r)
                r[DGR_COL] = rec[DGR_COL]
                r[ROUND_COL] = rnd
                r[REQUEST_COL] = rec["request_id"]
                r[QRULE_COL] = rec[QRULE_COL]
                rows.append(r)
        return _typed(pd.DataFrame(rows), self.schema)

    def _absorb(self, gstats: Any, stats: RoundStats) -> None:
        for k, v in gstats.as_metrics(prefix="").items():
            if k.startswith("rejected_"):
                continue
            if "latency" in k or k == "budget_exhausted":
                stats.llm[k] = max(stats.llm.get(k, 0.0), float(v))
            else:
                stats.llm[k] = stats.llm.get(k, 0.0) + float(v)
        for k, n in gstats.rejected.items():
            stats.rejected[k] = stats.rejected.get(k, 0) + int(n)
        if gstats.budget_exhausted:
            self.budget_exhausted = True

    def _interp_rows(self, questions: Sequence[Question], rnd: int) -> pd.DataFrame:
        n = self.gcfg.rows_per_request * self.gcfg.requests_per_rule
        train = self.sample_pd[self.sample_pd[SPLIT_COL] == TRAIN]
        parts = []
        for q in questions:
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
        gen_sdf = self.spark.createDataFrame(gen, schema=gen_schema)
        out_schema = T.StructType(self.input_fields + META_FIELDS + ARM_FIELDS)
        spec = self.spec
        cols = [f.name for f in out_schema.fields]

        def fn(g: pd.DataFrame, p: pd.DataFrame) -> pd.DataFrame:
            if g.empty:
                return pd.DataFrame(columns=cols)
            return score_groups(g, p, spec)[cols]

        scored = (
            gen_sdf.groupBy(DGR_COL)
            .cogroup(self.sample_sdf.groupBy(DGR_COL))
            .applyInPandas(fn, schema=out_schema)
        )
        return to_pandas(scored)

    # -- refinement -----------------------------------------------------------------------------
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
            history = []
            for _, g in mine.groupby(ARM_COL, sort=True):
                first = g.iloc[0]
                history.append(
                    HistoryItem(
                        rule=self.masker.rule(parse_rule(first[RULE_COL], kinds)),
                        predicted=first[PRED_COL],
                        gain=float(first[GAIN_COL]) if pd.notna(first[GAIN_COL]) else 0.0,
                        rows=self.masker.frame(g[self.prompt_columns]),
                    )
                )
            history = sorted(history, key=lambda h: -h.gain)
            if self.gcfg.history_items and len(history) > self.gcfg.history_items:
                k = self.gcfg.history_items
                history = history[: (k + 1) // 2] + history[len(history) - k // 2 :]
            labels = all_rows[all_rows[DGR_COL] == dgr_id][self.schema.target]
            counts = {str(k): int(v) for k, v in labels.value_counts().items()}
            messages = build_refinement(
                head=self.head,
                columns=self.prompt_columns,
                dgr=self.masker.rule(d.rule),
                history=history,
                class_counts=counts,
                n_rules=self.gcfg.refined_rules_per_rule,
                budget=self.gcfg.prompt_token_budget,
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
        self._absorb(out.stats, stats)
        dropped: Counter[str] = Counter()
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
        self.budget_exhausted = False
        self.prepare()
        questions = [Question(str(d.rule_id), 0, d.rule) for d in self.dgrs]
        all_scored: list[pd.DataFrame] = []
        rounds: list[RoundStats] = []
        for rnd in range(1, self.gcfg.iterations + 1):
            t0 = time.monotonic()
            stats = RoundStats(round=rnd, questions=len(questions))
            if self.gcfg.generator == "llm":
                generated = self._llm_rows(questions, rnd, stats)
            else:
                generated = self._interp_rows(questions, rnd)
                stats.requests = 0
            stats.valid_rows = len(generated)
            scored = self._score(generated)
            if not scored.empty:
                all_scored.append(scored)
                arms = scored.groupby(ARM_COL).agg(
                    cand=(CANDIDATE_COL, "first"), n=(ARM_COL, "size")
                )
                stats.groups = len(arms)
                stats.candidate_arms = int(arms["cand"].sum())
                stats.rows_in_candidates = int(arms.loc[arms["cand"], "n"].sum())
            stats.refined_rules_used = sum(1 for q in questions if q.index > 0)
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
                "generation round %d: %d questions, %d requests, %d valid rows, %d groups, "
                "%d candidate arms, %d refined rules next, %.1fs",
                rnd, stats.questions, stats.requests, stats.valid_rows, stats.groups,
                stats.candidate_arms, sum(1 for q in next_q if q.index > 0), stats.seconds,
            )  # fmt: skip
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
        )


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
