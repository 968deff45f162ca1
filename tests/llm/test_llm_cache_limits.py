"""Response cache, token buckets, AIMD concurrency, backoff and the task budget."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from date_spark.config import ModelPrice
from date_spark.llm.budget import Budget, TaskBudget, cost_of
from date_spark.llm.cache import CachedResponse, ResponseCache, cache_key
from date_spark.llm.limits import (
    NO_LIMIT_PER_MINUTE,
    REMOTE_REQUESTS_PER_MINUTE,
    REMOTE_TOKENS_PER_MINUTE,
    AdaptiveConcurrency,
    RateLimiter,
    TokenBucket,
    backoff_delay,
    on_this_machine,
    parse_retry_after,
    stage_rates,
)

PARAMS = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "temperature": 0.7,
    "seed": 1,
    "max_tokens": 100,
    "response_format": {"type": "json_object", "schema": {"type": "object"}},
}


@pytest.mark.parametrize(
    "change",
    [
        {"model": "m2"},
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"temperature": 0.8},
        {"seed": 2},
        {"max_tokens": 101},
        {"response_format": {"type": "json_object", "schema": {"type": "array"}}},
        {"extra_body": {"structured_outputs": {"json": {}}}},
    ],
)
def test_cache_key_covers_every_parameter(change: dict[str, object]) -> None:
    assert cache_key("openai:u", PARAMS) != cache_key("openai:u", {**PARAMS, **change})


def test_cache_key_is_canonical_and_endpoint_scoped() -> None:
    reordered = dict(reversed(list(PARAMS.items())))
    assert cache_key("e", PARAMS) == cache_key("e", reordered)
    assert cache_key("e1", PARAMS) != cache_key("e2", PARAMS)


def test_cache_roundtrip_counters_and_atomic_files(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    key = cache_key("e", PARAMS)
    assert cache.get(key) is None
    value = CachedResponse("{}", 10, 20, "stop", "m")
    cache.put(key, value)
    assert cache.get(key) == value
    assert (cache.hits, cache.misses, cache.writes) == (1, 1, 1)
    files = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert [p.name for p in files] == [f"{key}.json"]  # no temp files left behind
    # A second cache object (another task, another run) sees the entry.
    assert ResponseCache(tmp_path / "c").get(key) == value


def test_corrupt_entry_is_a_miss(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = cache_key("e", PARAMS)
    cache.put(key, CachedResponse("x", 1, 1))
    next(tmp_path.rglob(f"{key}.json")).write_text('{"content": "x", "prompt_')
    assert cache.get(key) is None and cache.misses == 1


def test_disabled_cache_always_misses() -> None:
    cache = ResponseCache(None)
    cache.put("k", CachedResponse("x", 1, 1))
    assert cache.get("k") is None and not cache.enabled


def test_concurrent_writers_never_expose_partial_entries(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = "ab" + "0" * 62
    big = CachedResponse("x" * 200_000, 1, 1)
    errors: list[BaseException] = []

    def writer() -> None:
        for _ in range(20):
            cache.put(key, big)

    def reader() -> None:
        for _ in range(200):
            got = cache.get(key)
            if got is not None and got != big:
                errors.append(AssertionError("partial entry"))

    threads = [threading.Thread(target=writer) for _ in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_token_bucket_rate_and_burst() -> None:
    clock = FakeClock()
    b = TokenBucket(rate=2.0, capacity=2.0, clock=clock, sleep=clock.sleep)
    for _ in range(12):
        b.acquire()
    # 2 at once from the full bucket, the other 10 at 2/s.
    assert clock.now == pytest.approx(5.0)


def test_token_bucket_oversized_request_runs_into_debt() -> None:
    clock = FakeClock()
    b = TokenBucket(rate=10.0, capacity=10.0, clock=clock, sleep=clock.sleep)
    b.acquire(50)  # larger than the bucket: allowed when full, leaves debt
    assert clock.now == 0.0
    b.acquire(10)  # must wait until the debt (-40) is repaid and the bucket is full again
    assert clock.now == pytest.approx(5.0)
    b.adjust(+10)  # a refund after the real usage turned out smaller
    b.acquire(10)
    assert clock.now == pytest.approx(5.0)


def test_aimd_halves_once_per_pause_window_and_recovers() -> None:
    c = AdaptiveConcurrency(8)
    c.on_overload(0.2)
    c.on_overload(0.2)  # same burst of 429s: counted once
    assert c.limit == 4 and c.decreases == 1
    t0 = time.monotonic()
    c.acquire()  # waits out the pause
    assert time.monotonic() - t0 >= 0.15
    c.release()
    for _ in range(40):
        c.on_success()
    assert c.limit == 8


def test_aimd_bounds_in_flight() -> None:
    c = AdaptiveConcurrency(2)
    peak = 0
    lock = threading.Lock()
    inside = 0

    def work() -> None:
        nonlocal peak, inside
        c.acquire()
        with lock:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.02)
        with lock:
            inside -= 1
        c.release()

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert (
        parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10
    )
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_honours_retry_after_and_caps() -> None:
    for attempt in range(10):
        d = backoff_delay(attempt, 1.0, 8.0)
        assert min(8.0, 2.0**attempt) / 2 <= d <= min(8.0, 2.0**attempt)
    for _ in range(50):
        assert 2.0 <= backoff_delay(0, 1.0, 8.0, retry_after=2.0) <= 2.41


def test_task_budget_reserves_worst_case_and_stops() -> None:
    b = TaskBudget(tokens=1000, cost=None, price=None)
    r1 = b.reserve(100, 300)
    r2 = b.reserve(100, 300)
    assert r1 and r2
    assert b.reserve(100, 300) is None and b.exhausted
    b.settle(r1, 50, 50)  # real usage was small...
    assert b.reserve(10, 10) is None  # ...but an exhausted task makes no more calls
    assert b.used_tokens == 100


def test_cost_and_budget_ledger() -> None:
    price = ModelPrice(prompt_per_1k=0.5, completion_per_1k=1.5)
    assert cost_of(price, 1000, 2000) == pytest.approx(3.5)
    led = Budget(max_tokens=1000, max_cost=None)
    assert led.shares(4) == (250.0, None)
    led.charge(600, 0.0)
    assert led.shares(2) == (200.0, None) and not led.exhausted
    led.charge(400, 0.0)
    assert led.exhausted and led.shares(2) == (0.0, None)


def test_rate_limiter_halves_from_observed_rate_and_recovers() -> None:
    rl = RateLimiter(requests_per_minute=600, tokens_per_minute=1e9, max_concurrency=4)
    for _ in range(4):
        rl.acquire(10)
    assert rl.observed_rps() == 2.0  # 4 attempts in the 2 s window
    rl.on_overload()
    assert rl.requests.rate == pytest.approx(1.0)  # half the observed rate, not of 10/s
    for _ in range(20):
        rl.on_success()
    assert rl.requests.rate == pytest.approx(10.0)  # back to the configured rate, no further


@pytest.mark.parametrize(
    ("url", "here"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://127.3.2.1/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://user:pw@127.0.0.1:9/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
        ("http://localhost.example.com/v1", False),
        (None, False),  # the provider's hosted default
    ],
)
def test_on_this_machine(url: str | None, here: bool) -> None:
    assert on_this_machine(url) is here


def test_unset_rates_limit_a_remote_endpoint_only_and_a_set_rate_limits_any() -> None:
    """A server on this machine has no shared quota: an unset rate does not hold it back."""
    remote, local = "https://api.example.com/v1", "http://127.0.0.1:8000/v1"
    assert stage_rates(None, None, remote) == (REMOTE_REQUESTS_PER_MINUTE, REMOTE_TOKENS_PER_MINUTE)
    assert stage_rates(None, None, local) == (NO_LIMIT_PER_MINUTE, NO_LIMIT_PER_MINUTE)
    assert stage_rates(240.0, 5e4, local) == (240.0, 5e4)  # a proxy to a hosted API
    assert stage_rates(240.0, None, remote) == (240.0, REMOTE_TOKENS_PER_MINUTE)
    # a task's bucket at the no-limit rate never waits for its concurrency's worth of requests
    rl = RateLimiter(NO_LIMIT_PER_MINUTE / 2, NO_LIMIT_PER_MINUTE / 2, max_concurrency=4)
    assert sum(rl.acquire(1000) for _ in range(200)) < 0.01
