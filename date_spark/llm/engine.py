"""What one Spark task does with its requests: cache, budget, rate limit, retries, validation.

Kept free of Spark so it runs the same inside `mapInPandas`, in a benchmark, or in a plain test.
A request's life: look up the cache (a hit is free and makes no call) -> reserve budget -> wait
for an AIMD concurrency slot and the rate buckets -> call -> on 429/5xx/timeout/connection error
back off (Retry-After honoured, jittered exponential otherwise) and retry up to `llm.max_retries`
-> store the reply in the cache -> validate every row. Replies with unusable content are not
retried: they were billed, they are cached, and their rows are counted as rejected.

A one-slot endpoint (the embedded llama.cpp server, `TaskPlan.one_slot`) keeps computing a reply
after the client gave up on it, and queues whatever comes next behind it. So a timeout there is
not retried (with a fixed seed the same request takes as long again, and each retry would only
queue behind the abandoned one), and before the next request the task waits until the server is
idle: llama-cpp-python's server answers `GET /models` only between completions (both hold the
model lock). A server still busy `_IDLE_WAIT_TIMEOUTS` timeouts later, or two timeouts before any
reply, fails the task's remaining requests at once with a message that names `llm.timeout_s`.

A task whose every attempt so far failed to connect declares the endpoint dead after the first
request exhausts its retries, and fails the rest at once, so a wrong URL costs seconds, not
minutes. Error texts name the URL and are scrubbed of the API key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import openai

from date_spark.config import LlmConfig
from date_spark.llm.budget import TaskBudget, price_for
from date_spark.llm.cache import CachedResponse, ResponseCache, cache_key
from date_spark.llm.client import DEFAULT_BASE_URL, key_required, make_client, read_api_key
from date_spark.llm.limits import (
    AdaptiveConcurrency,
    RateLimiter,
    backoff_delay,
    parse_retry_after,
    stage_rates,
)
from date_spark.llm.rows import RowSchema
from date_spark.llm.validation import validate_reply
from date_spark.secrets import mask_url

__all__ = ["STATUSES", "LlmRequest", "LlmResult", "TaskEngine", "TaskPlan", "estimate_tokens"]


log = logging.getLogger("date_spark.llm")

STATUSES = ("ok", "failed", "budget_exhausted", "invalid_request")
# After a timeout on a one-slot server, how many more `llm.timeout_s` to wait for it to go idle.
_IDLE_WAIT_TIMEOUTS = 2.0
# Timeouts on a one-slot server, before any reply, after which the task stops sending.
_TIMEOUTS_BEFORE_GIVING_UP = 2
_RETRY_STATUS = {408, 409, 425, 429}
_ABOUT_FORMAT = re.compile(r"(?i)response_format|json_schema|structured|grammar|schema")
_KEYLIKE = re.compile(r"(?i)(bearer\s+|api[-_]?key[\"'=:\s]+)[A-Za-z0-9._\-]{6,}")


@dataclass(frozen=True)
class LlmRequest:
    request_id: str
    messages: list[dict[str, Any]]
    schema: RowSchema
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None


@dataclass
class LlmResult:
    request_id: str
    status: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    off_rule: list[dict[str, Any]] = field(default_factory=list)  # valid but outside the rule
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_by_column: dict[str, dict[str, int]] = field(default_factory=dict)
    clipped: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    retries: int = 0
    cache_hit: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    finish_reason: str | None = None
    error: str | None = None
    first_call_at: float | None = field(default=None, repr=False)

    @property
    def n_valid(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class TaskPlan:
    """Everything the driver decides for a stage; pickled into the task closure (no secrets)."""

    cfg: LlmConfig
    base_url: str | None
    endpoint: str
    dialect: str
    num_tasks: int = 1
    token_share: float | None = None
    cost_share: float | None = None
    concurrency: int | None = None
    one_slot: bool = False  # the server computes one reply at a time and finishes abandoned ones

    @property
    def max_concurrency(self) -> int:
        return self.concurrency or self.cfg.concurrency_per_task

    def rates(self) -> tuple[float, float]:
        """The stage's requests and tokens a minute (`limits.stage_rates`); a task takes its
        share."""
        return stage_rates(self.cfg.requests_per_minute, self.cfg.tokens_per_minute, self.base_url)


class _Retryable(Exception):
    def __init__(
        self,
        message: str,
        *,
        overload: bool = False,
        retry_after: float | None = None,
        connection: bool = False,
        slot_timeout: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.overload = overload
        self.retry_after = retry_after
        self.connection = connection
        self.slot_timeout = slot_timeout  # timed out on a one-slot server: never retried


class _Fallback(Exception):
    """The endpoint rejected the structured-output dialect; resend as a plain prompt."""


class _Fatal(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def estimate_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """A deliberately high estimate (3 chars/token + per-message overhead) for reservations."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return chars // 3 + 8 * len(messages) + 8


class TaskEngine:
    """Sends one task's requests with bounded, adaptive concurrency. Build one per task."""

    def __init__(self, plan: TaskPlan, *, rng: random.Random | None = None) -> None:
        self.plan = plan
        cfg = plan.cfg
        self.cfg = cfg
        self._secrets = [s for s in [self._own_key()] if s and len(s) >= 4]
        self.client = make_client(cfg, plan.base_url)  # may raise ConfigError (no key)
        self.cache = ResponseCache(cfg.cache_path)
        n = max(1, plan.num_tasks)
        rpm, tpm = plan.rates()
        self.limiter = RateLimiter(rpm / n, tpm / n, plan.max_concurrency)
        self.concurrency = AdaptiveConcurrency(plan.max_concurrency)
        self.budget = TaskBudget(plan.token_share, plan.cost_share, price_for(cfg))
        self.dialect = plan.dialect
        self._auto = cfg.structured_output == "auto"
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._successes = 0
        self._slot_timeouts = 0
        self._dead: str | None = None
        # shown in messages only (requests use the client's own URL): no credentials in it
        self.url = mask_url(plan.base_url or DEFAULT_BASE_URL)

    def _own_key(self) -> str | None:
        try:
            if key_required(self.cfg) or self.cfg.api_key_env:
                k = read_api_key(self.cfg)
                return None if k.startswith("sk-no-key") else k
        except Exception:
            return None
        return None

    # -- public ---------------------------------------------------------------------------------
    def run(self, requests: Sequence[LlmRequest]) -> list[LlmResult]:
        """Results in request order. Never raises for a request's sake."""
        if not requests:
            return []
        # Twice as many threads as call slots: while one thread validates and caches a reply,
        # another already holds the freed slot, so the endpoint sees the full concurrency.
        workers = min(2 * self.plan.max_concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
            return list(pool.map(self._safe_one, requests))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing is best effort
            self.client.close()

    def redact(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return _KEYLIKE.sub(lambda m: m.group(1) + "***", text)

    # -- one request ----------------------------------------------------------------------------
    def _safe_one(self, req: LlmRequest) -> LlmResult:
        try:
            return self._one(req)
        except Exception as err:  # defensive: a bug must not kill the task and lose paid replies
            log.exception("request %s failed unexpectedly", req.request_id)
            return LlmResult(
                req.request_id, "failed", error=self.redact(f"{type(err).__name__}: {err}")
            )

    def params(self, req: LlmRequest, dialect: str) -> dict[str, Any]:
        messages = list(req.messages)
        if dialect == "none":
            messages = [*messages, {"role": "user", "content": req.schema.instruction()}]
        p: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": messages,
            "max_tokens": req.max_tokens or self.cfg.max_tokens,
        }
        if req.temperature is not None:
            p["temperature"] = req.temperature
        seed = req.seed if req.seed is not None else self.cfg.seed
        if seed is not None:
            p["seed"] = int(seed)
        p.update(req.schema.request_kwargs(dialect))
        return p

    @contextmanager
    def _single_flight(self, key: str) -> Iterator[None]:
        """Identical requests inside a task wait for the first one and then hit the cache."""
        with self._lock:
            lk = self._key_locks.setdefault(key, threading.Lock())
        with lk:
            yield

    def _one(self, req: LlmRequest) -> LlmResult:
        res = LlmResult(req.request_id, "failed")
        if self._auto and self.dialect != "none":
            # An earlier run may have fallen back to plain prompts for this endpoint: its reply is
            # cached under the plain-prompt key, and a rerun must not pay for the 400 again.
            fallback_hit = self.cache.get(cache_key(self.plan.endpoint, self.params(req, "none")))
            if fallback_hit is not None:
                res.cache_hit = True
                self._finish(req, res, fallback_hit)
                return res
        for _ in range(2):  # a second pass only after a dialect fallback
            dialect = self.dialect
            params = self.params(req, dialect)
            key = cache_key(self.plan.endpoint, params)
            with self._single_flight(key):
                fallback = self._send(req, params, key, dialect, res)
            if not fallback:
                break
        # From the first attempt to the last answer, retries and backoff included; time spent
        # queueing for a concurrency slot or the rate limiter before that is not the endpoint's.
        started = res.first_call_at
        res.latency_s = time.monotonic() - started if started is not None else 0.0
        return res

    def _send(
        self, req: LlmRequest, params: dict[str, Any], key: str, dialect: str, res: LlmResult
    ) -> bool:
        """Fill `res`; True means "retry this request in the fallback dialect"."""
        hit = self.cache.get(key)
        if hit is not None:
            res.cache_hit = True
            self._finish(req, res, hit)
            return False
        if self._dead is not None:
            res.status, res.error = "failed", self._dead
            return False
        prompt_est = estimate_tokens(params["messages"])
        reservation = self.budget.reserve(prompt_est, params["max_tokens"])
        if reservation is None:
            res.status = "budget_exhausted"
            res.error = "token/cost budget spent; no call made"
            return False
        est_total = prompt_est + params["max_tokens"]
        try:
            reply = self._call_with_retries(req, params, est_total, dialect, res)
        except _Fallback:
            self.budget.release(reservation)
            return True
        if reply is None:
            self.budget.release(reservation)
            return False
        # Success: bill, cache, validate.
        with self._lock:
            self._successes += 1
        cost = self.budget.settle(reservation, reply.prompt_tokens, reply.completion_tokens)
        self.limiter.settle(est_total, reply.prompt_tokens + reply.completion_tokens)
        self.cache.put(key, reply)
        res.prompt_tokens += reply.prompt_tokens
        res.completion_tokens += reply.completion_tokens
        res.cost += cost
        self._finish(req, res, reply)
        return False

    def _call_with_retries(
        self,
        req: LlmRequest,
        params: dict[str, Any],
        est_total: float,
        dialect: str,
        res: LlmResult,
    ) -> CachedResponse | None:
        """The reply, or None with `res` marked failed. Raises `_Fallback` to switch dialect."""
        attempt = 0
        while True:
            if self._dead is not None:  # another request proved the endpoint unreachable
                res.status, res.error = "failed", self._dead
                return None
            try:
                return self._call(params, est_total, res)
            except _Retryable as r:
                if r.slot_timeout:
                    self._give_up_on_slot(r, res)
                    return None
                if attempt >= self.cfg.max_retries:
                    res.status, res.error = (
                        "failed",
                        self.redact(f"{r.message} (gave up after {attempt + 1} attempts)"),
                    )
                    if r.connection and self._successes == 0:
                        self._dead = res.error
                    return None
                if r.retry_after is not None and r.retry_after > self.cfg.backoff_max_s:
                    res.status, res.error = (
                        "failed",
                        self.redact(
                            f"{r.message}; the server asked to wait {r.retry_after:.0f}s, more "
                            f"than llm.backoff_max_s={self.cfg.backoff_max_s:g}"
                        ),
                    )
                    return None
                delay = backoff_delay(
                    attempt,
                    self.cfg.backoff_base_s,
                    self.cfg.backoff_max_s,
                    r.retry_after,
                    self._rng,
                )
                if r.overload:
                    if self.concurrency.on_overload(delay) and self.concurrency.limit <= 1:
                        # Concurrency is at its floor and 429s still come: slow the request rate.
                        self.limiter.on_overload()
                elif r.connection and self._successes == 0:
                    # Nothing got through yet: probe with fewer calls instead of all at once.
                    self.concurrency.on_overload(delay)
                log.debug(
                    "request %s: %s; retry %d in %.2fs",
                    req.request_id,
                    self.redact(r.message),
                    attempt + 1,
                    delay,
                )
                time.sleep(delay)
                attempt += 1
                res.retries += 1
            except _Fatal as f:
                self._fall_back_or_fail(f, dialect, res)
                return None

    def _fall_back_or_fail(self, f: _Fatal, dialect: str, res: LlmResult) -> None:
        """A 400/422 about structured output on an auto dialect raises `_Fallback` (plain
        prompts from now on, for this task); any other fatal reply marks `res` failed."""
        if (
            self._auto
            and dialect != "none"
            and f.status in (400, 422)
            and (self._successes == 0 or _ABOUT_FORMAT.search(f.message))
        ):
            with self._lock:
                switched, self.dialect = self.dialect != "none", "none"
            if switched:
                log.warning(
                    "endpoint %s rejected structured output %r (HTTP %s); falling back "
                    "to plain prompts for this task",
                    self.url,
                    dialect,
                    f.status,
                )
            raise _Fallback() from None
        res.status, res.error = "failed", self.redact(f.message)

    def _give_up_on_slot(self, r: _Retryable, res: LlmResult) -> None:
        """A timeout on a one-slot server: this request fails, not retried."""
        res.status = "failed"
        res.error = self.redact(
            f"{r.message}; not retried: the local model serves one request at a time and would "
            f"take as long again; raise llm.timeout_s (or lower llm.max_tokens)"
        )

    def _after_slot_timeout(self) -> None:
        """Called holding the call slot: wait until the server is idle, and stop the task when
        it stays busy or nothing has come back after repeated timeouts."""
        t = self.cfg.timeout_s
        idle = self._wait_idle()
        with self._lock:
            self._slot_timeouts += 1
            n, ok = self._slot_timeouts, self._successes
        if not idle:
            self._dead = self.redact(
                f"the local model server at {self.url} was still busy "
                f"{_IDLE_WAIT_TIMEOUTS * t:g}s after a request timed out (llm.timeout_s={t:g}); "
                f"raise llm.timeout_s (or lower llm.max_tokens)"
            )
        elif ok == 0 and n >= _TIMEOUTS_BEFORE_GIVING_UP:
            self._dead = self.redact(
                f"{n} requests in a row timed out after {t:g}s at the local model server "
                f"{self.url} and none was answered; raise llm.timeout_s (or lower llm.max_tokens)"
            )

    def _wait_idle(self) -> bool:
        """After a timeout on a one-slot server, block until it finished the abandoned reply:
        llama-cpp-python's server answers `GET /models` only between completions. True when it
        answered (or cannot tell: no such route, or it is gone), False when still busy."""
        wait = _IDLE_WAIT_TIMEOUTS * self.cfg.timeout_s
        try:
            self.client.with_options(timeout=wait, max_retries=0).models.list()
        except openai.APITimeoutError:
            return False
        except openai.APIError:
            return True
        return True

    def _finish(self, req: LlmRequest, res: LlmResult, reply: CachedResponse) -> None:
        v = validate_reply(req.schema, reply.content)
        res.status = "ok"
        res.error = None
        res.rows = v.rows
        res.off_rule = v.off_rule
        res.rejected = v.rejected
        res.rejected_by_column = v.by_column_json()
        res.clipped = {c: int(n) for c, n in sorted(v.clipped.items()) if n}
        res.finish_reason = reply.finish_reason

    def _call(self, params: dict[str, Any], est_total: float, res: LlmResult) -> CachedResponse:
        self.concurrency.acquire()
        try:
            if self._dead is not None:  # decided while this request waited for the slot
                raise _Fatal(self._dead)
            self.limiter.acquire(est_total)
            res.calls += 1
            if res.first_call_at is None:
                res.first_call_at = time.monotonic()
            try:
                comp = self.client.chat.completions.create(**params)
            except openai.APITimeoutError:
                t = self.cfg.timeout_s
                msg = f"timed out after {t:g}s waiting for {self.url} (llm.timeout_s)"
                if self.plan.one_slot:
                    # Still holding this task's call slot: nothing else is sent meanwhile.
                    self._after_slot_timeout()
                    raise _Retryable(msg, slot_timeout=True) from None
                raise _Retryable(msg) from None
            except openai.APIConnectionError as err:
                cause = err.__cause__ or err.__context__
                detail = f"{type(cause).__name__}: {cause}" if cause else str(err)
                raise _Retryable(
                    f"cannot connect to {self.url} ({detail})", connection=True
                ) from None
            except openai.APIStatusError as err:
                status = err.status_code
                msg = f"HTTP {status} from {self.url}: {str(err.message)[:300]}"
                after = parse_retry_after(dict(err.response.headers))
                if status == 429:
                    raise _Retryable(msg, overload=True, retry_after=after) from None
                if status in _RETRY_STATUS or status >= 500:
                    raise _Retryable(msg, retry_after=after) from None
                raise _Fatal(msg, status) from None
            except openai.APIError as err:  # e.g. a 200 whose body is not a completion
                raise _Retryable(f"bad response from {self.url}: {type(err).__name__}") from None
            except (json.JSONDecodeError, ValueError) as err:
                raise _Retryable(f"unreadable response from {self.url}: {err}") from None
        finally:
            self.concurrency.release()
        self.concurrency.on_success()
        self.limiter.on_success()
        choice = comp.choices[0] if comp.choices else None
        content = (choice.message.content if choice and choice.message else None) or ""
        usage = comp.usage
        prompt = usage.prompt_tokens if usage and usage.prompt_tokens is not None else None
        completion = (
            usage.completion_tokens if usage and usage.completion_tokens is not None else None
        )
        if prompt is None:
            prompt = estimate_tokens(params["messages"])
        if completion is None:
            completion = len(content) // 3 + 1
        return CachedResponse(
            content=content,
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            finish_reason=choice.finish_reason if choice else None,
            model=comp.model,
        )
