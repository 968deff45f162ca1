"""The config keys that shape each run stage (`tracking/runs.py`: `STAGE_KEYS`, `NEUTRAL_KEYS`)
are derived from the config model's markers (`stage`, `key_stages` on each section): every key is
classified, and the derived lists are the ones kept by hand before (issue 22)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import pytest
from pydantic import BaseModel

from date_spark.config import NEUTRAL, Config, LlmConfig, keys_by_stage
from date_spark.tracking.runs import NEUTRAL_KEYS, STAGE_KEYS, STAGES, stage_of

# The hand-kept lists as they were before the derivation (tracking/runs.py at 696798d).
OLD_STAGE_KEYS: Mapping[str, tuple[str, ...]] = {
    "prepare": ("seed", "input.", "split."),
    "discovery": ("discovery.",),
    "generation": (
        "generation.",
        "llm.provider",
        "llm.model",
        "llm.api_version",
        "llm.structured_output",
        "llm.max_tokens",
        "llm.seed",
        "llm.local.model_path",
        "llm.local.model_alias",
        "llm.local.n_ctx",
        "selection.model",
        "selection.model_max_depth",
        "selection.loss",
        "selection.folds",
    ),
    "selection": ("selection.",),
    "output": ("output.",),
    "evaluation": ("evaluation.",),
}
OLD_NEUTRAL_KEYS: tuple[str, ...] = (
    "llm.base_url",
    "llm.api_key_env",
    "llm.timeout_s",
    "llm.max_retries",
    "llm.backoff_base_s",
    "llm.backoff_max_s",
    "llm.concurrency_per_task",
    "llm.max_tasks",
    "llm.requests_per_minute",
    "llm.tokens_per_minute",
    "llm.max_total_tokens",
    "llm.max_cost",
    "llm.prices",
    "llm.cache_path",
    "llm.local.port",
    "llm.local.n_threads",
    "llm.local.startup_timeout_s",
    "tracking.",
    "spark.",
    "output.runs_dir",
)


def matches(key: str, p: str) -> bool:
    return key == p or (p.endswith(".") and key.startswith(p)) or key.startswith(p + ".")


def old_stage_of(key: str) -> str | None:
    """`stage_of` as it was, over the old lists."""
    if any(matches(key, p) for p in OLD_NEUTRAL_KEYS):
        return None
    for stage in STAGES:
        if any(matches(key, p) for p in OLD_STAGE_KEYS.get(stage, ())):
            return stage
    return "prepare"


def leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf key of the config model (a mapping-valued key such as `spark.conf` is a leaf)."""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += leaf_keys(ann, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


LEAVES = leaf_keys(Config)
# Keys a saved config holds below a mapping-valued leaf, and keys the model does not know.
BELOW = ["llm.prices.gpt.prompt_per_1k", "spark.conf.spark.sql.shuffle.partitions"]
BELOW += ["input.csv_options.header", "evaluation.segments.old"]
UNKNOWN = ["discovery.gone", "llm.gone", "nosuch.key", "nosuch"]


def test_the_derived_lists_are_the_hand_kept_ones() -> None:
    assert set(STAGE_KEYS) == set(OLD_STAGE_KEYS) == set(STAGES)
    for stage in STAGES:
        assert sorted(STAGE_KEYS[stage]) == sorted(OLD_STAGE_KEYS[stage]), stage
        assert len(set(STAGE_KEYS[stage])) == len(STAGE_KEYS[stage]), stage
    assert sorted(NEUTRAL_KEYS) == sorted(OLD_NEUTRAL_KEYS)


def test_every_key_shapes_the_stage_it_did() -> None:
    assert len(LEAVES) > 100 and len(set(LEAVES)) == len(LEAVES)
    for key in LEAVES + BELOW + UNKNOWN:
        assert stage_of(key) == old_stage_of(key), key


def most_specific(key: str, lists: Mapping[str, Sequence[str]]) -> list[tuple[int, str]]:
    """(length, stage) of the longest entries of `lists` matching `key`."""
    hits = [(len(p), stage) for stage, ps in lists.items() for p in ps if matches(key, p)]
    longest = max((n for n, _ in hits), default=0)
    return [(n, s) for n, s in hits if n == longest]


def test_every_leaf_key_is_classified_once() -> None:
    """Each leaf key of the model is named by exactly one entry, a section (`section.`) or the key
    itself, under one stage or as neutral, and `stage_of` gives that entry's stage (a key marked
    apart from its section is not shadowed by the section)."""
    lists: dict[str, Sequence[str]] = {**STAGE_KEYS, NEUTRAL: NEUTRAL_KEYS}
    for key in LEAVES:
        best = most_specific(key, lists)
        assert len(best) == 1, (key, best)
        stage = best[0][1]
        assert stage_of(key) == (None if stage == NEUTRAL else stage), key


def test_a_new_key_nothing_classifies_is_refused() -> None:
    """A section without a `stage` names every key: one left out stops the derivation, naming it
    (as a stale name in `key_stages` does)."""

    class Newer(LlmConfig):
        new_key: int = 0

    with pytest.raises(TypeError, match=r"'llm\.new_key' shapes no stage.*Newer\.key_stages"):
        keys_by_stage(Newer, "llm.")

    class Stale(LlmConfig):
        key_stages: ClassVar[dict[str, str]] = {**LlmConfig.key_stages, "gone": NEUTRAL}

    with pytest.raises(TypeError, match=r"Stale\.key_stages names no key of it: \['gone'\]"):
        keys_by_stage(Stale, "llm.")
