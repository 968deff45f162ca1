"""A slow one-slot endpoint (how the embedded llama.cpp server behaves) against a real HTTP server
on 127.0.0.1: the stub in one-slot mode computes one reply at a time, finishes a reply the client
gave up on, and answers `GET /models` only between replies, like llama-cpp-python's server."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from date_spark.config import LlmConfig
from date_spark.errors import EndpointError
from date_spark.llm.engine import TaskEngine
from date_spark.llm.gateway import plan_stage, run
from date_spark.testing.stub import StubServer

from .support import make_cfg, make_schema, reqs, spark_requests


def local_cfg(url: str, tmp_path: Path, **kw: Any) -> LlmConfig:
    """The embedded model's settings (provider local), pointed at the stub."""
    return make_cfg(url, tmp_path / "cache", provider="local", **kw)


def test_a_timed_out_request_is_not_resent_while_the_server_is_busy(tmp_path: Path) -> None:
    # 0.4 s timeout, then up to 2 x 0.4 s for the server to finish the 1.0 s reply
    with StubServer(one_slot=True, fault="slow", fault_count=1, slow_s=1.0) as url:
        cfg = local_cfg(url, tmp_path, timeout_s=0.4, max_retries=3)
        plan = plan_stage(cfg, base_url=url)
        assert plan.one_slot and plan.max_concurrency == 1
        eng = TaskEngine(plan)
        t0 = time.monotonic()
        results = eng.run(reqs(make_schema(), 3))
        elapsed = time.monotonic() - t0
        eng.close()
    # the request the server was slow on failed once, was not retried, and says what to change
    failed = [r for r in results if r.status == "failed"]
    assert len(failed) == 1 and failed[0].calls == 1 and failed[0].retries == 0
    assert "llm.timeout_s" in (failed[0].error or "") and "not retried" in (failed[0].error or "")
    # the others went through, after the server had finished the abandoned reply
    assert [r.status for r in results].count("ok") == 2
    assert all(r.n_valid == 5 for r in results if r.status == "ok")
    assert elapsed >= 1.0


def test_the_next_request_waits_until_the_abandoned_reply_is_done(tmp_path: Path) -> None:
    stub = StubServer(one_slot=True, fault="slow", fault_count=1, slow_s=1.0)
    with stub as url:
        eng = TaskEngine(plan_stage(local_cfg(url, tmp_path, timeout_s=0.4), base_url=url))
        eng.run(reqs(make_schema(), 3))
        eng.close()
        arrivals, finished = stub.arrivals, stub.finished
    assert stub.count == 3, "each request reaches the server once"
    first_done = finished[0]
    assert first_done is not None
    # nothing reached the server while it was still computing the reply nobody waited for
    assert all(a >= first_done for a in arrivals[1:]), (arrivals, finished)


def test_without_one_slot_handling_retries_queue_behind_the_abandoned_reply(
    tmp_path: Path,
) -> None:
    """The behaviour of issue 15, on the same server: a hosted-endpoint client (provider openai)
    retries the timeout at once, and the retry waits behind the reply still being computed."""
    stub = StubServer(one_slot=True, fault="slow", fault_count=1, slow_s=1.5)
    with stub as url:
        cfg = make_cfg(url, tmp_path / "cache", timeout_s=0.4, concurrency_per_task=1)
        eng = TaskEngine(plan_stage(cfg, base_url=url))
        assert not eng.plan.one_slot
        [res] = eng.run(reqs(make_schema(), 1))
        eng.close()
        arrivals, finished = stub.arrivals, stub.finished
    assert res.retries >= 1 and stub.count >= 2
    first_done = finished[0]
    assert first_done is not None and arrivals[1] < first_done


def test_a_model_slower_than_the_timeout_fails_fast_with_the_fix(tmp_path: Path) -> None:
    # every reply takes 0.8 s, the timeout is 0.3 s: two timeouts with nothing answered end the
    # task's sending; the rest fail at once instead of each waiting its turn
    stub = StubServer(one_slot=True, fault="slow", slow_s=0.8)
    with stub as url:
        eng = TaskEngine(plan_stage(local_cfg(url, tmp_path, timeout_s=0.3), base_url=url))
        results = eng.run(reqs(make_schema(), 5))
        eng.close()
    assert [r.status for r in results] == ["failed"] * 5
    assert stub.count == 2 and sum(r.calls for r in results) == 2
    assert any("2 requests in a row timed out" in (r.error or "") for r in results)
    assert all("raise llm.timeout_s" in (r.error or "") for r in results)


def test_a_server_still_busy_after_the_wait_stops_the_task(tmp_path: Path) -> None:
    stub = StubServer(one_slot=True, fault="slow", fault_count=1, slow_s=3.0)
    with stub as url:
        eng = TaskEngine(plan_stage(local_cfg(url, tmp_path, timeout_s=0.3), base_url=url))
        t0 = time.monotonic()
        results = eng.run(reqs(make_schema(), 3))
        elapsed = time.monotonic() - t0
        eng.close()
        count = stub.count
    assert count == 1, "nothing is sent while the server is busy"
    assert [r.status for r in results] == ["failed"] * 3
    assert any("still busy" in (r.error or "") for r in results)
    assert elapsed < 2.5  # 0.3 s timeout + 0.6 s idle wait, not the 3 s reply


@pytest.mark.usefixtures("spark")
def test_local_provider_through_spark_fails_once_then_continues(
    spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="date_spark.llm")
    stub = StubServer(one_slot=True, fault="slow", fault_count=1, slow_s=1.0)
    with stub as url:
        cfg = local_cfg(url, tmp_path, timeout_s=0.5, max_retries=3)
        out = run(spark_requests(spark, 3, make_schema()), cfg, base_url=url)
        count = stub.count
    st = out.stats
    assert (st.ok, st.failed, st.retries, st.calls) == (2, 1, 0, 3)
    assert count == 3
    assert "llm.timeout_s" in (st.first_error or "")
    # the run says what happened, in one line with the fix
    said = [r.getMessage() for r in caplog.records if "LLM requests failed" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0], said
    assert said[0].startswith("1 of 3 LLM requests failed") and "not retried" in said[0]
    assert "raise llm.timeout_s" in said[0]


@pytest.mark.usefixtures("spark")
def test_local_provider_that_never_answers_in_time_exits_with_the_fix(
    spark: Any, tmp_path: Path
) -> None:
    stub = StubServer(one_slot=True, fault="slow", slow_s=0.8)
    with stub as url:
        cfg = local_cfg(url, tmp_path, timeout_s=0.3)
        with pytest.raises(EndpointError, match=r"raise llm\.timeout_s") as err:
            run(spark_requests(spark, 4, make_schema()), cfg, base_url=url)
        assert stub.count == 2
    # one line, one fix: the server was up (busy), so no hint about the URL or the key
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("all 4 LLM requests")
    assert "llm.base_url" not in msg
