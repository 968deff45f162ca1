"""Per-task flow control: token buckets, AIMD concurrency and backoff.

Rates are per Spark task: the driver divides `requests_per_minute` and `tokens_per_minute` by the
number of tasks it launches, so the sum over concurrently running tasks stays within the configured
rate (the gateway launches no more tasks than the session runs at once, so all of them run at once
and use the whole rate). Every HTTP attempt, retries included, takes a request token, so a storm of
429s cannot push the attempt rate above the limit. On a 429 the whole task pauses for Retry-After
(or the backoff) and halves its concurrency, and once that is down to 1 also its request rate; each
success adds them back additively, so throughput recovers once the storm passes.
"""

from __future__ import annotations

import email.utils
import ipaddress
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

__all__ = [
    "NO_LIMIT_PER_MINUTE",
    "REMOTE_REQUESTS_PER_MINUTE",
    "REMOTE_TOKENS_PER_MINUTE",
    "AdaptiveConcurrency",
    "RateLimiter",
    "TokenBucket",
    "backoff_delay",
    "on_this_machine",
    "parse_retry_after",
    "stage_rates",
]

# `llm.requests_per_minute` / `llm.tokens_per_minute` left unset: a hosted API's usual quota for a
# remote endpoint; for one on this machine, a rate no task reaches (a finite number, so the
# buckets' arithmetic and the slow-down on 429s work unchanged).
REMOTE_REQUESTS_PER_MINUTE = 600.0
REMOTE_TOKENS_PER_MINUTE = 1_000_000.0
NO_LIMIT_PER_MINUTE = 1e9


def on_this_machine(url: str | None) -> bool:
    """Whether `url` names this machine (localhost, 127.0.0.0/8, ::1). No URL (the provider's
    hosted default) is remote."""
    host = (urlsplit(url).hostname or "") if url else ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def stage_rates(
    requests_per_minute: float | None, tokens_per_minute: float | None, url: str | None
) -> tuple[float, float]:
    """The stage's rates: the configured ones, else the remote defaults, or no limit for an
    endpoint on this machine (no shared quota to protect)."""
    local = on_this_machine(url)
    rpm = requests_per_minute or (NO_LIMIT_PER_MINUTE if local else REMOTE_REQUESTS_PER_MINUTE)
    tpm = tokens_per_minute or (NO_LIMIT_PER_MINUTE if local else REMOTE_TOKENS_PER_MINUTE)
    return rpm, tpm


class TokenBucket:
    """Refills at `rate` per second up to `capacity`. A request larger than the capacity waits for a
    full bucket and then runs into debt, so nothing waits forever."""

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, n: float = 1.0) -> float:
        """Take `n` tokens, sleeping as needed; returns seconds waited."""
        waited = 0.0
        need = min(n, self.capacity)
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= need:
                    self._tokens -= n
                    return waited
                delay = (need - self._tokens) / self.rate
            self._sleep(delay)
            waited += delay

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._refill()
            self.rate = rate

    def adjust(self, delta: float) -> None:
        """Give back (`delta > 0`) or charge extra (`delta < 0`) once the real size is known."""
        with self._lock:
            self._refill()
            self._tokens = min(self.capacity, self._tokens + delta)


class RateLimiter:
    """A task's share of requests/min and tokens/min. The request rate adapts too: when 429s keep
    coming with concurrency already at 1 (a shared quota allows less than configured), it halves
    from the rate actually observed; each success adds back 10% of the configured rate."""

    def __init__(
        self, requests_per_minute: float, tokens_per_minute: float, max_concurrency: int
    ) -> None:
        rps = requests_per_minute / 60.0
        tps = tokens_per_minute / 60.0
        self.max_rps = rps
        self.min_rps = rps / 100.0
        self.requests = TokenBucket(rps, max(1.0, min(rps, float(max_concurrency))))
        self.tokens = TokenBucket(tps, max(1.0, tps))
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self, est_tokens: float) -> float:
        waited = self.requests.acquire(1.0) + self.tokens.acquire(max(1.0, est_tokens))
        now = time.monotonic()
        with self._lock:
            self._recent.append(now)
            while self._recent and self._recent[0] < now - 2.0:
                self._recent.popleft()
        return waited

    def observed_rps(self) -> float:
        with self._lock:
            return len(self._recent) / 2.0

    def on_overload(self) -> None:
        base = min(self.requests.rate, max(self.observed_rps(), self.min_rps))
        self.requests.set_rate(max(self.min_rps, base / 2.0))

    def on_success(self) -> None:
        if self.requests.rate < self.max_rps:
            self.requests.set_rate(min(self.max_rps, self.requests.rate + self.max_rps / 10.0))

    def settle(self, est_tokens: float, actual_tokens: float) -> None:
        self.tokens.adjust(max(1.0, est_tokens) - actual_tokens)


class AdaptiveConcurrency:
    """AIMD limit on in-flight calls, plus a task-wide pause after a 429."""

    def __init__(self, max_limit: int, min_limit: int = 1) -> None:
        self.max_limit = max(1, max_limit)
        self.min_limit = max(1, min(min_limit, self.max_limit))
        self.limit = float(self.max_limit)
        self.in_flight = 0
        self.decreases = 0
        self._pause_until = 0.0
        self._next_decrease = 0.0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                if now < self._pause_until:
                    self._cond.wait(self._pause_until - now)
                    continue
                if self.in_flight < int(self.limit):
                    self.in_flight += 1
                    return
                self._cond.wait(0.5)

    def release(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def on_success(self) -> None:
        with self._cond:
            before = int(self.limit)
            self.limit = min(float(self.max_limit), self.limit + 1.0 / self.limit)
            if int(self.limit) > before:
                self._cond.notify_all()

    def on_overload(self, pause_s: float) -> bool:
        """Halve the limit (once per pause window, so one burst of 429s counts once) and pause.
        True when this call decreased the limit."""
        with self._cond:
            now = time.monotonic()
            decreased = now >= self._next_decrease
            if decreased:
                self.limit = max(float(self.min_limit), self.limit / 2.0)
                self.decreases += 1
                self._next_decrease = now + max(pause_s, 0.05)
            self._pause_until = max(self._pause_until, now + pause_s)
            return decreased


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = lower.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def backoff_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Retry-After plus up to 20% jitter when the server gave one; otherwise exponential with equal
    jitter (half fixed, half random) capped at `max_s`, so retries never bunch up at zero."""
    r = rng or random
    if retry_after is not None:
        return retry_after * (1.0 + 0.2 * r.random()) + 0.01 * r.random()
    exp = min(max_s, base_s * (2.0**attempt))
    return exp / 2.0 + r.uniform(0.0, exp / 2.0)
