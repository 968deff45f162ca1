"""What selection takes and returns: arms, the evaluator protocol, the trace and the `Selection`,
which explains itself (`explain`: what was kept and why, or why nothing was; `summary`: the counts a
run's manifest and MLflow keep; `power_metrics`: each partition's power) and is saved and loaded
like the run's other stages."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from date_spark.rules import Rule
from date_spark.selection.confirmation import Confirmation
from date_spark.selection.copies import CopyCount
from date_spark.selection.gain import GainDecision
from date_spark.tracking.atomic import atomic_path, write_json_atomic

__all__ = [
    "Arm",
    "Evaluator",
    "LossEvaluator",
    "Selection",
    "TraceStep",
    "nothing_kept_reason",
]


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
        """One line: what was kept and why, or why nothing was, with what the confirmation rows
        could have shown (`power`; the report shows that as a table instead). `rules_found`: whether
        discovery found any rule (without one there was nothing to select from)."""
        if self.gain is not None:
            return self._gain_text(rules_found)
        c = self.confirmation
        power_text = (
            f"; the confirmation could not see gains below: {c.power_text()}" if c and power else ""
        )
        if self.n_rows:
            test = (
                f"confirmed: loss {-100 * c.gain / c.baseline_loss:+.1f}%, z={c.z:.2f} > "
                f"{c.min_z:g} on {c.rows} confirmation rows"
                if c is not None and c.tested and c.baseline_loss > 0
                else "not confirmed (selection.confirm is off)"
            )
            if c is not None and c.tested and any(not t.passed for t in c.tests):
                test += "; dropped " + ", ".join(t.key for t in c.tests if not t.passed)
            return f"kept {self.n_rows} rows from {len(self.selected)} arms, {test}"
        if not rules_found:
            return NO_RULE
        if c is not None and c.tested and not c.passed and c.tests:
            why = (
                f"the searched set ({len(self.screened)} arms) failed confirmation in every "
                "partition it adds rows to ("
                + ", ".join(f"{t.key}: z={t.z:.2f} <= {t.threshold:.2f}" for t in c.tests)
                + ")"
            )
        elif c is not None and c.tested and not c.passed:
            why = (
                f"the searched set ({len(self.screened)} arms) failed confirmation: z={c.z:.2f} <= "
                f"{c.min_z:g} on {c.rows} rows"
            )
        elif not self.screened:
            why = self.stop_reason or "no arm passed the screen"
        else:
            why = self.stop_reason
        return f"kept 0 rows: {why}{power_text}"

    def _gain_text(self, rules_found: bool) -> str:
        """`explain` for the gain rule: the kept rows and what they are expected to be worth for
        the user's model, or per partition what the generated rows were worth."""
        d = self.gain
        assert d is not None
        copies = (
            f"; {self.copies.text()}" if self.copies is not None and self.copies.dropped else ""
        )
        if self.n_rows:
            parts = ", ".join(f"{k}: {n}" for k, n in d.kept.items())
            return f"kept {self.n_rows} rows ({parts}): {d.text()}{copies}"
        if not rules_found:
            return NO_RULE
        return f"kept 0 rows: {d.text()}{copies}"

    def summary(self, *, rules_found: bool = True) -> dict[str, Any]:
        """What the run's manifest records for the stage and MLflow logs (its numbers)."""
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "screened_arms": len(self.screened),
            "selected_arms": len(self.selected),
            "rows": self.n_rows,
            "baseline": self.baseline,
            "best_score": self.best_score,
            "stop_reason": self.stop_reason,
            "kept": self.explain(rules_found=rules_found),
        }
        if self.copies is not None:
            out["copies"] = asdict(self.copies)
        if self.gain is not None:
            out["gain"] = self.gain.to_dict()
            j = self.gain.joint
            if j is not None:
                lo, hi = j.interval()
                out.update(
                    expected_gain_relative=j.relative, expected_gain_low=lo,
                    expected_gain_high=hi, expected_gain_z=j.shrunk_z,
                )  # fmt: skip
        c = self.confirmation
        if c is not None:
            out.update(
                confirmation_z=c.z,
                confirmation_passed=c.passed,
                confirmation_rows=c.rows,
                confirmation_gain=c.gain,
                mde=c.mde,
                mde_relative=c.mde_relative,
                partitions=[asdict(p) for p in c.partitions],
                confirmation_tests=[asdict(t) for t in c.tests],
            )
        return out

    def power_metrics(self) -> dict[str, float]:
        """Per partition: the gain rule's estimate and minimum detectable effect, or the
        confirmation's rows and minimum detectable effect, for MLflow."""
        out: dict[str, float] = {}
        d = self.gain
        if d is not None:
            for choice in d.partitions:
                best = choice.best
                if best is not None:
                    out[f"{choice.key}.gain_relative"] = best.relative
                    out[f"{choice.key}.gain_z"] = best.shrunk_z
                    out[f"{choice.key}.mde_relative"] = best.mde(d.bar, d.power)
                    out[f"{choice.key}.kept_rows"] = float(choice.rows)
        c = self.confirmation
        if c is None:
            return out
        for p in c.partitions:
            out[f"{p.key}.confirmation_rows"] = float(p.rows)
            out[f"{p.key}.mde"] = p.mde
            out[f"{p.key}.mde_relative"] = p.mde_relative
            if p.ceiling_rows:
                out[f"{p.key}.ceiling_relative"] = p.ceiling_relative
        return out

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


NO_RULE = "kept 0 rows: discovery found no rule"


def nothing_kept_reason(
    s: Selection, *, rules_found: bool, generated_rows: int, rejected: Mapping[str, int]
) -> str:
    """Why a run kept no synthetic row, in the terms of the stage that ended it: discovery (no
    rule), generation (no valid row; `rejected` counts the rejected rows by reason) or
    selection."""
    if not rules_found:
        return "discovery found no rule within rho, so nothing was generated"
    if not generated_rows:
        why = ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items()))
        return "generation returned no valid row" + (f" (rejected: {why})" if why else "")
    # the selection's own account: screen, confirmation and what it could have detected
    return s.explain(rules_found=rules_found).removeprefix("kept 0 rows: ")
