"""The per-task engine against the stub, in process: dialects, fallback, single-flight, azure,
custom row factories and the client factory."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from date_spark.config import LlmConfig
from date_spark.errors import ConfigError
from date_spark.llm.client import endpoint_id, make_client, resolve_dialect
from date_spark.llm.engine import LlmRequest, LlmResult
from date_spark.testing.stub import StubServer, find_schema

from .support import FAKE_KEY, FAKE_KEY_ENV, engine, make_cfg, make_schema, reqs


@pytest.mark.parametrize(
    ("provider", "url", "expected"),
    [
        ("local", "http://127.0.0.1:5/v1", "json_object"),
        ("openai", None, "json_schema"),
        ("openai", "https://api.openai.com/v1", "json_schema"),
        ("openai", "http://vllm.internal:8000/v1", "json_object"),
        ("azure", "https://x.openai.azure.com", "json_schema"),
    ],
)
def test_auto_dialect(provider: str, url: str | None, expected: str) -> None:
    cfg = LlmConfig(provider=provider, base_url=url)  # type: ignore[arg-type]
    assert resolve_dialect(cfg) == expected
    assert resolve_dialect(cfg.model_copy(update={"structured_output": "vllm"})) == "vllm"


@pytest.mark.parametrize(
    ("dialect", "field"),
    [
        ("json_schema", "response_format"),
        ("json_object", "response_format"),
        ("vllm", "structured_outputs"),
        ("none", None),
    ],
)
def test_each_dialect_reaches_the_server(
    stub: StubServer, tmp_path: Path, dialect: str, field: str | None
) -> None:
    schema = make_schema()
    cfg = make_cfg(stub.base_url, tmp_path, structured_output=dialect)
    results = engine(cfg).run(reqs(schema, 3))
    assert [r.n_valid for r in results] == [5, 5, 5]
    body = stub.bodies[0]
    if field is None:
        assert "response_format" not in body and "structured_outputs" not in body
        assert "```json" in body["messages"][-1]["content"]
    else:
        assert field in body
    assert find_schema(body) == schema.json_schema()


def test_auto_falls_back_to_plain_prompts_when_format_is_rejected(
    stub: StubServer, tmp_path: Path
) -> None:
    stub.set(fault="reject_format")
    cfg = make_cfg(stub.base_url, tmp_path, concurrency_per_task=1)
    results = engine(cfg).run(reqs(make_schema(), 4))
    assert len(results) == 4 and all(r.status == "ok" and r.n_valid == 5 for r in results)
    # The first rejection switches the task to plain prompts; only a request already prepared in
    # the old dialect by the second worker thread can still meet a 400.
    n400 = stub.responses["400"]
    assert 1 <= n400 <= 2 and stub.count == 4 + n400
    assert results[0].calls == 2 and results[0].retries == 0
    assert len(stub.bodies) == stub.count  # every request body was recorded
    # every body that still asked for the format is one the endpoint rejected; which position
    # the second one takes depends on thread scheduling (under load the first thread's plain
    # retry and its next request can reach the endpoint before it)
    assert sum("response_format" in b for b in stub.bodies) == n400
    assert "response_format" in stub.bodies[0]
    # A rerun (a new task) is served from the cache: no new 400s, no calls at all.
    again = engine(cfg).run(reqs(make_schema(), 4))
    assert stub.count == 4 + n400
    assert len(again) == 4 and all(r.cache_hit and r.n_valid == 5 for r in again)


def test_explicit_dialect_does_not_fall_back(stub: StubServer, tmp_path: Path) -> None:
    stub.set(fault="reject_format")
    cfg = make_cfg(stub.base_url, tmp_path, structured_output="json_schema")
    results = engine(cfg).run(reqs(make_schema(), 2))
    assert len(results) == 2
    assert all(r.status == "failed" and "HTTP 400" in (r.error or "") for r in results)
    assert stub.count == 2


def test_identical_requests_in_a_task_make_one_call(stub: StubServer, tmp_path: Path) -> None:
    stub.set(latency_s=0.1)
    results = engine(make_cfg(stub.base_url, tmp_path)).run(reqs(make_schema(), 6, same=True))
    assert stub.count == 1
    assert sum(r.cache_hit for r in results) == 5
    assert len({json.dumps(r.rows) for r in results}) == 1


def test_retry_after_beyond_backoff_max_gives_up(stub: StubServer, tmp_path: Path) -> None:
    stub.set(fault="rate_limit", retry_after_s=30.0)
    cfg = make_cfg(stub.base_url, tmp_path, backoff_max_s=2.0, concurrency_per_task=1)
    t0 = time.monotonic()
    [res] = engine(cfg).run(reqs(make_schema(), 1))
    assert time.monotonic() - t0 < 2.0
    assert res.status == "failed" and res.calls == 1
    assert "llm.backoff_max_s" in (res.error or "") and "30s" in (res.error or "")


def test_retries_exhausted_reports_attempts(stub: StubServer, tmp_path: Path) -> None:
    stub.set(fault="server_error")
    cfg = make_cfg(stub.base_url, tmp_path, max_retries=2)
    [res] = engine(cfg).run(reqs(make_schema(), 1))
    assert res.status == "failed" and res.calls == 3 and res.retries == 2
    assert "HTTP 500" in (res.error or "") and "3 attempts" in (res.error or "")
    assert res.latency_s > 0


def test_no_cache_path_means_no_cache(stub: StubServer) -> None:
    cfg = make_cfg(stub.base_url, None)
    e = engine(cfg)
    e.run(reqs(make_schema(), 2))
    e.run(reqs(make_schema(), 2))
    assert stub.count == 4


def test_custom_row_factory_helpful_and_harmful(tmp_path: Path) -> None:
    """A later stage's need: some requests get helpful rows, others wrong-label rows."""

    def factory(schema: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
        harmful = "harm" in body["messages"][-1]["content"]
        base = {"age": 35, "income": 10.0, "city": "Rome", "joined": "2020-06-01", "vip": False}
        return [{**base, "label": "no" if harmful else "yes"} for _ in range(2)]

    with StubServer(row_factory=factory) as url:
        cfg = make_cfg(url, tmp_path)
        schema = make_schema(n_rows=2)
        out = engine(cfg).run(
            [
                LlmRequest("h", [{"role": "user", "content": "help"}], schema),
                LlmRequest("x", [{"role": "user", "content": "harm"}], schema),
            ]
        )
    assert [r["label"] for r in out[0].rows] == ["yes", "yes"]
    assert [r["label"] for r in out[1].rows] == ["no", "no"]


def test_azure_provider_sends_the_key_as_api_key_header(tmp_path: Path) -> None:
    stub = StubServer()
    with stub as url:
        base = url.removesuffix("/v1")
        cfg = make_cfg(
            base, tmp_path, provider="azure", api_key_env=FAKE_KEY_ENV, api_version="2024-10-21"
        )
        client = make_client(cfg)
        assert isinstance(client, openai.AzureOpenAI)
        [res] = engine(cfg).run(reqs(make_schema(), 1))
    assert res.status == "ok" and res.n_valid == 5
    assert stub.auth_headers == [FAKE_KEY]


def test_client_has_no_sdk_retries_and_config_timeout(tmp_path: Path) -> None:
    cfg = make_cfg("http://127.0.0.1:1/v1", tmp_path, timeout_s=7.5)
    c = make_client(cfg)
    assert c.max_retries == 0
    assert float(c.timeout) == 7.5  # type: ignore[arg-type]


def test_missing_key_on_an_executor_fails_requests_cleanly(tmp_path: Path) -> None:
    cfg = make_cfg("http://127.0.0.1:1/v1", tmp_path, api_key_env="DATE_SPARK_TEST_NOPE")
    with pytest.raises(ConfigError, match="DATE_SPARK_TEST_NOPE"):
        engine(cfg)


def test_local_provider_needs_a_url() -> None:
    with pytest.raises(ConfigError, match="LocalModelServer"):
        make_client(LlmConfig(provider="local"))
    assert endpoint_id(LlmConfig(provider="local"), "http://127.0.0.1:1/v1") == endpoint_id(
        LlmConfig(provider="local"), "http://127.0.0.1:2/v1"
    ), "the embedded model's cache identity must not depend on its random port"


def test_results_keep_request_order(stub: StubServer, tmp_path: Path) -> None:
    stub.set(latency_s=0.02)
    out: list[LlmResult] = engine(make_cfg(stub.base_url, tmp_path)).run(reqs(make_schema(), 9))
    assert [r.request_id for r in out] == [f"q{i}" for i in range(9)]
    assert FAKE_KEY not in json.dumps(stub.bodies)
