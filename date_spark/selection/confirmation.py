"""Selection's confirmation and power: one paired test per partition on rows the search never
saw, Holm's step-down, and per partition the minimum detectable effect and the ceiling.

The final kept set is tested once, on the confirmation rows (the validation split, which
discovery, generation and the screen never see), cross-fitted with the screening rows always in
training: one paired z test per partition the set adds rows to (that partition's confirmation
rows, with vs without its arms), Holm's step-down at the level of ``min_z`` (1.645, one-sided
5%): with one partition it is exactly ``z > min_z``; with m, the smallest p-value must pass at
5%/m, the next at 5%/(m-1), and so on. `selection.confirm_selection` keeps the arms of the
partitions that pass and drops the others.

*Power.* For every partition, the confirmation reports its *minimum detectable effect*: the
smallest mean loss reduction its rows detect with probability ``power`` at ``min_z``,
``(min_z + z_power) * sd(d) / sqrt(n)``, where ``d`` is the per-row loss change of a placebo arm
(as many of the partition's own training rows, drawn again, as the budget could add): the refit
noise a real arm's effect must rise above. Beside it, the *ceiling*: what the partition's last
real rows bought (the model without vs with them), the most rows of its own kind could buy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from date_spark.columns import ARM
from date_spark.config import SelectionConfig
from date_spark.selection.crossfit import MIN_GAIN, CrossFitEvaluator, paired_z

__all__ = [
    "Confirmation",
    "PartitionPower",
    "PartitionTest",
    "holm_tests",
    "partition_power",
]


def _share(x: float) -> str:
    """A percentage that does not round a small share to 0%."""
    return f"{x:.0%}" if x >= 0.095 else f"{x:.1%}" if x >= 0.0095 else f"{x:.2%}"


@dataclass(frozen=True)
class PartitionPower:
    """What one partition's confirmation rows can show. `mde` is the smallest mean loss reduction
    detected with probability `power` at `min_z` (loss units), `mde_relative` the same as a share
    of the partition's loss; NaN when the placebo changed nothing (a constant model)."""

    key: str
    rows: int
    loss: float
    mde: float
    mde_relative: float
    # The ceiling: the loss reduction the partition's last `ceiling_rows` real rows bought on
    # these rows (its model without them vs with them); new rows of the real distribution, the
    # best a generator can write, buy about this much or less (NaN when it has too few rows).
    ceiling_rows: int = 0
    ceiling_relative: float = math.nan

    def ceiling_text(self) -> str:
        if not self.ceiling_rows or not math.isfinite(self.ceiling_relative):
            return ""
        what = "lowered" if self.ceiling_relative >= 0 else "raised"
        return (
            f"its last {self.ceiling_rows} real rows {what} its loss by "
            f"{_share(abs(self.ceiling_relative))}"
        )

    def text(self) -> str:
        ceiling = self.ceiling_text()
        tail = f" ({ceiling})" if ceiling else ""
        if not math.isfinite(self.mde_relative):
            return f"{self.key} ({self.rows} rows): not measurable{tail}"
        below = _share(self.mde_relative)
        return f"{self.key} ({self.rows} rows): a gain below {below} cannot be seen{tail}"


@dataclass(frozen=True)
class PartitionTest:
    """The confirmation of one partition's screened arms (Holm's step `threshold` in z)."""

    key: str
    arms: tuple[str, ...]
    rows: int
    baseline_loss: float
    loss: float
    z: float
    threshold: float
    passed: bool

    def text(self) -> str:
        verdict = "kept" if self.passed else "dropped"
        rel = (self.baseline_loss - self.loss) / self.baseline_loss if self.baseline_loss else 0.0
        return (
            f"{self.key}: loss {-100 * rel:+.1f}% on {self.rows} rows, z={self.z:.2f} vs "
            f"{self.threshold:.2f}: {verdict}"
        )


@dataclass(frozen=True)
class Confirmation:
    """The test of the searched set on the confirmation rows, and the power of those rows."""

    tested: bool  # False when there was nothing to confirm, or `confirm: false`
    passed: bool
    rows: int
    baseline_loss: float
    loss: float
    z: float
    min_z: float
    mde: float  # over every confirmation row (loss units)
    mde_relative: float
    partitions: tuple[PartitionPower, ...] = ()
    tests: tuple[PartitionTest, ...] = ()

    @property
    def gain(self) -> float:
        return self.baseline_loss - self.loss

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gain"] = self.gain
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Confirmation:
        d = {k: v for k, v in d.items() if k != "gain"}
        parts = tuple(PartitionPower(**p) for p in d.pop("partitions", ()))
        tests = tuple(PartitionTest(**{**t, "arms": tuple(t["arms"])}) for t in d.pop("tests", ()))
        return Confirmation(**d, partitions=parts, tests=tests)

    def power_text(self, limit: int = 6) -> str:
        """One line: which partitions could not show a gain of what size."""
        parts = sorted(self.partitions, key=lambda p: -p.rows)
        shown = "; ".join(p.text() for p in parts[:limit])
        more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
        whole = (
            f"all {self.rows} confirmation rows together: below {_share(self.mde_relative)}"
            if math.isfinite(self.mde_relative)
            else f"{self.rows} confirmation rows"
        )
        return f"{whole}; {shown}{more}" if shown else whole


def _z_power(power: float) -> float:
    return NormalDist().inv_cdf(power)


def partition_power(
    evaluator: CrossFitEvaluator, cfg: SelectionConfig, seed: int
) -> tuple[tuple[PartitionPower, ...], float, float]:
    """Per-partition minimum detectable effects from a placebo arm (module doc), and the same over
    every row: (partitions, mde, mde_relative)."""
    k = max(cfg.min_z, 0.0) + _z_power(cfg.power)
    base_all, plac_all = [], []
    out: list[PartitionPower] = []
    for j, key in enumerate(evaluator.keys):
        n = evaluator.scored_rows(j)
        if n == 0:
            continue
        placebo = evaluator.placebo(j, cfg.budget_rows, seed)
        base = evaluator.partition_loss_vector(j, None)
        plac = evaluator.partition_loss_vector(j, placebo) if len(placebo) else base
        base_all.append(base)
        plac_all.append(plac)
        held, without = evaluator.ceiling(j, cfg.budget_rows, seed)
        ceiling = (
            float(np.mean(without) - np.mean(base)) / float(np.mean(without))
            if held and float(np.mean(without)) > 0
            else math.nan
        )
        out.append(
            PartitionPower(key, n, float(np.mean(base)), *_mde(base, plac, k), held, ceiling)
        )
    if not base_all:
        return (), math.nan, math.nan
    mde, rel = _mde(np.concatenate(base_all), np.concatenate(plac_all), k)
    return tuple(out), mde, rel


def _mde(base: np.ndarray, placebo: np.ndarray, k: float) -> tuple[float, float]:
    d = base - placebo
    if len(d) < 2:
        return math.nan, math.nan
    sd = float(np.std(d, ddof=1))
    if sd <= 0.0:
        return math.nan, math.nan
    mde = k * sd / math.sqrt(len(d))
    loss = float(np.mean(base))
    return mde, (mde / loss if loss > 0 else math.nan)


def holm_tests(
    rows: pd.DataFrame, evaluator: CrossFitEvaluator, cfg: SelectionConfig
) -> tuple[PartitionTest, ...]:
    """One paired test per partition the searched `rows` (tagged with their arm) fall in, Holm's
    step-down (module doc)."""
    arm_ids = rows[ARM].to_numpy() if ARM in rows else np.zeros(len(rows))
    plain = rows.drop(columns=[ARM], errors="ignore").reset_index(drop=True)
    where = evaluator.route(plain) if len(plain) else np.zeros(0, dtype=int)
    found = []
    for j, key in enumerate(evaluator.keys):
        mine = where == j
        if not mine.any() or evaluator.scored_rows(j) == 0:
            continue
        before = evaluator.partition_loss_vector(j, None)
        after = evaluator.partition_loss_vector(j, plain[mine].reset_index(drop=True))
        arms = tuple(sorted({str(a) for a in arm_ids[mine]}))
        found.append((key, arms, before, after, paired_z(before, after)))
    m = len(found)
    alpha = 1.0 - NormalDist().cdf(cfg.min_z)
    out: list[PartitionTest] = []
    failed = False
    for step, (key, arms, before, after, z) in enumerate(sorted(found, key=lambda f: -f[4])):
        threshold = (
            cfg.min_z if cfg.min_z <= 0 or m == 1
            else NormalDist().inv_cdf(1.0 - alpha / (m - step))
        )  # fmt: skip
        b, a = float(np.mean(before)), float(np.mean(after))
        ok = not failed and b - a > MIN_GAIN and z > threshold
        failed = failed or (not ok and cfg.min_z > 0)
        out.append(PartitionTest(key, arms, len(before), b, a, z, threshold, ok))
    # an arm whose rows straddle partitions is kept only when every partition it touches passed
    bad = {a for t in out if not t.passed for a in t.arms}
    return tuple(
        PartitionTest(t.key, t.arms, t.rows, t.baseline_loss, t.loss, t.z, t.threshold,
                      t.passed and not (set(t.arms) & bad))
        for t in out
    )  # fmt: skip
