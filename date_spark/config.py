"""Job configuration: one immutable pydantic model, layered from YAML files, `--set` overrides and
the environment.

Precedence, lowest first: the embedded defaults (`conf/base.yaml` ships the same values), each YAML
file in the order given, environment variables `DATE_SPARK__SECTION__KEY=value`, then `--set
section.key=value`. Values from the environment and `--set` are parsed as YAML scalars, so
`--set discovery.rho=0.1` is a float and `--set input.exclude=[a,b]` a list.

Secrets never live in config: `llm.api_key_env` names the environment variable that holds the key.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from date_spark.errors import ConfigError
from date_spark.secrets import hint, looks_like_key, mask

__all__ = [
    "ENV_PREFIX",
    "NEUTRAL",
    "Config",
    "DiscoveryConfig",
    "EvaluationConfig",
    "GenerationConfig",
    "InputConfig",
    "LlmConfig",
    "LocalModelConfig",
    "ModelName",
    "ModelPrice",
    "OutputConfig",
    "SelectionConfig",
    "SparkConfig",
    "SplitConfig",
    "TrackingConfig",
    "dump_yaml",
    "env_overrides",
    "flatten",
    "keys_by_stage",
    "label_check_for",
    "load_config",
    "parse_override",
    "read_yaml",
]


ENV_PREFIX = "DATE_SPARK__"
_SECRET_KEYS = {"api_key", "apikey", "key", "secret", "token", "password", "azure_api_key"}


# The stage of a key that never changes a result (`_Section.stage`).
NEUTRAL = "neutral"


class _Section(BaseModel):
    """A config section. What its keys shape decides whether `--resume` may change them
    (`tracking/runs.py`, `keys_by_stage`): `stage` names the first run stage whose result every
    key of the section shapes, or NEUTRAL (how to reach the endpoint and how fast, tracking, the
    Spark session: never a result); `key_stages` names keys that differ from their section. A
    section without a `stage` names every key of its own, so a new key is classified where it is
    added (the run refuses to start otherwise)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
    stage: ClassVar[str | None] = None
    key_stages: ClassVar[Mapping[str, str]] = {}


class InputConfig(_Section):
    stage = "prepare"

    path: str | None = None
    format: Literal["parquet", "csv"] = "parquet"
    table: str | None = None
    target: str | None = None
    task: Literal["auto", "classification", "regression"] = "auto"
    columns: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    csv_options: dict[str, str] = Field(
        default_factory=lambda: {"header": "true", "inferSchema": "true"}
    )
    min_rows: int = Field(default=40, ge=10)
    max_classes: int = Field(default=50, ge=2)
    # Parquet files of one directory that disagree on their columns are refused by name; true
    # reads the union (Spark's mergeSchema: null where a file lacks a column).
    merge_schema: bool = False

    @field_validator("csv_options", mode="before")
    @classmethod
    def _options_as_typed(cls, v: Any) -> Any:
        """What a user types: `multiLine: true`, `samplingRatio: 0.1` (YAML booleans and numbers)
        become the strings Spark's reader takes (`true`, `0.1`)."""
        if not isinstance(v, Mapping):
            return v
        out = {}
        for k, val in v.items():
            if isinstance(val, bool):
                val = "true" if val else "false"
            elif isinstance(val, (int, float)):
                val = str(val)
            out[str(k)] = val
        return out

    @model_validator(mode="after")
    def _one_source(self) -> InputConfig:
        if self.path and self.table:
            raise ValueError("set input.path or input.table, not both")
        return self


class DiscoveryConfig(_Section):
    """Algorithm 1 (DGR discovery). `date_spark/discovery/algorithm.py` documents the semantics.

    rho_mode: how `rho` becomes the error threshold a DGR's model must meet on its rows:
      - "relative" (default): threshold = floor * (root_error / floor) ** rho, where root_error
        is the error of one `model` on the whole table and floor the error of a boosted-tree
        reference model (an estimate of the noise no rule can beat). rho in (0, 1) places the
        threshold between the two on a log scale (errors, MSE especially, span orders of
        magnitude). Reachable at any label-noise level.
      - "absolute": threshold = rho (the paper's: error rate, or MSE for regression). Below the
        noise floor nothing can be accepted; discovery then warns and serves rows globally.
      - "variance": threshold = rho * the constant predictor's error (the target's variance for
        regression, 1 - majority share for classification); rho in (0, 1).
    model: the per-DGR model. "linear" (default: logistic / ridge regression) keeps the error
      threshold meaningful: a deep tree fits a union of two regimes as well as one regime, so its
      error cannot tell them apart (measured on the planted tables).
    thin_min_rows: a candidate below the support floor (`min_rows`, `min_support`) with at least
      this many training rows is kept as a *thin segment*: no model of its own (the global one
      serves it), but generation prompts it and selection scores its rows; 0 drops them.
    split_target: what the splitting tree of a rejected candidate is fitted to. "residual"
      (default): the residuals of the candidate's own model, so splits fall where that model
      fails (regime boundaries); "label": the label itself, as in the authors' code.
    """

    stage = "discovery"

    rho: float = Field(default=0.25, gt=0, allow_inf_nan=False)
    rho_mode: Literal["relative", "absolute", "variance"] = "relative"
    min_rows: int = Field(default=50, ge=2)
    min_support: float = Field(default=0.01, ge=0, lt=1)
    thin_min_rows: int = Field(default=20, ge=0)
    max_conjunction_length: int = Field(default=4, ge=1, le=16)
    max_candidates_per_level: int = 50
    max_levels: int = Field(default=12, ge=1)
    sample_per_candidate: int = Field(default=20000, ge=50)
    # Cells (rows x columns) one level may draw for all its candidates together: the sample is
    # cached, so on wide tables it is what bounds the driver's memory. Per-candidate samples
    # shrink in proportion when a level would exceed it (never below 2 x min_rows).
    sample_cells: int = Field(default=20_000_000, ge=10_000)
    validation_fraction: float = Field(default=0.25, gt=0, lt=1)
    split_tree_depth: int = Field(default=3, ge=1, le=10)
    split_target: Literal["residual", "label"] = "residual"
    splits_per_candidate: int | None = Field(default=1, ge=1)
    lookahead_splits: int = Field(default=3, ge=0)
    model: Literal["linear", "decision_tree", "random_forest"] = "linear"
    model_max_depth: int | None = Field(default=6, ge=1)
    global_model: Literal["decision_tree", "random_forest", "linear"] = "decision_tree"
    max_categories: int = Field(default=64, ge=2, le=255)
    time_budget_s: float = Field(default=900.0, gt=0)
    stop_uncovered_fraction: float = Field(default=0.01, ge=0, lt=1)
    model_sharing: bool = True

    @field_validator("max_candidates_per_level")
    @classmethod
    def _holds_a_split(cls, v: int) -> int:
        if v < 2:
            raise ValueError("cannot hold the two children of a split; use at least 2")
        return v

    @model_validator(mode="after")
    def _rho_range(self) -> DiscoveryConfig:
        if self.rho_mode != "absolute" and self.rho >= 1:
            raise ValueError(
                f"rho={self.rho} with rho_mode={self.rho_mode} must be below 1 (a share of the "
                f"global model's error); use rho_mode=absolute for an error threshold"
            )
        return self

    @model_validator(mode="after")
    def _sample_holds_min_rows(self) -> DiscoveryConfig:
        if self.sample_per_candidate < 2 * self.min_rows:
            raise ValueError(
                f"sample_per_candidate={self.sample_per_candidate} is too small to train and "
                f"validate a candidate of min_rows={self.min_rows}; use at least "
                f"{2 * self.min_rows}"
            )
        return self


class GenerationConfig(_Section):
    """Algorithm 2 (generation). `date_spark/generation/generator.py` documents the semantics.

    max_rules: how many DGRs are prompted: those with the largest expected benefit (the learning
      curve of their model: loss with half vs all of their rows), not the largest. Requests per
      round (`requests_per_rule` on average) go to them in proportion to that benefit.
    own_rows: real rows of the question's own partition shown first in its prompt (the prompt
      budget shrinks everything else first); example_rows: rows of each other example block.
    prompt_token_budget: a hard limit per prompt (estimated at 3 characters per token). 4,000
      shows 8 own rows up to about 55 columns (measured: 730 tokens at 8 columns, 1,500 at 20,
      3,530 at 50; `benchmarks/prompt_budget.py`); the embedded local model gets at most
      `llm.local.n_ctx - llm.max_tokens`.
    min_arm_rows: tree paths holding fewer generated rows are pooled per question: an arm of one
      or two rows moves the loss by less than the refit noise.
    label_check: a teacher (the selection model trained on the partition) sets apart ("filter",
      counted as a `.rejected` arm) or relabels ("relabel") generated rows whose label it
      contradicts with probability `label_check_confidence`; "off" keeps them. "auto"
      (default): off under the gain rule (`selection.rule: gain`), filter under the search
      rules. The gain rule measures what rows do to the user's model, and on rows whose labels
      are all right the teacher (overconfident at a few hundred rows) sets apart the rows a
      model learns most from: 16-37% of the rarest class of three churn and credit tables, and
      on diamonds and mlc_churn it threw away 18-21 points of held-out gain
      (`benchmarks/label_check_real.py`, 10 seeds). The search rules screen arms on a few
      dozen rows and keep the filter as the hygiene they were calibrated with.
    reroute: a generated row valid in every way but the rule it was asked for (`violates_rule`)
      goes to the partition it does satisfy (the first DGR in order whose rule holds, else a thin
      segment, else the rest) as an arm of its own (`<dgr>.r<i>.<path>.rerouted`), counted as
      `violates_rule` and as `rerouted` (by partition); false (default) drops it. Off by
      default because no benefit was measured and its rows carry more wrong labels:
      `benchmarks/label_check.py --tables planted,credit` (seed 42, one round) kept no rows in any
      variant (test loss ratio to off 1.000 everywhere), and on the planted table re-routing
      raised the candidates from 35 to 47 rows and their wrong-label share from 9% to 11% (6% to
      14% with the label check), labels written for where the rows were asked for.
    domain_margin: how far past the training rows' observed [min, max] a generated numeric, date
      or timestamp value may fall and still be accepted, as a fraction of that range's width on
      each side (0.1: a column seen from 20 to 70 accepts 15 to 75). Prompts and the JSON schema
      still ask for the observed range. The margin never makes a column that was never negative
      accept negative values (nor the mirror case), and integral columns keep whole-number
      bounds (5.0 is accepted as 5 anywhere). 0 is the strict observed range. Categorical and
      boolean columns get no margin: an unseen category breaks the schema.
    rows_per_real_row: how many rows to ask for per real (non-test) row of a prompted
      partition, over all rounds: the largest volume selection tries (`selection.volumes`) needs
      about 3x. 0 restores the fixed `requests_per_rule` per round.
    max_rows_per_partition / max_generated_rows: cost limits on the rows asked for, per
      partition and per job; both hold. Requests per round: rows / (`iterations` x
      `rows_per_request`), rounded up within the caps. When the job's total would pass its cap,
      the requests it allows are shared in proportion (largest partitions first), and the run
      line names the partitions too small for one request.
    out_of_range: what happens to a value past the margin. "reject" (default): the row is
      rejected as `out_of_domain`, counted under that column. "clip": the value is moved to the
      nearest accepted bound and the row goes on (it must still satisfy its rule); clipped values
      are counted per column. Every run reports rejects per column and reason (run summary,
      the generation stage in the manifest, MLflow `generation_rejected_by_column.*`).
    """

    stage = "generation"

    generator: Literal["llm", "interpolation"] = "llm"
    iterations: int = Field(default=3, ge=1, le=10)
    rows_per_request: int = Field(default=10, ge=1, le=200)
    requests_per_rule: int = Field(default=2, ge=1)
    max_rules: int = Field(default=20, ge=1)
    example_blocks: int = Field(default=10, ge=0)
    example_rows: int = Field(default=8, ge=0)
    own_rows: int = Field(default=8, ge=0)
    prompt_token_budget: int = Field(default=4000, ge=256)
    # Longest cell value a prompt shows (longer ones are cut, with a marker); a categorical column
    # holding longer values or line breaks is free text and never used in rules.
    max_value_chars: int = Field(default=200, ge=16)
    temperature: float = Field(default=0.7, ge=0, le=2)
    mask_categoricals: bool = False
    sensitive_columns: tuple[str, ...] = ()
    refined_rules_per_rule: int = Field(default=2, ge=1, le=20)
    partition_sample_rows: int = Field(default=5000, ge=50)
    tree_max_depth: int = Field(default=4, ge=1, le=12)
    min_arm_rows: int = Field(default=5, ge=1)
    label_check: Literal["auto", "filter", "relabel", "off"] = "auto"
    label_check_confidence: float = Field(default=0.95, gt=0.5, lt=1)
    reroute: bool = False
    history_items: int = Field(default=6, ge=0)
    domain_margin: float = Field(default=0.1, ge=0, le=10, allow_inf_nan=False)
    out_of_range: Literal["reject", "clip"] = "reject"
    rows_per_real_row: float = Field(default=3.0, ge=0, le=100)
    max_rows_per_partition: int = Field(default=2000, ge=1)
    max_generated_rows: int = Field(default=10_000, ge=1)

    @field_validator("label_check", mode="before")
    @classmethod
    def _off_is_off(cls, v: Any) -> Any:
        """YAML reads a bare `off` (in a file or `--set generation.label_check=off`) as false."""
        return "off" if v is False else v


def label_check_for(label_check: str, rule: str) -> str:
    """`generation.label_check` as it applies under `selection.rule` ("auto" resolved)."""
    if label_check != "auto":
        return label_check
    return "off" if rule == "gain" else "filter"


ModelName = Literal["hist_gradient_boosting", "decision_tree", "linear", "logistic"]


class SelectionConfig(_Section):
    """Algorithm 3 (arm selection). `date_spark/selection/search.py` documents the semantics.

    model: the model the user will train downstream on the output, and the one model every stage
      trains to decide (generation's gain, selection's screen and confirmation, the evaluation):
      "hist_gradient_boosting" (default), "decision_tree" (depth `model_max_depth`), "linear"
      (logistic / ridge regression; "logistic" is the same). `date_spark/modeling/models.py`.
    loss: the per-row loss the decisions compare: "auto" (Brier score for classification,
      squared error for regression), "brier", "log_loss" or "squared_error".
    folds: cross-fitting folds over each partition's rows: every row is scored once, by a model
      trained on the other folds plus the candidate rows.
    screen_z: while searching, an arm is added (bandit, forward greedy) or removed (backward
      greedy) only when the paired z of its change on the screening rows exceeds min(screen_z,
      min_z). A screen, not a test: nothing is corrected for the number of arms.
    min_z: the final kept set is confirmed once, on rows the search never saw (the validation
      split), and kept only when its paired z there exceeds min_z (1.645: a one-sided 5% test).
      0 restores the paper's rule: any improvement, in the search and at confirmation.
    confirm: false keeps the searched set without the confirmation (the paper's protocol).
    power: the power the reported minimum detectable effect is computed for.
    rule: how kept rows are decided. "gain" (default, `date_spark/selection/gain.py`): the
      expected gain for one model of `model`'s kind trained on real + kept rows, cross-fitted
      over every non-test row (`folds` x `repeats`), per partition at a few `volumes` (fractions
      of its real rows), shrunk across partitions, kept when the posterior z exceeds `keep_z`.
      "holm": the bandit/greedy `strategy` screened per partition, then confirmed on the
      validation split with Holm's step-down at `min_z` (the rule before issue 20). "paper": the
      same search accepting any improvement, unconfirmed (min_z 0, confirm off).
    keep_z: the gain rule's bar on the posterior z of a partition and of the kept rows together;
      set from `benchmarks/calibration.py` (oracle rows kept, noise rows refused).
    volumes: the gain rule's candidate volumes per partition, as fractions of its real rows.
    repeats: the gain rule's cross-fitting repeats (each a new fold draw and model seed).
    max_rows: the real rows the gain rule scores at most (a seeded sample above it).
    """

    stage = "selection"
    # the one model every stage trains to decide: generation's gain uses it already
    key_stages = {
        "model": "generation",
        "model_max_depth": "generation",
        "loss": "generation",
        "folds": "generation",
    }

    strategy: Literal["bandit", "forward", "backward", "topk"] = "bandit"
    model: ModelName = "hist_gradient_boosting"
    model_max_depth: int | None = Field(default=None, ge=1)
    loss: Literal["auto", "brier", "log_loss", "squared_error"] = "auto"
    folds: int = Field(default=5, ge=2, le=20)
    alpha: float = Field(default=0.8, ge=0, le=1)
    budget_rows: int = Field(default=100, ge=1)
    ucb_c: float = Field(default=2.0, ge=0)
    top_k: int = Field(default=5, ge=1)
    max_steps: int = Field(default=200, ge=1)
    screen_z: float = Field(default=1.0, ge=0)
    min_z: float = Field(default=1.645, ge=0)
    confirm: bool = True
    power: float = Field(default=0.8, gt=0, lt=1)
    rule: Literal["gain", "holm", "paper"] = "gain"
    keep_z: float = Field(default=1.5, ge=0)
    volumes: tuple[float, ...] = (0.3, 1.0, 3.0)
    repeats: int = Field(default=2, ge=1, le=10)
    max_rows: int = Field(default=20_000, ge=100)

    @field_validator("volumes")
    @classmethod
    def _positive_volumes(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not x > 0 for x in v):
            raise ValueError("volumes must be positive fractions of a partition's rows, e.g. [1]")
        return tuple(sorted(set(v)))


class EvaluationConfig(_Section):
    """The evaluation on the test split (`date_spark/evaluation/utility.py`) and of the kept rows
    (`date_spark/evaluation/`).

    model: the model trained for the utility figures; null = `selection.model`.
    bootstrap: paired bootstrap resamples of the test rows for each gain's interval.
    confidence: the intervals' level.
    max_rows: cap on the training and test rows collected (seeded samples above it).
    segments: the segments you care about, name -> rule text (the rule grammar, e.g.
        `"age >= 60 and plan in ('basic')"`): each gets the global model's loss on its own test
        rows trained with vs without the kept rows, with its interval, in the summary and report.
    """

    stage = "evaluation"

    model: ModelName | None = None
    bootstrap: int = Field(default=2000, ge=100)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    max_rows: int = Field(default=50_000, ge=100)
    segments: dict[str, str] = Field(default_factory=dict)


class LocalModelConfig(_Section):
    # the model and its context window shape the rows; its thread count, port and start-up wait
    # do not
    key_stages = {
        "model_path": "generation",
        "model_alias": "generation",
        "n_ctx": "generation",
        "n_threads": NEUTRAL,
        "port": NEUTRAL,
        "startup_timeout_s": NEUTRAL,
    }

    model_path: str | None = None
    model_alias: str = "smollm2"
    n_ctx: int = Field(default=2048, ge=256)
    # One thread: measured 2 s per request vs 35-80 s with two on a busy 2-core machine.
    n_threads: int = Field(default=1, ge=1)
    port: int = Field(default=0, ge=0, le=65535)
    startup_timeout_s: float = Field(default=120.0, gt=0)


class ModelPrice(_Section):
    prompt_per_1k: float = Field(default=0.0, ge=0)
    completion_per_1k: float = Field(default=0.0, ge=0)


class LlmConfig(_Section):
    # What is asked and how it is answered shapes the rows (generation); how to reach the
    # endpoint, how fast to go, what it may cost and the response cache do not.
    key_stages = {
        "provider": "generation",
        "model": "generation",
        "api_version": "generation",
        "structured_output": "generation",
        "max_tokens": "generation",
        "seed": "generation",
        "base_url": NEUTRAL,
        "api_key_env": NEUTRAL,
        "timeout_s": NEUTRAL,
        "max_retries": NEUTRAL,
        "backoff_base_s": NEUTRAL,
        "backoff_max_s": NEUTRAL,
        "concurrency_per_task": NEUTRAL,
        "max_tasks": NEUTRAL,
        "requests_per_minute": NEUTRAL,
        "tokens_per_minute": NEUTRAL,
        "max_total_tokens": NEUTRAL,
        "max_cost": NEUTRAL,
        "prices": NEUTRAL,
        "cache_path": NEUTRAL,
    }

    provider: Literal["local", "openai", "azure"] = "local"
    base_url: str | None = None
    model: str = "smollm2"
    api_key_env: str | None = "OPENAI_API_KEY"
    api_version: str | None = None
    structured_output: Literal["auto", "json_schema", "json_object", "vllm", "none"] = "auto"
    max_tokens: int = Field(default=1024, ge=16)
    # Seconds one request may take. The embedded SmolLM2 took up to 130 s for one request on a
    # busy 2-core machine (benchmarks/local_timeout.py); 390 s covers that three times over. On
    # the local provider a timeout is not retried (see llm/engine.py): raise this for a bigger
    # model rather than counting on retries.
    timeout_s: float = Field(default=390.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    concurrency_per_task: int = Field(default=4, ge=1)
    # Spark tasks (independent API clients) the gateway spreads requests over; rate and budget are
    # divided among them. The gateway uses no more than the session runs at once (`local[N]`:
    # N), so a task never waits for a core while holding its share of the rate.
    max_tasks: int = Field(default=8, ge=1)
    # Rate limits for the whole stage (divided among its tasks). None: a hosted API's usual quota
    # for a remote endpoint (600 requests and 1,000,000 tokens a minute, `llm/limits.py`), and no
    # limit for one on this machine (localhost, 127.0.0.0/8, ::1: vLLM, llama.cpp, the embedded
    # model), which has no shared quota to protect; a 300-row job waited 22 s of its 63 on the
    # remote default with an endpoint that answers at once. A number limits any endpoint (a local
    # proxy to a hosted API). 429s slow the tasks down either way (`llm/limits.py`).
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    max_total_tokens: int | None = Field(default=None, ge=1)
    max_cost: float | None = Field(default=None, gt=0)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    cache_path: str | None = "date_spark_runs/llm_cache"
    seed: int | None = 0
    local: LocalModelConfig = Field(default_factory=LocalModelConfig)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and looks_like_key(v):
            raise ValueError(
                "this looks like a key itself, pasted where a variable name belongs; put the key "
                "in an environment variable (export OPENAI_API_KEY=...) and set llm.api_key_env "
                "to that variable's NAME"
            )
        if v is not None and (not v or not v.replace("_", "").isalnum() or v[0].isdigit()):
            raise ValueError(
                "must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key"
            )
        return v


class OutputConfig(_Section):
    stage = "output"
    key_stages = {"runs_dir": NEUTRAL}  # where runs live

    path: str | None = None
    table: str | None = None
    format: Literal["parquet"] = "parquet"
    mode: Literal["synthetic", "augmented"] = "synthetic"
    run_date: _dt.date = Field(default_factory=_dt.date.today)
    runs_dir: str = "date_spark_runs"

    @model_validator(mode="after")
    def _one_sink(self) -> OutputConfig:
        if self.path and self.table:
            raise ValueError("set output.path or output.table, not both")
        return self


class TrackingConfig(_Section):
    stage = NEUTRAL

    enabled: bool = True
    uri: str | None = None
    experiment: str = "date-spark"


class SparkConfig(_Section):
    stage = NEUTRAL

    master: str | None = "local[2]"
    app_name: str = "date-spark"
    conf: dict[str, str] = Field(default_factory=dict)


class SplitConfig(_Section):
    stage = "prepare"

    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    validation_fraction: float = Field(default=0.25, gt=0, lt=1)


class Config(_Section):
    key_stages = {"seed": "prepare"}

    seed: int = 42
    input: InputConfig = Field(default_factory=InputConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    llm: LlmConfig = Field(default_factory=LlmConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)

    @property
    def uses_embedded_model(self) -> bool:
        """True when generation asks the embedded local model (`llm.local`), which the run starts
        itself: the LLM generator with `llm.provider: local` and no `llm.base_url` (a URL points
        `local` at a llama.cpp server already running)."""
        return (
            self.generation.generator == "llm"
            and self.llm.provider == "local"
            and not self.llm.base_url
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """Return a new config with dotted-key overrides applied (the model itself is frozen)."""
        data = self.model_dump(mode="json")
        for key, value in overrides.items():
            _set_dotted(data, key, value)
        return _validate(data, source="overrides")

    def redacted(self) -> dict[str, Any]:
        """The resolved config as plain data; it never holds secrets, only variable names, and
        credentials in any URL (`llm.base_url`, `tracking.uri`, paths) are masked (`***`)."""
        data: dict[str, Any] = mask(self.model_dump(mode="json"))
        return data

    def flat(self) -> dict[str, str]:
        """Flattened `section.key -> str` view (`flatten` of `redacted`), for MLflow params."""
        return {
            k: v if isinstance(v, str) else json.dumps(v)
            for k, v in flatten(self.redacted()).items()
        }


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (`{"a": {"b": 1}}` -> `{"a.b": 1}`), values
    as they are; an empty mapping is a value of its own. The one flattening of config data: the
    MLflow params (`Config.flat`) and the resume's comparison of configs (`tracking/runs.py`)."""
    if isinstance(data, Mapping) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def keys_by_stage(section: type[_Section] = Config, prefix: str = "") -> dict[str, list[str]]:
    """Stage (or NEUTRAL) -> the config keys whose changes reach it, from the sections' `stage`
    and `key_stages`: `section.` for a section's own stage (every key below it), `section.key` for
    a key of another stage. Raises TypeError naming a key nothing classifies."""
    out: dict[str, list[str]] = {}
    unknown = set(section.key_stages) - set(section.model_fields)
    if unknown:
        raise TypeError(f"{section.__name__}.key_stages names no key of it: {sorted(unknown)}")
    if section.stage is not None and prefix:
        out.setdefault(section.stage, []).append(prefix)
    for name, field in section.model_fields.items():
        key = prefix + name
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, _Section):
            for stage, keys in keys_by_stage(sub, key + ".").items():
                out.setdefault(stage, []).extend(keys)
            continue
        own = section.key_stages.get(name)
        if own is None and (section.stage is None or not prefix):
            raise TypeError(
                f"config key {key!r} shapes no stage: add it to {section.__name__}.key_stages "
                f"(a stage, or NEUTRAL when it never changes a result)"
            )
        if own is not None and (own != section.stage or not prefix):
            out.setdefault(own, []).append(key)  # else the section's prefix holds it
    return out


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = [p for p in key.split(".") if p]
    if not parts:
        raise ConfigError(f"empty override key {key!r}; use section.key=value")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(
                f"unknown config key {'.'.join(parts[: i + 1])!r} in override {key!r}; "
                f"see `date-spark validate-config` for the valid keys"
            )
        if node[part] is None:
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(
            f"config key {'.'.join(parts[:-1])!r} is not a section; cannot set {key!r}"
        )
    node[parts[-1]] = value


def _format_validation_error(err: ValidationError, source: str) -> str:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            leaf = str(e["loc"][-1]).lower()
            if leaf in _SECRET_KEYS:
                problems.append(
                    f"{loc}: secrets are not accepted in config; put the key in an environment "
                    f"variable and set llm.api_key_env to its name"
                )
            else:
                problems.append(f"unknown config key {loc!r}; remove it or check its spelling")
            continue
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "a mapping"
        if isinstance(value, str) and (
            str(e["loc"][-1]) == "api_key_env" or str(e["loc"][-1]).lower() in _SECRET_KEYS
        ):
            shown = hint(value)  # never the pasted key itself
        elif isinstance(value, str):
            shown = repr(mask(value))
        problems.append(f"{loc}={shown}: {e['msg']}")
    return f"invalid config ({source}): " + "; ".join(problems)


def _validate(data: Any, source: str) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config ({source}): the top level must be a mapping of sections")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; pass an existing YAML file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise ConfigError(f"malformed YAML in {str(p)!r}{where}: {problem}; fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(p)!r} must hold a mapping of sections at the top level"
        )
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """Parse one `section.key=value`; the value is read as a YAML scalar or flow collection."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            key = ".".join(p.lower() for p in name[len(ENV_PREFIX) :].split("__"))
            _, value = parse_override(f"{key}={raw}")
            out[key] = value
    return out


def load_config(
    paths: Sequence[str | Path] = (),
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    base: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve the job's config; raises ConfigError with one line naming the key and the fix.
    `base` (a saved config, for `--resume`) replaces the embedded defaults as the lowest layer,
    so only what the user states again on top of it can differ from the saved run."""
    data: dict[str, Any] = dict(base or {})
    for p in paths:
        data = _deep_merge(data, read_yaml(p))
    base_cfg = _validate(data, source=", ".join(str(p) for p in paths) or "defaults")
    layered: dict[str, Any] = dict(env_overrides(environ))
    for item in overrides:
        key, value = parse_override(item)
        layered[key] = value
    return base_cfg.with_overrides(layered) if layered else base_cfg


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.redacted(), sort_keys=False)
