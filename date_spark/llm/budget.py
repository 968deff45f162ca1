"""A hard token/cost budget that holds across a distributed stage and across stages.

The driver owns one `Budget` per job (`llm.max_total_tokens`, `llm.max_cost`). Before each stage
the gateway gives every task an equal share of what is left (`Budget.shares`); the share travels in
the task closure as two numbers. Inside a task, `TaskBudget.reserve` sets aside the worst case of a
call (estimated prompt tokens + `max_tokens`) before it is sent and `settle` replaces the
reservation with the billed `usage` afterwards; when a reservation does not fit, the task makes no
more calls and marks its remaining requests `budget_exhausted` (cache hits are free and still
served). After the stage the driver charges the billed totals (`Budget.charge`), so the next stage
divides only what is really left. Because no task can exceed its share and shares sum to the
remainder, the total never exceeds the budget, up to the error of the prompt-token estimate of
in-flight calls (completion tokens are capped by `max_tokens`). A share a task leaves unused
returns to the pool for the next stage.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from date_spark.config import LlmConfig, ModelPrice
from date_spark.errors import ConfigError

__all__ = ["Budget", "TaskBudget", "check_prices", "cost_of", "price_for"]


def price_for(cfg: LlmConfig) -> ModelPrice | None:
    return cfg.prices.get(cfg.model)


def cost_of(price: ModelPrice | None, prompt_tokens: float, completion_tokens: float) -> float:
    if price is None:
        return 0.0
    return (
        prompt_tokens / 1000.0 * price.prompt_per_1k
        + completion_tokens / 1000.0 * price.completion_per_1k
    )


def check_prices(cfg: LlmConfig) -> None:
    """A cost budget without a price for the model would never stop anything: refuse it."""
    if cfg.max_cost is not None and price_for(cfg) is None:
        raise ConfigError(
            f"llm.max_cost is set but llm.prices has no entry for model {cfg.model!r}; add "
            f"llm.prices.{cfg.model}.prompt_per_1k and completion_per_1k, or unset llm.max_cost"
        )


@dataclass
class Budget:
    """Driver-side ledger for one job. Pass the same instance to every gateway stage."""

    max_tokens: int | None = None
    max_cost: float | None = None
    spent_tokens: int = 0
    spent_cost: float = 0.0
    exhausted: bool = False

    @classmethod
    def from_config(cls, cfg: LlmConfig) -> Budget:
        return cls(max_tokens=cfg.max_total_tokens, max_cost=cfg.max_cost)

    @property
    def remaining_tokens(self) -> float | None:
        return None if self.max_tokens is None else max(0.0, self.max_tokens - self.spent_tokens)

    @property
    def remaining_cost(self) -> float | None:
        return None if self.max_cost is None else max(0.0, self.max_cost - self.spent_cost)

    def shares(self, num_tasks: int) -> tuple[float | None, float | None]:
        """Each task's (tokens, cost) allowance; None = unlimited."""
        n = max(1, num_tasks)
        rt, rc = self.remaining_tokens, self.remaining_cost
        return (None if rt is None else rt / n, None if rc is None else rc / n)

    def charge(self, tokens: int, cost: float, exhausted: bool = False) -> None:
        self.spent_tokens += int(tokens)
        self.spent_cost += float(cost)
        rt, rc = self.remaining_tokens, self.remaining_cost
        if exhausted or (rt is not None and rt <= 0) or (rc is not None and rc <= 0):
            self.exhausted = True


class TaskBudget:
    """One task's allowance, shared by its worker threads."""

    def __init__(self, tokens: float | None, cost: float | None, price: ModelPrice | None) -> None:
        self.tokens = tokens
        self.cost = cost
        self.price = price
        self.used_tokens = 0.0
        self.used_cost = 0.0
        self.reserved_tokens = 0.0
        self.reserved_cost = 0.0
        self.exhausted = False
        self._lock = threading.Lock()

    def reserve(self, prompt_est: float, completion_max: float) -> tuple[float, float] | None:
        """Set aside a call's worst case; None (and no more calls by this task) if it won't fit."""
        t = prompt_est + completion_max
        c = cost_of(self.price, prompt_est, completion_max)
        with self._lock:
            if self.exhausted:
                return None
            tokens_after = self.used_tokens + self.reserved_tokens + t
            cost_after = self.used_cost + self.reserved_cost + c
            over_t = self.tokens is not None and tokens_after > self.tokens
            over_c = self.cost is not None and cost_after > self.cost
            if over_t or over_c:
                self.exhausted = True
                return None
            self.reserved_tokens += t
            self.reserved_cost += c
            return (t, c)

    def settle(self, reservation: tuple[float, float], prompt: int, completion: int) -> float:
        """Replace a reservation by the billed usage; returns the call's cost."""
        cost = cost_of(self.price, prompt, completion)
        with self._lock:
            self.reserved_tokens -= reservation[0]
            self.reserved_cost -= reservation[1]
            self.used_tokens += prompt + completion
            self.used_cost += cost
        return cost

    def release(self, reservation: tuple[float, float]) -> None:
        with self._lock:
            self.reserved_tokens -= reservation[0]
            self.reserved_cost -= reservation[1]
