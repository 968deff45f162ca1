"""What the report is drawn from (`ReportInputs`), what a section of it is (`Section`), and how
far sampling noise alone moves a column-shape score."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from date_spark.evaluation.evaluator import EvaluationResult

# A column-shape score is 1 - KS statistic. Two samples from the SAME distribution differ by up
# to 1.358 * sqrt(1/n + 1/m) at the 95% level, so with few synthetic rows a perfect generator
# scores far below 1. Above this noise the fidelity figures cannot tell good rows from bad ones.
KS_95 = 1.358
FIDELITY_NOISE_MAX = 0.10


def fidelity_noise(synthetic_rows: int, real_rows: int) -> float:
    """The 95% bound on a column-shape score's shortfall from 1 that sampling alone produces."""
    if synthetic_rows <= 0 or real_rows <= 0:
        return 1.0
    return min(1.0, KS_95 * math.sqrt(1 / synthetic_rows + 1 / real_rows))


def rows_for_fidelity(real_rows: int) -> int | None:
    """Synthetic rows needed before the sampling noise drops to `FIDELITY_NOISE_MAX`."""
    room = (FIDELITY_NOISE_MAX / KS_95) ** 2 - 1 / max(real_rows, 1)
    return math.ceil(1 / room) if room > 0 else None


@dataclass
class ReportInputs:
    """Everything a section may show; any of it may be missing."""

    result: EvaluationResult | None
    title: str = "date-spark evaluation"
    coverage: Mapping[str, float] | None = None  # rule text -> training rows it covers
    arm_gains: Mapping[str, float] | None = None  # arm id -> validation gain at generation
    selection_trace: Sequence[Mapping[str, Any]] | None = None  # one mapping per step
    errors: Mapping[str, float] | None = None  # setting -> test error (decision tree)
    utility: Mapping[str, float] | None = None  # flat utility numbers (`Utility.metrics()`)
    nothing_kept: str | None = None  # why no synthetic row was kept (None: rows were kept)
    task: str | None = None
    error_label: str | None = None  # what the `errors` numbers are, e.g. "Brier score (tree)"
    gains: Sequence[Mapping[str, Any]] | None = None  # `Gain.to_dict()` per effect
    headline: str | None = None  # one sentence on the utility, shown first
    # `Confirmation.to_dict()` (+ "power": the power level): what the confirmation rows could see
    power: Mapping[str, Any] | None = None

    @property
    def utility_numbers(self) -> Mapping[str, float] | None:
        if self.utility:
            return self.utility
        return self.result.utility if self.result is not None else None

    @property
    def task_name(self) -> str:
        return self.task or (self.result.task if self.result is not None else "")

    @property
    def error_name(self) -> str:
        if self.error_label:
            return self.error_label
        return "mean squared error" if self.task_name == "regression" else "error rate"

    @property
    def noise(self) -> float | None:
        r = self.result
        return None if r is None else fidelity_noise(r.synthetic_rows, r.real_rows)

    @property
    def too_few(self) -> bool:
        return self.noise is not None and self.noise > FIDELITY_NOISE_MAX


@dataclass(frozen=True)
class Section:
    id: str
    heading: str
    body: str  # HTML


__all__ = [
    "FIDELITY_NOISE_MAX",
    "KS_95",
    "ReportInputs",
    "Section",
    "fidelity_noise",
    "rows_for_fidelity",
]
