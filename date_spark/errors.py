"""Domain errors. Each carries the CLI exit code so every entry point maps failures the same way."""

from __future__ import annotations

__all__ = [
    "BudgetExhausted",
    "ConfigError",
    "DateSparkError",
    "DiscoveryError",
    "EndpointError",
    "InputError",
    "Interrupted",
    "NotFittedError",
    "OutputError",
    "PromptBudgetError",
    "RuleError",
    "interrupted_by",
]


class DateSparkError(Exception):
    """Base class: a one-line message naming the problem and the fix."""

    exit_code: int = 1


class ConfigError(DateSparkError):
    """The configuration is malformed or names something that does not exist."""

    exit_code = 2


class InputError(DateSparkError):
    """The input table cannot be used as it is (missing, wrong columns, wrong types, too small)."""

    exit_code = 2


class RuleError(DateSparkError, ValueError):
    """A rule's text or JSON form is invalid for the table it is meant for."""

    exit_code = 2


class PromptBudgetError(ConfigError):
    """Even the smallest prompt is over `generation.prompt_token_budget`: the budget is a hard
    limit, so the request is never sent."""


class NotFittedError(DateSparkError, AttributeError):
    """A method that reads learned state (`rules_`, `arms_`, `selection_`) ran before `fit`.
    An AttributeError too, as scikit-learn's is, so `hasattr` checks keep working."""


class OutputError(DateSparkError):
    """The output location is unsafe or the write could not be committed."""

    exit_code = 2


class DiscoveryError(DateSparkError):
    """Rule discovery cannot run with the given data and limits."""

    exit_code = 2


class EndpointError(DateSparkError):
    """The LLM endpoint is unreachable or keeps failing after retries."""

    exit_code = 3


class BudgetExhausted(DateSparkError):
    """The configured token or cost budget is spent; no further LLM calls are made."""

    exit_code = 3


class Interrupted(DateSparkError):
    """The user stopped the run (Ctrl-C / SIGINT); the message names the run and how to resume."""

    exit_code = 130

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


def interrupted_by(exc: BaseException) -> bool:
    """A KeyboardInterrupt anywhere in the chain: pyspark's cleanup after Ctrl-C often raises a
    Java error (a broken pipe) in place of the interrupt it was handling."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False
