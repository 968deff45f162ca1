"""LLM gateway: structured rows from any OpenAI-compatible endpoint, run inside Spark tasks.

Public surface (what generation calls):
    RowSchema.from_table(...) / .to_json()        the target of one request (rows.py)
    validate_reply(schema, text)                  the returned rows checked (validation.py)
    requests_frame(spark, items, seed=[...])      build the requests DataFrame (gateway.py)
    run(requests_df, cfg, ...) -> GatewayRun      materialised result + GatewayStats + budget charge
    complete(requests_df, cfg, ...) -> DataFrame  the lazy mapInPandas stage itself
    summarize(result_df) -> GatewayStats          two Spark aggregations (totals, per column)
    Budget.from_config(cfg)                       job-wide token/cost ledger (budget.py)
    LocalModelServer(cfg.local)                   embedded llama.cpp server (local.py)

Names are imported lazily, so importing one module does not pull in Spark first. The stub endpoint
the tests use is a test double: `date_spark.testing.stub`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Budget": "budget",
    "ResponseCache": "cache",
    "cache_key": "cache",
    "make_client": "client",
    "resolve_dialect": "client",
    "OUTPUT_SCHEMA": "gateway",
    "GatewayRun": "gateway",
    "GatewayStats": "gateway",
    "complete": "gateway",
    "requests_frame": "gateway",
    "run": "gateway",
    "summarize": "gateway",
    "summarize_pandas": "gateway",
    "LocalModelServer": "local",
    "RowColumn": "rows",
    "RowSchema": "rows",
    "REASONS": "validation",
    "ValidationResult": "validation",
    "validate_reply": "validation",
    "validate_rows": "validation",
}

if TYPE_CHECKING:
    from date_spark.llm.budget import Budget
    from date_spark.llm.cache import ResponseCache, cache_key
    from date_spark.llm.client import make_client, resolve_dialect
    from date_spark.llm.gateway import (
        OUTPUT_SCHEMA,
        GatewayRun,
        GatewayStats,
        complete,
        requests_frame,
        run,
        summarize,
        summarize_pandas,
    )
    from date_spark.llm.local import LocalModelServer
    from date_spark.llm.rows import RowColumn, RowSchema
    from date_spark.llm.validation import (
        REASONS,
        ValidationResult,
        validate_reply,
        validate_rows,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'date_spark.llm' has no attribute {name!r}")
    return getattr(importlib.import_module(f"date_spark.llm.{module}"), name)


__all__ = [
    "OUTPUT_SCHEMA",
    "REASONS",
    "Budget",
    "GatewayRun",
    "GatewayStats",
    "LocalModelServer",
    "ResponseCache",
    "RowColumn",
    "RowSchema",
    "ValidationResult",
    "cache_key",
    "complete",
    "make_client",
    "requests_frame",
    "resolve_dialect",
    "run",
    "summarize",
    "summarize_pandas",
    "validate_reply",
    "validate_rows",
]
