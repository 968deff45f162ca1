"""A `Selection` in words and numbers: what was kept and why, or why nothing was (`kept_text`), the
counts a run's manifest and MLflow keep (`stage_summary`), and each partition's power
(`power_by_partition`). `Selection.explain`, `.summary` and `.power_metrics` call these; they live
here so the result module stays the data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from date_spark.selection.result import Selection

__all__ = ["kept_text", "nothing_kept_reason", "power_by_partition", "stage_summary"]

NO_RULE = "kept 0 rows: discovery found no rule"


def kept_text(s: Selection, *, power: bool = True, rules_found: bool = True) -> str:
    """One line: what was kept and why, or why nothing was, with what the confirmation rows could
    have shown (`power`; the report shows that as a table instead). `rules_found`: whether
    discovery found any rule (without one there was nothing to select from)."""
    if s.gain is not None:
        return _gain_text(s, rules_found)
    c = s.confirmation
    power_text = (
        f"; the confirmation could not see gains below: {c.power_text()}" if c and power else ""
    )
    if s.n_rows:
        test = (
            f"confirmed: loss {-100 * c.gain / c.baseline_loss:+.1f}%, z={c.z:.2f} > "
            f"{c.min_z:g} on {c.rows} confirmation rows"
            if c is not None and c.tested and c.baseline_loss > 0
            else "not confirmed (selection.confirm is off)"
        )
        if c is not None and c.tested and any(not t.passed for t in c.tests):
            test += "; dropped " + ", ".join(t.key for t in c.tests if not t.passed)
        return f"kept {s.n_rows} rows from {len(s.selected)} arms, {test}"
    if not rules_found:
        return NO_RULE
    if c is not None and c.tested and not c.passed and c.tests:
        why = (
            f"the searched set ({len(s.screened)} arms) failed confirmation in every "
            "partition it adds rows to ("
            + ", ".join(f"{t.key}: z={t.z:.2f} <= {t.threshold:.2f}" for t in c.tests)
            + ")"
        )
    elif c is not None and c.tested and not c.passed:
        why = (
            f"the searched set ({len(s.screened)} arms) failed confirmation: z={c.z:.2f} <= "
            f"{c.min_z:g} on {c.rows} rows"
        )
    elif not s.screened:
        why = s.stop_reason or "no arm passed the screen"
    else:
        why = s.stop_reason
    return f"kept 0 rows: {why}{power_text}"


def _gain_text(s: Selection, rules_found: bool) -> str:
    """`kept_text` for the gain rule: the kept rows and what they are expected to be worth for the
    user's model, or per partition what the generated rows were worth."""
    d = s.gain
    assert d is not None
    copies = f"; {s.copies.text()}" if s.copies is not None and s.copies.dropped else ""
    if s.n_rows:
        parts = ", ".join(f"{k}: {n}" for k, n in d.kept.items())
        return f"kept {s.n_rows} rows ({parts}): {d.text()}{copies}"
    if not rules_found:
        return NO_RULE
    return f"kept 0 rows: {d.text()}{copies}"


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
    return kept_text(s, rules_found=rules_found).removeprefix("kept 0 rows: ")


def stage_summary(s: Selection, *, rules_found: bool = True) -> dict[str, Any]:
    """What the run's manifest records for the stage and MLflow logs (its numbers)."""
    out: dict[str, Any] = {
        "strategy": s.strategy,
        "screened_arms": len(s.screened),
        "selected_arms": len(s.selected),
        "rows": s.n_rows,
        "baseline": s.baseline,
        "best_score": s.best_score,
        "stop_reason": s.stop_reason,
        "kept": kept_text(s, rules_found=rules_found),
    }
    if s.copies is not None:
        out["copies"] = asdict(s.copies)
    if s.gain is not None:
        out["gain"] = s.gain.to_dict()
        j = s.gain.joint
        if j is not None:
            lo, hi = j.interval()
            out.update(
                expected_gain_relative=j.relative, expected_gain_low=lo,
                expected_gain_high=hi, expected_gain_z=j.shrunk_z,
            )  # fmt: skip
    c = s.confirmation
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


def power_by_partition(s: Selection) -> dict[str, float]:
    """Per partition: the gain rule's estimate and minimum detectable effect, or the
    confirmation's rows and minimum detectable effect, for MLflow."""
    out: dict[str, float] = {}
    d = s.gain
    if d is not None:
        for choice in d.partitions:
            best = choice.best
            if best is not None:
                out[f"{choice.key}.gain_relative"] = best.relative
                out[f"{choice.key}.gain_z"] = best.shrunk_z
                out[f"{choice.key}.mde_relative"] = best.mde(d.bar, d.power)
                out[f"{choice.key}.kept_rows"] = float(choice.rows)
    c = s.confirmation
    if c is None:
        return out
    for p in c.partitions:
        out[f"{p.key}.confirmation_rows"] = float(p.rows)
        out[f"{p.key}.mde"] = p.mde
        out[f"{p.key}.mde_relative"] = p.mde_relative
        if p.ceiling_rows:
            out[f"{p.key}.ceiling_relative"] = p.ceiling_relative
    return out
