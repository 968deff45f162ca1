"""Shared helpers for the LLM gateway tests (imported relatively, so pytest imports them once).

The fake API key is put into the environment at import time, i.e. during collection and before
the session-scoped SparkSession starts: a local master's Python workers inherit the environment the
JVM was launched with, exactly as executors on a cluster get `spark.executorEnv.*`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from date_spark.config import LlmConfig
from date_spark.llm.client import endpoint_id, resolve_dialect
from date_spark.llm.engine import LlmRequest, TaskEngine, TaskPlan
from date_spark.llm.gateway import requests_frame
from date_spark.llm.rows import RowSchema
from date_spark.schema import ColumnSpec, Kind, TableSchema

FAKE_KEY_ENV = "DATE_SPARK_TEST_LLM_KEY"
FAKE_KEY = "sk-test-F4KEk3yDoNotLeak0123456789"
os.environ[FAKE_KEY_ENV] = FAKE_KEY

TABLE = TableSchema(
    (
        ColumnSpec("age", Kind.NUMERIC, "bigint", True, True),
        ColumnSpec("income", Kind.NUMERIC, "double"),
        ColumnSpec("city", Kind.CATEGORICAL, "string"),
        ColumnSpec("joined", Kind.DATE, "date"),
        ColumnSpec("vip", Kind.BOOLEAN, "boolean"),
        ColumnSpec("label", Kind.CATEGORICAL, "string"),
    ),
    target="label",
    task="classification",
    classes=("no", "yes"),
)
DOMAINS = {"city": ["Oslo", "Paris", "Rome"]}
RANGES: dict[str, tuple[Any, Any]] = {
    "age": (18, 90),
    "income": (0.0, 100_000.0),
    "joined": (dt.date(2020, 1, 1), dt.date(2021, 12, 31)),
}
RULE = "age >= 30 and age < 50 and income <= 60000.0 and city in ('Paris', 'Rome')"


def make_schema(rule: str = RULE, n_rows: int = 5) -> RowSchema:
    return RowSchema.from_table(TABLE, rule, domains=DOMAINS, ranges=RANGES, n_rows=n_rows)


def make_cfg(url: str | None, cache: Path | str | None, **kw: Any) -> LlmConfig:
    base: dict[str, Any] = {
        "provider": "openai",
        "base_url": url,
        "api_key_env": None,
        "cache_path": str(cache) if cache is not None else None,
        "backoff_base_s": 0.05,
        "backoff_max_s": 5.0,
        "timeout_s": 5.0,
        "max_retries": 3,
        "concurrency_per_task": 4,
        "requests_per_minute": 60_000.0,
    }
    base.update(kw)
    return LlmConfig(**base)


def engine(cfg: LlmConfig, **plan: Any) -> TaskEngine:
    """A task engine as one Spark task would build it, but in this process."""
    url = cfg.base_url
    return TaskEngine(TaskPlan(cfg, url, endpoint_id(cfg, url), resolve_dialect(cfg, url), **plan))


def reqs(schema: RowSchema, n: int, same: bool = False) -> list[LlmRequest]:
    return [
        LlmRequest(f"q{i}", [{"role": "user", "content": "p" if same else f"p{i}"}], schema)
        for i in range(n)
    ]


def spark_requests(spark: Any, n: int, schema: RowSchema, prefix: str = "r", **extra: Any) -> Any:
    items = [
        (
            f"{prefix}{i:03d}",
            [
                {"role": "system", "content": "You write realistic synthetic table rows."},
                {"role": "user", "content": f"Write rows for block {prefix}{i}."},
            ],
            schema,
        )
        for i in range(n)
    ]
    return requests_frame(spark, items, **extra)


def json_rows(texts: Any) -> list[dict[str, Any]]:
    return [r for text in texts for r in json.loads(text)]


def margin_schema(margin: float = 0.1, out_of_range: str = "reject", rule: str = "") -> RowSchema:
    table = TableSchema(
        (
            ColumnSpec("n", Kind.NUMERIC, "bigint", True, True),  # seen 10..60
            ColumnSpec("x", Kind.NUMERIC, "double"),  # seen 0.0..100.0
            ColumnSpec("t", Kind.NUMERIC, "double"),  # seen -50.0..-2.0
            ColumnSpec("d", Kind.DATE, "date"),  # seen 2020-01-01..2020-12-31
            ColumnSpec("city", Kind.CATEGORICAL, "string"),
            ColumnSpec("y", Kind.NUMERIC, "double"),  # regression label, seen 0..10
        ),
        target="y",
        task="regression",
    )
    return RowSchema.from_table(
        table,
        rule or None,
        domains={"city": ["Oslo", "Rome"]},
        ranges={
            "n": (10, 60),
            "x": (0.0, 100.0),
            "t": (-50.0, -2.0),
            "d": (dt.date(2020, 1, 1), dt.date(2020, 12, 31)),
            "y": (0.0, 10.0),
        },
        margin=margin,
        out_of_range=out_of_range,
    )
