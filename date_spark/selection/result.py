"""What selection takes and returns: arms, the evaluator protocol, the trace and the `Selection`
(which explains itself through `explain.py`, and is saved and loaded like the run's other
stages)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from date_spark.rules import Rule
from date_spark.selection.confirmation import Confirmation
from date_spark.selection.copies import CopyCount
from date_spark.selection.explain import kept_text, power_by_partition, stage_summary
from date_spark.selection.gain import GainDecision
from date_spark.tracking.atomic import atomic_path, write_json_atomic

__all__ = ["Arm", "Evaluator", "LossEvaluator", "Selection", "TraceStep"]


@dataclass(frozen=True)
class Arm:
    """One candidate group of generated rows. `rule` is the DGR condition AND the tree path the
    rows fell in; `rows` holds the input columns including the target; `gain` is the validation
    gain measured at generation time: the quality prior before the arm is pulled (NaN = unknown,
    a neutral prior that ranks last for Top-k)."""

    arm_id: str
    dgr_id: str
    round: int
    rule: Rule
    rows: pd.DataFrame = field(compare=False, repr=False)
    gain: float = 0.0

    @property
    def size(self) -> int:
        return len(self.rows)


class Evaluator(Protocol):
    """Scores a set of synthetic rows added to the training data, on screening rows only.

    This is all selection needs; an evaluator that also has `losses` (a `LossEvaluator`) enables
    the paired screen and the confirmation of the module doc, one without it is judged by the
    paper's rule."""

    def baseline(self) -> float:
        """Score with no synthetic rows (higher is better: minus the mean loss)."""
        ...

    def score(self, extra: pd.DataFrame) -> float:
        """Score with `extra` added to the training data."""
        ...


class LossEvaluator(Evaluator, Protocol):
    """An `Evaluator` that also gives per-row losses, for the paired z."""

    def losses(self, extra: pd.DataFrame) -> np.ndarray:
        """One loss per scored row with `extra` added to the training data, always the same rows
        in the same order, so two calls can be compared row by row. Lower is better."""
        ...


@dataclass(frozen=True)
class TraceStep:
    """One evaluation (or one unscored decision) of a selection run.

    `quality`, `diversity` and `utility` are the normalised parts at this step (NaN when the step
    scored nothing); `ucb` is the bandit's index when it picked the arm (inf for a first try, NaN
    for the greedy strategies); `gain` is the raw change of the validation score this step measured
    (for ``backward``: the arm's contribution, score with it minus score without it); `z` the
    paired significance statistic of that same change, with the same sign (NaN when the evaluator
    gives no per-row losses or nothing was scored); `score_after` is the selection's score after
    the step's decision; `rows` the arm rows the step used."""

    step: int
    arm_id: str
    quality: float
    diversity: float
    utility: float
    ucb: float
    accepted: bool
    score_after: float
    reason: str
    gain: float = math.nan
    z: float = math.nan
    rows: int = 0


@dataclass
class Selection:
    """The kept arms (in acceptance order), their rows tagged with `_date_arm`, and the trace.
    `screened` is what the search chose; it is kept (`selected`) only when the confirmation
    passes (or is off)."""

    selected: list[str]
    rows: pd.DataFrame
    trace: list[TraceStep]
    best_score: float
    baseline: float
    strategy: str
    stop_reason: str = ""
    evaluations: int = 0  # distinct evaluator.score calls
    screened: list[str] = field(default_factory=list)  # what the search chose, before confirmation
    confirmation: Confirmation | None = None
    gain: GainDecision | None = None  # the gain rule's decision (`selection.rule: gain`)
    copies: CopyCount | None = None  # generated rows that copied a real row

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def trace_frame(self) -> pd.DataFrame:
        """The trace as a table (one row per step), e.g. for an MLflow artifact."""
        cols = [f.name for f in TraceStep.__dataclass_fields__.values()]
        return pd.DataFrame([asdict(s) for s in self.trace], columns=cols)

    def explain(self, *, power: bool = True, rules_found: bool = True) -> str:
        """What was kept and why, or why nothing was, in one line (`selection.explain`); `power`
        adds what the confirmation rows could have shown, `rules_found=False` says discovery
        found no rule to select for."""
        return kept_text(self, power=power, rules_found=rules_found)

    def summary(self, *, rules_found: bool = True) -> dict[str, Any]:
        """What the run's manifest records for the stage and MLflow logs."""
        return stage_summary(self, rules_found=rules_found)

    def power_metrics(self) -> dict[str, float]:
        """Per partition: the estimate or confirmation rows and the minimum detectable effect."""
        return power_by_partition(self)

    def save(self, directory: str | Path) -> Path:
        """Rows and trace as parquet, then the rest as `selection.json` (last: a directory
        without it holds no selection), each atomically. Returns `directory`, which `load`
        takes."""
        directory = Path(directory)
        for name, frame in (("rows", self.rows), ("trace", self.trace_frame())):
            with atomic_path(directory / f"{name}.parquet") as tmp:
                frame.to_parquet(tmp, index=False)
        write_json_atomic(
            directory / "selection.json",
            {
                "selected": self.selected,
                "screened": self.screened,
                "best_score": self.best_score,
                "baseline": self.baseline,
                "strategy": self.strategy,
                "stop_reason": self.stop_reason,
                "evaluations": self.evaluations,
                "confirmation": self.confirmation.to_dict() if self.confirmation else None,
                "gain": self.gain.to_dict() if self.gain else None,
                "copies": asdict(self.copies) if self.copies else None,
            },
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Selection:
        """What `save` wrote (the trace stays in `trace.parquet`: resuming needs the result)."""
        directory = Path(directory)
        meta = json.loads((directory / "selection.json").read_text(encoding="utf-8"))
        conf = meta.get("confirmation")
        return cls(
            selected=meta["selected"],
            rows=pd.read_parquet(directory / "rows.parquet"),
            trace=[],
            best_score=meta["best_score"],
            baseline=meta["baseline"],
            strategy=meta["strategy"],
            stop_reason=meta["stop_reason"],
            evaluations=meta["evaluations"],
            screened=list(meta.get("screened", meta["selected"])),
            confirmation=Confirmation.from_dict(conf) if conf else None,
            gain=GainDecision.from_dict(meta["gain"]) if meta.get("gain") else None,
            copies=CopyCount(**meta["copies"]) if meta.get("copies") else None,
        )
