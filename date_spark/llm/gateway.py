"""Spark entry point of the LLM gateway: a DataFrame of requests in, a DataFrame of results out.

Input columns: `request_id string`, `messages string` (JSON list of chat messages), `row_schema
string` (`RowSchema.to_json()`), optionally `temperature double`, `seed bigint`, `max_tokens int`
per request (they override `llm.*`). Output: one row per request, `OUTPUT_SCHEMA` plus any
`keep_columns` carried over from the input. `rows` holds the valid rows (JSON list); `off_rule`
the rows valid in every way but the request's rule (counted under `violates_rule`), so a caller can
re-route them to the rule they do satisfy instead of losing them.

`complete()` is lazy (a `mapInPandas` over `num_tasks` range partitions of `request_id`); each task
builds its own client, cache, rate limiter and budget share (see engine.py, limits.py, budget.py).
Only the DataFrame API is used, so it runs on Spark Connect and Spark 3.5. Re-evaluating the
returned DataFrame re-runs the tasks; with `llm.cache_path` set that makes no new calls but the
second evaluation reports cache hits, so call `run()` - it materialises the result once (one Spark
job for the calls), summarises it on the driver, charges the job's `Budget` and raises
`EndpointError` when nothing got through.

A few requests are sent from the driver instead. When `run()` gets a frame `requests_frame` built
(its requests are on the driver already) that is small enough for `placement.on_driver`, the same
task body runs on the driver: the requests sorted by id and cut into the same number of ranges,
each range sent by its own engine in its own thread, so the endpoint sees the same concurrency and
rate shares, without a Spark job, Python worker starts and two Arrow trips per call round (a
300-row job's generation ran 5 Spark jobs instead of 18: `benchmarks/results/job_cost-small-
against.json`). `tests/llm/test_llm_gateway_spark.py` runs both paths on the same requests and
compares the results. Either way `run()` returns one result per request in the order the frame
listed them, whatever the number of tasks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from date_spark.config import LlmConfig
from date_spark.errors import ConfigError, DateSparkError, EndpointError, InputError
from date_spark.llm.budget import Budget, check_prices
from date_spark.llm.client import (
    effective_base_url,
    endpoint_id,
    key_required,
    read_api_key,
    resolve_dialect,
)
from date_spark.llm.engine import LlmRequest, LlmResult, TaskEngine, TaskPlan
from date_spark.llm.rows import RowSchema
from date_spark.llm.validation import REASONS
from date_spark.runtime.placement import on_driver, through_arrow
from date_spark.runtime.spark import task_slots, to_pandas
from date_spark.secrets import mask_url

log = logging.getLogger("date_spark.llm")

REQUIRED = ("request_id", "messages", "row_schema")
OPTIONAL = {"temperature": T.DoubleType(), "seed": T.LongType(), "max_tokens": T.IntegerType()}
OUTPUT_SCHEMA = T.StructType(
    [
        T.StructField("request_id", T.StringType()),
        T.StructField("status", T.StringType()),
        T.StructField("rows", T.StringType()),
        T.StructField("off_rule", T.StringType()),
        T.StructField("n_valid", T.IntegerType()),
        T.StructField("rejected", T.StringType()),
        T.StructField("rejected_by_column", T.StringType()),
        T.StructField("clipped", T.StringType()),
        T.StructField("calls", T.IntegerType()),
        T.StructField("retries", T.IntegerType()),
        T.StructField("cache_hit", T.BooleanType()),
        T.StructField("prompt_tokens", T.LongType()),
        T.StructField("completion_tokens", T.LongType()),
        T.StructField("cost", T.DoubleType()),
        T.StructField("latency_s", T.DoubleType()),
        T.StructField("finish_reason", T.StringType()),
        T.StructField("error", T.StringType()),
    ]
)
_OUT_COLS = [f.name for f in OUTPUT_SCHEMA.fields]


# ----------------------------------------------------------------------------------------------
# Executor side
# ----------------------------------------------------------------------------------------------


def _result_record(r: LlmResult) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "status": r.status,
        "rows": json.dumps(r.rows, default=str),
        "off_rule": json.dumps(r.off_rule, default=str),
        "n_valid": r.n_valid,
        "rejected": json.dumps(dict(sorted(r.rejected.items()))),
        "rejected_by_column": json.dumps(r.rejected_by_column, sort_keys=True),
        "clipped": json.dumps(r.clipped, sort_keys=True),
        "calls": r.calls,
        "retries": r.retries,
        "cache_hit": r.cache_hit,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost": float(r.cost),
        "latency_s": float(r.latency_s),
        "finish_reason": r.finish_reason,
        "error": r.error,
    }


def _opt(value: Any, cast: type) -> Any:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    return cast(value)


def _parse_requests(
    pdf: pd.DataFrame, schemas: dict[str, RowSchema]
) -> tuple[list[LlmRequest], dict[int, LlmResult]]:
    """Requests the engine can send, and ready-made results for malformed ones (by position)."""
    ok: list[LlmRequest] = []
    bad: dict[int, LlmResult] = {}
    for i, rec in enumerate(pdf.to_dict("records")):
        rid = str(rec.get("request_id"))
        try:
            messages = json.loads(rec["messages"])
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise ValueError("messages must be a JSON list of {role, content} objects")
            raw_schema = rec["row_schema"]
            schema = schemas.get(raw_schema)
            if schema is None:
                schema = schemas[raw_schema] = RowSchema.from_json(raw_schema)
            ok.append(
                LlmRequest(
                    rid,
                    messages,
                    schema,
                    temperature=_opt(rec.get("temperature"), float),
                    seed=_opt(rec.get("seed"), int),
                    max_tokens=_opt(rec.get("max_tokens"), int),
                )
            )
        except Exception as err:
            bad[i] = LlmResult(rid, "invalid_request", error=f"{type(err).__name__}: {err}"[:500])
    return ok, bad


@contextlib.contextmanager
def _task_log(directory: str | None) -> Iterator[None]:
    """Optional DEBUG log file per task attempt (gateway, openai and HTTP client loggers)."""
    if not directory:
        yield
        return
    from pyspark import TaskContext

    ctx = TaskContext.get()
    tag = f"{ctx.partitionId()}-{ctx.attemptNumber()}" if ctx else str(os.getpid())
    os.makedirs(directory, exist_ok=True)
    handler = logging.FileHandler(os.path.join(directory, f"gateway-task-{tag}.log"))
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        handler.close()


# Test hook, off the public signatures: within `fail_one_task_attempt(marker)`, gateway jobs built
# on the driver fail one task attempt after its calls were made and cached (the marker file makes
# it once), so a test can show that Spark's retry is served from the cache. The marker path is
# passed to the task as a plain string argument of its body, like every other task input.
_FAIL_ONCE_MARKER: list[str | None] = [None]


@contextlib.contextmanager
def fail_one_task_attempt(marker: str) -> Iterator[None]:
    """For tests: gateway jobs built inside fail one task attempt once (see above)."""
    _FAIL_ONCE_MARKER[0] = marker
    try:
        yield
    finally:
        _FAIL_ONCE_MARKER[0] = None


def _partition_fn(
    plan: TaskPlan,
    keep: Sequence[str],
    debug_log_dir: str | None,
    fail_once_marker: str | None,
) -> Any:
    """The mapInPandas body. Only `plan` (no secrets) and plain strings are captured."""

    def run_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        with _task_log(debug_log_dir):
            engine: TaskEngine | None = None
            setup_error: str | None = None
            try:
                engine = TaskEngine(plan)
            except DateSparkError as err:
                setup_error = str(err)
            schemas: dict[str, RowSchema] = {}
            try:
                for pdf in batches:
                    reqs, bad = _parse_requests(pdf, schemas)
                    if engine is not None:
                        done = iter(engine.run(reqs))
                    else:
                        done = iter(
                            LlmResult(r.request_id, "failed", error=setup_error) for r in reqs
                        )
                    records = [
                        _result_record(bad[i] if i in bad else next(done)) for i in range(len(pdf))
                    ]
                    out = pd.DataFrame.from_records(records, columns=_OUT_COLS)
                    for c in keep:
                        out[c] = pdf[c].to_numpy()
                    yield out
                if engine is not None:
                    cache = engine.cache
                    log.info(
                        "gateway task done: cache hits=%d misses=%d writes=%d, concurrency "
                        "limit=%.1f (decreased %d times)",
                        cache.hits, cache.misses, cache.writes, engine.concurrency.limit,
                        engine.concurrency.decreases,
                    )  # fmt: skip
            finally:
                if engine is not None:
                    engine.close()
            if fail_once_marker:
                # Test hook: fail this attempt once, after its calls were made and cached, so the
                # Spark retry must be served from the cache.
                try:
                    fd = os.open(fail_once_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return
                os.close(fd)
                raise RuntimeError("injected task failure (fail_once_marker)")

    return run_partition


# ----------------------------------------------------------------------------------------------
# Driver side
# ----------------------------------------------------------------------------------------------


def _check_input(requests: DataFrame, keep: Sequence[str]) -> list[str]:
    types = dict(requests.dtypes)
    missing = [c for c in REQUIRED if c not in types]
    if missing:
        raise InputError(
            f"the requests DataFrame lacks {missing}; it needs request_id, messages (JSON list "
            f"of chat messages) and row_schema (RowSchema.to_json())"
        )
    for c in REQUIRED:
        if types[c] != "string":
            raise InputError(f"requests column {c!r} is {types[c]}; cast it to string")
    unknown = [c for c in keep if c not in types]
    if unknown:
        raise InputError(f"keep_columns {unknown} are not columns of the requests DataFrame")
    clash = [c for c in keep if c in _OUT_COLS]
    if clash:
        raise InputError(f"keep_columns {clash} clash with gateway output columns; rename them")
    return [c for c in OPTIONAL if c in types]


def plan_stage(
    cfg: LlmConfig,
    *,
    base_url: str | None = None,
    num_tasks: int = 1,
    budget: Budget | None = None,
) -> TaskPlan:
    """Everything tasks need, decided once on the driver. Fails fast on a missing key or price."""
    url = effective_base_url(cfg, base_url)
    if key_required(cfg):
        read_api_key(cfg)  # ConfigError naming the variable, before any task starts
    check_prices(cfg)
    budget = budget or Budget.from_config(cfg)
    tokens, cost = budget.shares(num_tasks)
    return TaskPlan(
        cfg=cfg,
        base_url=url,
        endpoint=endpoint_id(cfg, url),
        dialect=resolve_dialect(cfg, url),
        num_tasks=num_tasks,
        token_share=tokens,
        cost_share=cost,
        concurrency=1 if cfg.provider == "local" else None,
        one_slot=cfg.provider == "local",
    )


def complete(
    requests: DataFrame,
    cfg: LlmConfig,
    *,
    base_url: str | None = None,
    num_tasks: int | None = None,
    budget: Budget | None = None,
    keep_columns: Sequence[str] = (),
    debug_log_dir: str | None = None,
) -> DataFrame:
    """Send every request through the gateway; lazy `DataFrame -> DataFrame`.

    `num_tasks` defaults to min(#requests, llm.max_tasks, the tasks the session runs at once) (1
    for the embedded local model, which serves one request at a time); rate limits and the
    remaining `budget` are split evenly among the tasks. `debug_log_dir` writes a DEBUG log per
    task attempt (never containing the key)."""
    keep = list(keep_columns)
    optional = _check_input(requests, keep)
    n_tasks = _num_tasks(requests, cfg, num_tasks)
    plan = plan_stage(cfg, base_url=base_url, num_tasks=n_tasks, budget=budget)
    cols = [F.col(c) for c in REQUIRED] + [F.col(c).cast(OPTIONAL[c]) for c in optional]
    cols += [F.col(c) for c in keep]
    # Range partitioning on request_id: balanced tasks and, for a given input, the same requests
    # in the same task on every attempt.
    staged = requests.select(*cols).repartitionByRange(n_tasks, "request_id")
    fn = _partition_fn(plan, keep, debug_log_dir, _FAIL_ONCE_MARKER[0])
    return staged.mapInPandas(fn, _out_schema(requests, keep))


def _num_tasks(requests: DataFrame, cfg: LlmConfig, num_tasks: int | None) -> int:
    """`num_tasks`, or by default min(#requests, llm.max_tasks, the tasks the session runs at
    once); 1 for the embedded local model."""
    if num_tasks is None:
        if cfg.provider == "local":
            return 1
        known = _known(requests)
        n = len(known) if known is not None else int(requests.count())
        # Tasks that wait for a free core would hold their share of the rate limit idle:
        # no more tasks than run at once (on local[2], 8 tasks ran in 4 waves at a quarter
        # of the configured rate; a 300-row job spent 30 s of its 42 s there).
        slots = task_slots(requests.sparkSession) or cfg.max_tasks
        num_tasks = max(1, min(n, cfg.max_tasks, slots))
    if num_tasks < 1:
        raise ConfigError(f"num_tasks must be at least 1, got {num_tasks}")
    return num_tasks


def _out_schema(requests: DataFrame, keep: Sequence[str]) -> T.StructType:
    return T.StructType(OUTPUT_SCHEMA.fields + [requests.schema[c] for c in keep])


def _complete_on_driver(
    local: pd.DataFrame, plan: TaskPlan, keep: Sequence[str], schema: T.StructType
) -> pd.DataFrame:
    """What `complete` + `toPandas()` return, with the tasks run on the driver: the requests
    sorted by id and cut into `plan.num_tasks` ranges, each range sent by its own engine in its
    own thread, so the endpoint sees the concurrency and rate shares the Spark tasks would give
    it (module doc)."""
    cols = [*REQUIRED, *[c for c in OPTIONAL if c in local.columns], *keep]
    staged = local[cols].sort_values("request_id", kind="stable").reset_index(drop=True)
    ranges = [r for r in np.array_split(np.arange(len(staged)), plan.num_tasks) if len(r)]
    fn = _partition_fn(plan, keep, None, None)

    def task(rows: np.ndarray) -> pd.DataFrame:
        return pd.concat(list(fn(iter([staged.iloc[rows].reset_index(drop=True)]))))

    with ThreadPoolExecutor(max_workers=max(1, len(ranges)), thread_name_prefix="llm-task") as ex:
        parts = list(ex.map(task, ranges))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_OUT_COLS)
    return through_arrow(out, schema, "UTC")


# ----------------------------------------------------------------------------------------------
# Accounting
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayStats:
    requests: int = 0
    ok: int = 0
    failed: int = 0
    budget_exhausted_requests: int = 0
    invalid_requests: int = 0
    calls: int = 0
    retries: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    n_valid: int = 0
    truncated: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    # column -> reason -> rejected rows that failed on that column (a row may fail on several)
    rejected_by_column: dict[str, dict[str, int]] = field(default_factory=dict)
    clipped: dict[str, int] = field(default_factory=dict)  # column -> values clipped, kept rows
    first_error: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def budget_exhausted(self) -> bool:
        return self.budget_exhausted_requests > 0

    @property
    def all_failed(self) -> bool:
        """Every request that was meant to reach the endpoint failed (a dead or wrong endpoint)."""
        return self.requests > 0 and self.failed > 0 and self.ok == 0

    def raise_if_dead(self, base_url: str | None = None) -> None:
        if not self.all_failed:
            return
        where = f" at {mask_url(base_url)}" if base_url else ""
        first = self.first_error or ""
        # A timeout on the local server already names its fix; that server is up (it was
        # busy), so the URL and key hint would only mislead.
        fix = (
            ""
            if "raise llm.timeout_s" in first
            else "; check that the server is running and llm.base_url / llm.provider / "
            "llm.api_key_env are right"
        )
        raise EndpointError(
            f"all {self.failed} LLM requests to the endpoint{where} failed: {first}{fix}"
        )

    def as_metrics(self, prefix: str = "llm_") -> dict[str, float]:
        """Numeric view for MLflow (`mlflow.log_metrics`)."""
        out: dict[str, float] = {}
        for k, v in asdict(self).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[prefix + k] = float(v)
        for reason, n in self.rejected.items():
            out[f"{prefix}rejected_{reason}"] = float(n)
        for col, reasons in self.rejected_by_column.items():
            for reason, n in reasons.items():
                out[f"{prefix}rejected_by_column.{col}.{reason}"] = float(n)
        for col, n in self.clipped.items():
            out[f"{prefix}clipped.{col}"] = float(n)
        out[prefix + "budget_exhausted"] = float(self.budget_exhausted)
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def summarize_pandas(pdf: pd.DataFrame) -> GatewayStats:
    """The same stats as `summarize`, from a result already on the driver (what `run()` holds),
    without another Spark job. Percentiles are exact (`percentile_approx` agrees on small data)."""
    if pdf.empty:
        return GatewayStats()
    status = pdf["status"]
    called = pdf["calls"] > 0
    lat = pdf.loc[called, "latency_s"].to_numpy(dtype=float)
    rej: dict[str, int] = {}
    for text in pdf["rejected"]:
        for k, v in json.loads(text or "{}").items():
            rej[k] = rej.get(k, 0) + int(v)
    by_col: dict[str, dict[str, int]] = {}
    for text in pdf["rejected_by_column"]:
        for col, reasons in json.loads(text or "{}").items():
            mine = by_col.setdefault(col, {})
            for k, v in reasons.items():
                mine[k] = mine.get(k, 0) + int(v)
    clipped: dict[str, int] = {}
    for text in pdf["clipped"]:
        for col, v in json.loads(text or "{}").items():
            clipped[col] = clipped.get(col, 0) + int(v)
    failed_errors = sorted(e for e in pdf.loc[status == "failed", "error"] if isinstance(e, str))

    def pct(q: float) -> float | None:
        return float(np.percentile(lat, q * 100, method="inverted_cdf")) if len(lat) else None

    return GatewayStats(
        requests=len(pdf),
        ok=int((status == "ok").sum()),
        failed=int((status == "failed").sum()),
        budget_exhausted_requests=int((status == "budget_exhausted").sum()),
        invalid_requests=int((status == "invalid_request").sum()),
        calls=int(pdf["calls"].sum()),
        retries=int(pdf["retries"].sum()),
        cache_hits=int(pdf["cache_hit"].sum()),
        cache_misses=int((~pdf["cache_hit"].astype(bool) & (status != "invalid_request")).sum()),
        prompt_tokens=int(pdf["prompt_tokens"].sum()),
        completion_tokens=int(pdf["completion_tokens"].sum()),
        cost=float(pdf["cost"].sum()),
        latency_p50_s=pct(0.5),
        latency_p95_s=pct(0.95),
        n_valid=int(pdf["n_valid"].sum()),
        truncated=int((pdf["finish_reason"] == "length").sum()),
        rejected={r: rej[r] for r in REASONS if rej.get(r)},
        rejected_by_column=_sorted_table(by_col),
        clipped=dict(sorted(clipped.items())),
        first_error=failed_errors[0] if failed_errors else None,
    )


def _sorted_table(table: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Columns in name order, reasons in `REASONS` order; zero counts dropped."""
    order = {r: i for i, r in enumerate(REASONS)}
    out = {}
    for col in sorted(table):
        reasons = {
            r: n for r, n in sorted(table[col].items(), key=lambda kv: order.get(kv[0], 99)) if n
        }
        if reasons:
            out[col] = reasons
    return out


def summarize(result: DataFrame) -> GatewayStats:
    """Stats of a gateway result in two Spark aggregations (the totals, then the per-column
    rejects and clips, whose keys are not known in advance). Summarise a materialised result (the
    DataFrame `run()` returns, or one you persisted/wrote): summarising the lazy `complete()`
    output re-runs the tasks, which then report cache hits instead of the calls they made."""
    rejected = F.from_json(F.col("rejected"), T.MapType(T.StringType(), T.IntegerType()))
    status = F.col("status")
    called = F.col("calls") > 0

    def count_if(cond: Any) -> Any:
        return F.sum(F.when(cond, 1).otherwise(0))

    aggs = [
        F.count(F.lit(1)).alias("requests"),
        count_if(status == "ok").alias("ok"),
        count_if(status == "failed").alias("failed"),
        count_if(status == "budget_exhausted").alias("budget_exhausted_requests"),
        count_if(status == "invalid_request").alias("invalid_requests"),
        F.sum("calls").alias("calls"),
        F.sum("retries").alias("retries"),
        count_if(F.col("cache_hit")).alias("cache_hits"),
        count_if(~F.col("cache_hit") & (status != "invalid_request")).alias("cache_misses"),
        F.sum("prompt_tokens").alias("prompt_tokens"),
        F.sum("completion_tokens").alias("completion_tokens"),
        F.sum("cost").alias("cost"),
        F.percentile_approx(F.when(called, F.col("latency_s")), [0.5, 0.95], 10000).alias("lat"),
        F.sum("n_valid").alias("n_valid"),
        count_if(F.col("finish_reason") == "length").alias("truncated"),
        F.min(F.when(status == "failed", F.col("error"))).alias("first_error"),
    ]
    aggs += [F.sum(F.coalesce(rejected[r], F.lit(0))).alias(f"rej_{r}") for r in REASONS]
    row = result.agg(*aggs).first()
    assert row is not None
    d = row.asDict()
    lat = d.pop("lat") or [None, None]
    rej = {r: int(d.pop(f"rej_{r}") or 0) for r in REASONS}
    by_col, clipped = _column_counts(result)
    return GatewayStats(
        requests=int(d["requests"] or 0),
        ok=int(d["ok"] or 0),
        failed=int(d["failed"] or 0),
        budget_exhausted_requests=int(d["budget_exhausted_requests"] or 0),
        invalid_requests=int(d["invalid_requests"] or 0),
        calls=int(d["calls"] or 0),
        retries=int(d["retries"] or 0),
        cache_hits=int(d["cache_hits"] or 0),
        cache_misses=int(d["cache_misses"] or 0),
        prompt_tokens=int(d["prompt_tokens"] or 0),
        completion_tokens=int(d["completion_tokens"] or 0),
        cost=float(d["cost"] or 0.0),
        latency_p50_s=None if lat[0] is None else float(lat[0]),
        latency_p95_s=None if lat[1] is None else float(lat[1]),
        n_valid=int(d["n_valid"] or 0),
        truncated=int(d["truncated"] or 0),
        rejected={k: v for k, v in rej.items() if v},
        rejected_by_column=by_col,
        clipped=clipped,
        first_error=d["first_error"],
    )


def _column_counts(result: DataFrame) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Per-column rejects and clips summed over requests: one aggregation over the exploded
    maps (a few entries per request; the result is columns x reasons, small)."""
    by_col_t = T.MapType(T.StringType(), T.MapType(T.StringType(), T.LongType()))
    clip_t = T.MapType(T.StringType(), T.LongType())
    rejects = (
        result.select(F.explode(F.from_json(F.col("rejected_by_column"), by_col_t)))
        .select(F.col("key").alias("column"), F.explode(F.col("value")))
        .select("column", F.col("key").alias("reason"), F.col("value").alias("n"))
    )
    clips = result.select(F.explode(F.from_json(F.col("clipped"), clip_t))).select(
        F.col("key").alias("column"), F.lit("clipped").alias("reason"), F.col("value").alias("n")
    )
    table: dict[str, dict[str, int]] = {}
    clipped: dict[str, int] = {}
    for row in rejects.unionByName(clips).groupBy("column", "reason").agg(F.sum("n")).collect():
        col, reason, n = row[0], row[1], int(row[2] or 0)
        if reason == "clipped":
            clipped[col] = n
        else:
            table.setdefault(col, {})[reason] = n
    return _sorted_table(table), {c: n for c, n in sorted(clipped.items()) if n}


@dataclass
class GatewayRun:
    result: DataFrame  # materialised: evaluating it again makes no calls and changes no counts
    stats: GatewayStats
    pandas: pd.DataFrame


def run(
    requests: DataFrame,
    cfg: LlmConfig,
    *,
    base_url: str | None = None,
    num_tasks: int | None = None,
    budget: Budget | None = None,
    keep_columns: Sequence[str] = (),
    check_endpoint: bool = True,
    debug_log_dir: str | None = None,
) -> GatewayRun:
    """Run the stage once (one Spark job for the calls, none when they are sent from the driver:
    module doc), then summarise and charge `budget`. Raises EndpointError (one line, naming the
    URL) when every request failed."""
    budget = budget if budget is not None else Budget.from_config(cfg)
    local = _known(requests)
    if local is not None and _on_driver(local, debug_log_dir):
        keep = list(keep_columns)
        _check_input(requests, keep)
        n_tasks = _num_tasks(requests, cfg, num_tasks)
        plan = plan_stage(cfg, base_url=base_url, num_tasks=n_tasks, budget=budget)
        schema = _out_schema(requests, keep)
        pdf = _complete_on_driver(local, plan, keep, schema)
    else:
        lazy = complete(
            requests,
            cfg,
            base_url=base_url,
            num_tasks=num_tasks,
            budget=budget,
            keep_columns=keep_columns,
            debug_log_dir=debug_log_dir,
        )
        pdf = to_pandas(lazy)
        schema = lazy.schema
    if local is not None:  # one result per request, in the order they were asked
        pos = {rid: i for i, rid in reversed(list(enumerate(local["request_id"])))}
        order = np.argsort(pdf["request_id"].map(pos).to_numpy(), kind="stable")
        pdf = pdf.iloc[order].reset_index(drop=True)
    result = requests.sparkSession.createDataFrame(pdf, schema=schema)
    stats = summarize_pandas(pdf)
    budget.charge(stats.total_tokens, stats.cost, stats.budget_exhausted)
    if stats.budget_exhausted:
        log.warning(
            "LLM budget exhausted: %d requests were not sent (spent %d tokens, cost %.4f)",
            stats.budget_exhausted_requests, budget.spent_tokens, budget.spent_cost,
        )  # fmt: skip
    if check_endpoint:
        stats.raise_if_dead(effective_base_url(cfg, base_url))
    if stats.failed and not stats.all_failed:
        # Some requests failed, the stage goes on with the others: say so, once, with the fix.
        log.warning(
            "%d of %d LLM requests failed; the stage continues with the other replies. First "
            "error: %s",
            stats.failed, stats.requests, stats.first_error,
        )  # fmt: skip
    return GatewayRun(result, stats, pdf)


def requests_frame(
    spark: Any,
    items: Sequence[tuple[str, Sequence[dict[str, Any]], RowSchema]],
    **extra: Sequence[Any],
) -> DataFrame:
    """Build a requests DataFrame from (request_id, messages, RowSchema) triples; `extra` adds
    optional per-request columns (e.g. seed=[...])."""
    data: dict[str, list[Any]] = {
        "request_id": [i[0] for i in items],
        "messages": [json.dumps(list(i[1])) for i in items],
        "row_schema": [i[2].to_json() for i in items],
    }
    fields = [T.StructField(c, T.StringType()) for c in data]
    for name, values in extra.items():
        data[name] = list(values)
        fields.append(T.StructField(name, OPTIONAL.get(name, T.StringType())))
    rows = list(zip(*data.values(), strict=True))
    struct = T.StructType(fields)
    frame = spark.createDataFrame(rows, schema=struct)
    with contextlib.suppress(TypeError):  # a frame that takes no weak reference is unknown
        _KNOWN[frame] = through_arrow(pd.DataFrame(data, columns=list(data)), struct, "UTC")
    return frame


# Frames built by `requests_frame` keep their requests on the driver: `complete` need not run a
# Spark job to count them, and `run` may send a few of them from the driver (module doc).
_KNOWN: weakref.WeakKeyDictionary[Any, pd.DataFrame] = weakref.WeakKeyDictionary()


def _known(requests: DataFrame) -> pd.DataFrame | None:
    try:
        return _KNOWN.get(requests)
    except TypeError:
        return None


def _on_driver(local: pd.DataFrame, debug_log_dir: str | None) -> bool:
    """Whether `run` sends these requests from the driver: few enough (`placement.on_driver`),
    no per-task debug log asked for (it is kept per Spark task attempt) and no test hook that
    needs a Spark task to fail."""
    return (
        debug_log_dir is None
        and _FAIL_ONCE_MARKER[0] is None
        and on_driver(len(local), len(local.columns))
    )


__all__ = [
    "OUTPUT_SCHEMA",
    "Budget",
    "GatewayRun",
    "GatewayStats",
    "complete",
    "plan_stage",
    "requests_frame",
    "run",
    "summarize",
    "summarize_pandas",
]
