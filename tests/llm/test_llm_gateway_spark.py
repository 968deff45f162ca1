"""The gateway through Spark (`mapInPandas`) against the stub server: faults, exactly-once,
budget, rate limits and a dead endpoint. The tests pin the Spark path (`placement.
driver_max_cells(0)`); the fault table and one comparison also run a few requests from the driver,
as `run` does by default for a frame `requests_frame` built."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from date_spark.errors import ConfigError, EndpointError, InputError
from date_spark.llm.budget import Budget
from date_spark.llm.gateway import (
    GatewayRun,
    complete,
    fail_one_task_attempt,
    requests_frame,
    run,
    summarize,
)
from date_spark.llm.rows import RowSchema
from date_spark.llm.validation import validate_rows
from date_spark.runtime.placement import driver_max_cells
from date_spark.testing.stub import StubServer

from .support import make_cfg, make_schema, spark_requests

N_REQ, N_ROWS, BAD = 4, 5, 2
SPARK, DRIVER = 0, 10**9  # driver limits (cells) that pin the Spark path or the driver path


@pytest.fixture(autouse=True)
def _through_spark() -> Iterator[None]:
    with driver_max_cells(SPARK):
        yield


def _jobs(spark: Any, group: str) -> int:
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def _assert_rows_valid(pdf: pd.DataFrame, schema: RowSchema) -> int:
    """Every row that came out passes validation again and satisfies the rule; returns count."""
    total = 0
    for text in pdf["rows"]:
        rows = json.loads(text)
        again = validate_rows(schema, rows)
        assert again.n_valid == len(rows), again.rejected
        if rows:
            assert schema.rule.mask(pd.DataFrame(rows)).all()
        total += len(rows)
    return total


# fault, stub settings, config overrides, valid rows, rejected, retries, calls
FAULTS: list[tuple[str, dict[str, Any], dict[str, Any], int, dict[str, int], int, int]] = [
    ("rate_limit", {"fault_count": 3, "retry_after_s": 0.2}, {}, 20, {}, 3, 7),
    ("server_error", {"fault_count": 2}, {}, 20, {}, 2, 6),
    ("slow", {"fault_count": 1, "slow_s": 3.0}, {"timeout_s": 0.6}, 20, {}, 1, 5),
    ("malformed", {}, {}, 0, {"parse_error": 4}, 0, 4),
    ("truncated", {}, {}, 16, {"parse_error": 4}, 0, 4),
    ("prose", {}, {"structured_output": "none"}, 20, {}, 0, 4),
    ("fenced", {}, {"structured_output": "none"}, 20, {}, 0, 4),
    ("violate_rule", {"bad_rows": BAD}, {}, 12, {"violates_rule": 8}, 0, 4),
    ("wrong_type", {"bad_rows": BAD}, {}, 12, {"wrong_type": 8}, 0, 4),
    ("extra_field", {"bad_rows": BAD}, {}, 12, {"extra_field": 8}, 0, 4),
    ("missing_field", {"bad_rows": BAD}, {}, 12, {"missing_field": 8}, 0, 4),
    ("out_of_domain", {"bad_rows": BAD}, {}, 12, {"out_of_domain": 8}, 0, 4),
]


@pytest.mark.parametrize("where", [SPARK, DRIVER], ids=["spark", "driver"])
@pytest.mark.parametrize(
    ("fault", "faults", "overrides", "valid", "rejected", "retries", "calls"),
    FAULTS,
    ids=[f[0] for f in FAULTS],
)
def test_fault_through_spark(
    spark: Any,
    stub: StubServer,
    tmp_path: Path,
    where: int,
    fault: str,
    faults: dict[str, Any],
    overrides: dict[str, Any],
    valid: int,
    rejected: dict[str, int],
    retries: int,
    calls: int,
) -> None:
    schema = make_schema(n_rows=N_ROWS)
    stub.set(fault=fault, **faults)
    cfg = make_cfg(stub.base_url, tmp_path / "cache", **overrides)
    with driver_max_cells(where):
        out = run(spark_requests(spark, N_REQ, schema), cfg, num_tasks=2)
    pdf = out.pandas
    assert pdf["request_id"].tolist() == [f"r{i:03d}" for i in range(N_REQ)]  # asked order
    assert set(pdf["status"]) == {"ok"}, pdf[["status", "error"]]
    assert _assert_rows_valid(pdf, schema) == valid
    st = out.stats
    assert st.n_valid == valid
    assert st.rejected == rejected
    assert st.retries == retries
    assert st.calls == calls == stub.count
    assert st.ok == N_REQ and st.failed == 0
    assert st.prompt_tokens > 0 and st.completion_tokens > 0
    if fault == "truncated":
        assert st.truncated == N_REQ
    if fault == "out_of_domain":
        # the stub breaks the first column of each bad row: the per-column table says which
        assert st.rejected_by_column == {"age": {"out_of_domain": 8}}
    # rows valid but for the rule come back apart (for re-routing), exactly the violations
    off = [r for text in pdf["off_rule"] for r in json.loads(text)]
    assert len(off) == rejected.get("violates_rule", 0)
    if off:
        assert not schema.rule.mask(pd.DataFrame(off)).any()
        assert validate_rows(schema.with_rows(None), off).off_rule == off
    if fault in ("truncated", "slow", "violate_rule", "out_of_domain"):
        # run() summarises on the driver; the Spark aggregations must agree.
        assert summarize(out.result) == st


def test_a_few_requests_sent_from_the_driver_give_what_spark_tasks_give(
    spark: Any, stub: StubServer, tmp_path: Path
) -> None:
    """The same requests (out of id order, with seeds and kept columns, a third of the rows
    breaking the rule) through Spark tasks and from the driver, each against its own empty
    cache: the same results in the same order, and the driver path runs no Spark job."""
    schema = make_schema(n_rows=N_ROWS)
    stub.set(fault="violate_rule", bad_rows=BAD)
    ids = [7, 2, 9, 0, 4, 11, 5]
    items = [
        (f"q{i:02d}", [{"role": "user", "content": f"rows for block {i}"}], schema) for i in ids
    ]
    extra = {"seed": [10 + i for i in ids], "tag": [f"t{i}" for i in ids]}
    out = {}
    for where, name in ((SPARK, "spark"), (DRIVER, "driver")):
        cfg = make_cfg(stub.base_url, tmp_path / f"cache-{name}")
        frame = requests_frame(spark, items, **extra)
        spark.sparkContext.setJobGroup(f"gateway-{name}", name)
        try:
            with driver_max_cells(where):
                out[name] = run(frame, cfg, num_tasks=3, keep_columns=["tag"])
        finally:
            spark.sparkContext.setJobGroup("", "")
    assert _jobs(spark, "gateway-spark") >= 1 and _jobs(spark, "gateway-driver") == 0
    a, b = out["spark"].pandas, out["driver"].pandas
    assert a["request_id"].tolist() == [f"q{i:02d}" for i in ids]
    assert (a["n_valid"] > 0).all() and out["spark"].stats.rejected == {"violates_rule": 14}
    pd.testing.assert_frame_equal(a.drop(columns="latency_s"), b.drop(columns="latency_s"))
    assert out["driver"].stats.calls == out["spark"].stats.calls == len(ids)
    assert out["driver"].result.count() == len(ids)


def test_rerun_makes_no_calls(spark: Any, stub: StubServer, tmp_path: Path) -> None:
    schema = make_schema()
    cfg = make_cfg(stub.base_url, tmp_path / "cache")
    reqs = spark_requests(spark, 6, schema)
    first = run(reqs, cfg, num_tasks=2)
    assert stub.count == 6 and first.stats.calls == 6 and first.stats.cache_hits == 0
    second = run(reqs, cfg, num_tasks=3)  # different partitioning, same requests
    assert stub.count == 6, "a rerun must not call the endpoint again"
    assert second.stats.calls == 0 and second.stats.cache_hits == 6
    assert second.stats.prompt_tokens == 0  # cache hits are not billed again
    a = first.pandas.sort_values("request_id")["rows"].tolist()
    b = second.pandas.sort_values("request_id")["rows"].tolist()
    assert a == b


def test_task_retry_makes_no_duplicate_calls_or_rows(
    spark: Any, stub: StubServer, tmp_path: Path
) -> None:
    schema = make_schema()
    cfg = make_cfg(stub.base_url, tmp_path / "cache")
    marker = tmp_path / "failed-once"
    with fail_one_task_attempt(str(marker)):
        out = run(spark_requests(spark, 8, schema), cfg, num_tasks=2)
    assert marker.exists(), "the hook must have failed one task attempt"
    pdf = out.pandas
    assert len(pdf) == 8 and pdf["request_id"].is_unique
    assert stub.count == 8, "the retried task must be served from the cache"
    # The surviving attempt of the failed task reports its requests as cache hits.
    assert out.stats.calls + out.stats.cache_hits == 8
    assert out.stats.cache_hits >= 1
    rows = [r for text in pdf["rows"] for r in json.loads(text)]
    assert len(rows) == 8 * 5
    assert out.stats.n_valid == 40


def test_no_more_tasks_than_the_session_runs_at_once(
    spark: Any, stub: StubServer, tmp_path: Path
) -> None:
    """Tasks queued behind busy cores would idle on their share of the rate: local[2] gets two
    tasks however many requests and `max_tasks` allow, and every request is still answered."""
    cfg = make_cfg(stub.base_url, tmp_path / "cache", max_tasks=8)
    lazy = complete(spark_requests(spark, 8, make_schema()), cfg)
    assert lazy.rdd.getNumPartitions() == 2  # tests may look at the plan; the library may not
    out = run(spark_requests(spark, 8, make_schema()), cfg)
    assert out.stats.requests == 8 and out.stats.ok == 8


def test_budget_stops_calls_and_holds_across_stages(
    spark: Any, stub: StubServer, tmp_path: Path
) -> None:
    schema = make_schema()
    cfg = make_cfg(
        stub.base_url, tmp_path / "cache", max_tokens=200, max_total_tokens=1000, max_tasks=2
    )
    budget = Budget.from_config(cfg)
    reqs = spark_requests(spark, 8, schema)
    first = run(reqs, cfg, budget=budget)
    st = first.stats
    assert st.budget_exhausted and budget.exhausted
    assert 0 < st.calls < 8 and st.calls == stub.count
    assert st.budget_exhausted_requests == 8 - st.ok
    assert st.total_tokens <= 1000
    assert budget.spent_tokens == st.total_tokens
    skipped = first.pandas[first.pandas["status"] == "budget_exhausted"]
    assert len(skipped) == 8 - st.ok > 0
    assert (skipped["calls"] == 0).all() and (skipped["rows"] == "[]").all()
    # Next stage with the same ledger: nothing new is sent, cached replies are still served.
    calls_before = stub.count
    second = run(reqs, cfg, budget=budget)
    assert stub.count == calls_before
    assert second.stats.cache_hits == st.ok
    assert budget.spent_tokens <= 1000


def test_cost_budget_needs_a_price(spark: Any, stub: StubServer, tmp_path: Path) -> None:
    cfg = make_cfg(stub.base_url, tmp_path / "c", max_cost=1.0, model="gpt-x")
    with pytest.raises(ConfigError, match=r"llm\.prices"):
        complete(spark_requests(spark, 1, make_schema()), cfg)


def test_cost_budget(spark: Any, stub: StubServer, tmp_path: Path) -> None:
    price = {"gpt-x": {"prompt_per_1k": 1.0, "completion_per_1k": 2.0}}
    cfg = make_cfg(
        stub.base_url, tmp_path / "c", model="gpt-x", prices=price, max_cost=0.9, max_tokens=150
    )
    out = run(spark_requests(spark, 8, make_schema()), cfg, num_tasks=2)
    assert out.stats.budget_exhausted
    assert 0 < out.stats.cost <= 0.9
    expected = (out.stats.prompt_tokens * 1.0 + out.stats.completion_tokens * 2.0) / 1000
    assert out.stats.cost == pytest.approx(expected)


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more


def test_dead_endpoint_is_reported(spark: Any, tmp_path: Path) -> None:
    url = _dead_url()
    cfg = make_cfg(url, tmp_path / "c", max_retries=2, backoff_base_s=0.01)
    reqs = spark_requests(spark, 12, make_schema())
    with pytest.raises(EndpointError) as info:
        run(reqs, cfg, num_tasks=2)
    msg = str(info.value)
    assert url in msg and "\n" not in msg and "llm.base_url" in msg
    # The same facts through the lazy API: every request failed, fast (dead-endpoint breaker).
    st = summarize(complete(reqs, cfg, num_tasks=2))
    assert st.all_failed and st.failed == 12
    assert st.calls < 12 * 3, "after the first request exhausts retries the rest fail fast"


def test_server_rate_limit_storm_finishes_and_counts_retries(
    spark: Any, stub: StubServer, tmp_path: Path
) -> None:
    """The server allows 5 req/s; the client is configured far above that: 429s happen, every
    request still completes, and each 429 is one counted retry."""
    stub.set(max_rps=5)
    cfg = make_cfg(stub.base_url, tmp_path / "c", max_retries=8, requests_per_minute=6000)
    out = run(spark_requests(spark, 16, make_schema()), cfg, num_tasks=2)
    assert out.stats.ok == 16
    n429 = stub.responses["429"]
    assert n429 > 0
    assert out.stats.retries == n429
    assert out.stats.calls == stub.count == 16 + n429


def test_configured_rate_is_respected(spark: Any, stub: StubServer, tmp_path: Path) -> None:
    """Configured at 240/min (4/s over 2 tasks, burst 2 each) against a server allowing 10/s:
    no 429s at all, and the observed rate stays near the configured one."""
    stub.set(max_rps=10)
    cfg = make_cfg(stub.base_url, tmp_path / "c", requests_per_minute=240)
    out = run(spark_requests(spark, 16, make_schema()), cfg, num_tasks=2)
    assert out.stats.ok == 16 and stub.responses["429"] == 0
    arrivals = sorted(stub.arrivals)
    span = arrivals[-1] - arrivals[0]
    # 16 calls at 4/s with a burst of 4: at least (16 - 4) / 4 = 3 s.
    assert span >= 2.7, span


def test_keep_columns_and_invalidspark_requests(
    spark: Any, stub: StubServer, tmp_path: Path
) -> None:
    schema = make_schema()
    rows = [
        ("a", json.dumps([{"role": "user", "content": "x"}]), schema.to_json(), 7),
        ("b", "not json", schema.to_json(), 8),
        ("c", json.dumps([{"role": "user", "content": "y"}]), "{broken", 9),
    ]
    df = spark.createDataFrame(
        rows, "request_id string, messages string, row_schema string, rule_id int"
    )
    cfg = make_cfg(stub.base_url, tmp_path / "c")
    out = run(df, cfg, num_tasks=2, keep_columns=["rule_id"])
    pdf = out.pandas.set_index("request_id")
    assert pdf.loc["a", "status"] == "ok" and pdf.loc["a", "rule_id"] == 7
    assert pdf.loc["b", "status"] == "invalid_request" and pdf.loc["b", "rule_id"] == 8
    assert pdf.loc["c", "status"] == "invalid_request"
    assert out.stats.invalid_requests == 2 and stub.count == 1
    assert dict(out.result.dtypes)["rule_id"] == "int"
    assert summarize(out.result) == out.stats


def test_input_checks(spark: Any, tmp_path: Path) -> None:
    cfg = make_cfg("http://127.0.0.1:1/v1", tmp_path / "c")
    with pytest.raises(InputError, match="row_schema"):
        complete(spark.createDataFrame([("a", "[]")], "request_id string, messages string"), cfg)


def test_missing_key_fails_on_the_driver(spark: Any, stub: StubServer, tmp_path: Path) -> None:
    cfg = make_cfg(stub.base_url, tmp_path / "c", api_key_env="DATE_SPARK_TEST_UNSET_KEY_VAR")
    with pytest.raises(ConfigError, match="DATE_SPARK_TEST_UNSET_KEY_VAR"):
        complete(spark_requests(spark, 1, make_schema()), cfg)
    assert stub.count == 0


def test_per_request_seed_changes_the_reply(spark: Any, stub: StubServer, tmp_path: Path) -> None:
    """Identical prompts with different seeds are different requests (and cache entries)."""
    schema = make_schema()
    msgs = [{"role": "user", "content": "same prompt"}]
    df = requests_frame(spark, [("s1", msgs, schema), ("s2", msgs, schema)], seed=[1, 2])
    out: GatewayRun = run(df, make_cfg(stub.base_url, tmp_path / "c"), num_tasks=1)
    assert stub.count == 2
    assert [b["seed"] for b in sorted(stub.bodies, key=lambda b: b["seed"])] == [1, 2]
    r = out.pandas.set_index("request_id")["rows"]
    assert r["s1"] != r["s2"]
