"""The headline cards at the top of the report: one number each, with its scale and a verdict
(good / fair / poor) so a reader who does not know SDMetrics can tell what 0.83 means."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from date_spark.evaluation.evaluator import EvaluationResult
from date_spark.evaluation.fidelity import Fidelity
from date_spark.evaluation.privacy import Privacy
from date_spark.evaluation.report_format import count_text, escape, fmt, is_number, to_number
from date_spark.evaluation.report_inputs import ReportInputs
from date_spark.evaluation.validity import Validity

# Fidelity scores (SDMetrics, 0..1): bands for the verdict, stated on the page.
FIDELITY_BANDS = (0.75, 0.90)  # below the first: poor; from the second on: good
RULE_SHARE_BANDS = (0.90, 0.99)
# Exact copies: compared with the share of unseen real rows that equal a training row.
COPY_MARGINS = (0.01, 0.05)
COPY_SCALE_MAX = 0.20


@dataclass(frozen=True)
class Headline:
    """One headline number. `lo`/`hi` give the scale bar (None: no bar); `bands` are the verdict
    thresholds on that scale, in the direction of `higher_is_better`."""

    label: str
    text: str
    verdict: str  # "good" | "fair" | "poor" | "n/a"
    verdict_text: str = ""
    value: float | None = None
    lo: float = 0.0
    hi: float = 1.0
    higher_is_better: bool = True
    bands: tuple[float, float] | None = None
    ends: tuple[str, str] = ("", "")
    note: str = ""
    bar: bool = True


def _band(v: float, bands: tuple[float, float], higher_is_better: bool = True) -> str:
    low, high = bands
    if higher_is_better:
        return "good" if v >= high else ("fair" if v >= low else "poor")
    return "good" if v <= low else ("fair" if v <= high else "poor")


def headlines(inp: ReportInputs) -> list[Headline]:
    """The cards in page order: rows kept, utility, then (with kept rows) fidelity, copies,
    privacy and rule share; with none kept, the smallest gain the confirmation could see."""
    r = inp.result
    util = inp.utility_numbers or {}
    out = [_kept_headline(r)]
    if inp.gains:  # with no kept row the synthetic gains are 0 by construction: not news
        shown = [g for g in inp.gains if r is not None or "synthetic" not in str(g.get("name"))]
        out += [_gain_headline(g) for g in shown]
    else:
        out += _error_headline(inp, util)
    if r is None:
        return out + _power_headline(inp)
    f, p, v = r.fidelity, r.privacy, r.validity
    if f.overall is not None:
        out.append(_fidelity_headline(f, inp.too_few))
    out += [_copies_headline(p, r.synthetic_rows), _privacy_headline(p)]
    if v.rule_share is not None:
        out.append(_rule_headline(v))
    return out


def _kept_headline(r: EvaluationResult | None) -> Headline:
    if r is None:
        return Headline("synthetic rows kept", "0", "poor", "none", note="see why above", bar=False)
    note = f"against {count_text(r.real_rows)} real training rows"
    return Headline(
        "synthetic rows kept", count_text(r.synthetic_rows), "n/a", note=note, bar=False
    )


def _fidelity_headline(f: Fidelity, too_few: bool) -> Headline:
    """The overall score on its bands; no verdict when too few rows make it noise."""
    assert f.overall is not None
    lo_b, hi_b = FIDELITY_BANDS
    verdict = _band(f.overall, FIDELITY_BANDS)
    vt = verdict
    if too_few:
        verdict, vt = "n/a", "too few rows"
    return Headline(
        "fidelity (overall)",
        f"{f.overall:.2f}",
        verdict,
        vt,
        value=f.overall,
        bands=FIDELITY_BANDS,
        ends=("0 unlike the real data", "1 same distributions"),
        note=f"column shapes {fmt(f.column_shapes_score, digits=2)}, pair trends "
        f"{fmt(f.column_pair_trends_score, digits=2)}; good from {hi_b:.2f}, poor "
        f"below {lo_b:.2f}",
    )


def _copies_headline(p: Privacy, kept: int) -> Headline:
    """The exact-copy rate, banded relative to the holdout's own rate."""
    hold = p.holdout_exact_copy_rate or 0.0
    copy_bands = (hold + COPY_MARGINS[0], hold + COPY_MARGINS[1])
    cv = _band(p.exact_copy_rate, copy_bands, higher_is_better=False)
    if p.too_close and p.exact_copy_rate > hold:
        cv = "poor"
    cvt = {"good": "as real data", "fair": "some", "poor": "too many"}[cv]
    hold_note = (
        f"unseen real rows that equal a training row: {fmt(hold, pct=True)}"
        if p.holdout_exact_copy_rate is not None
        else "no holdout to compare with"
    )
    return Headline(
        "exact copies of a training row",
        f"{p.exact_copy_rate:.1%}",
        cv,
        cvt,
        value=min(p.exact_copy_rate, COPY_SCALE_MAX),
        hi=COPY_SCALE_MAX,
        higher_is_better=False,
        bands=(min(copy_bands[0], COPY_SCALE_MAX), min(copy_bands[1], COPY_SCALE_MAX)),
        ends=("0%", f"{COPY_SCALE_MAX:.0%} or more"),
        note=f"{count_text(p.exact_copies)} of {count_text(kept)} rows; {hold_note}. Lower is "
        f"better: good within {COPY_MARGINS[0]:.0%} of that, poor more than "
        f"{COPY_MARGINS[1]:.0%} above it",
    )


def _privacy_headline(p: Privacy) -> Headline:
    pv = "n/a" if p.too_close is None else ("poor" if p.too_close else "good")
    pvt = "no holdout" if p.too_close is None else ("TOO CLOSE" if p.too_close else "ok")
    return Headline(
        "privacy",
        pvt,
        pv,
        "",
        note="flagged when synthetic rows sit nearer the training rows than unseen real "
        "rows do (rule in words in the Privacy section)",
        bar=False,
    )


def _rule_headline(v: Validity) -> Headline:
    assert v.rule_share is not None
    return Headline(
        "rows satisfying their rule",
        f"{v.rule_share:.1%}",
        _band(v.rule_share, RULE_SHARE_BANDS),
        _band(v.rule_share, RULE_SHARE_BANDS),
        value=v.rule_share,
        bands=RULE_SHARE_BANDS,
        ends=("0%", "100%"),
        note=f"{count_text(v.rule_satisfied)} of {count_text(v.rule_rows)}; every kept row "
        f"should satisfy the rule it was generated for",
    )


def _gain_headline(g: Mapping[str, Any]) -> Headline:
    """One utility effect: relative loss change with its interval; a verdict only when the
    interval excludes zero (anything else is noise)."""
    before, after = float(g.get("before", math.nan)), float(g.get("after", math.nan))
    low, high = float(g.get("low", math.nan)), float(g.get("high", math.nan))
    sig = int(g.get("significant", 0) or 0)
    scale = before if before > 0 else 1.0
    change = -(before - after) / scale  # negative: the loss went down
    verdict, vt = {1: ("good", "better"), -1: ("poor", "worse")}.get(sig, ("n/a", "within noise"))
    rows = g.get("rows")
    on = f" on {count_text(rows)} test rows" if is_number(rows) else ""
    half = (high - low) / 2 / scale
    if sig == 0 and math.isfinite(half) and is_number(rows):
        # say when the test split is what cannot see it, not only that nothing was seen
        vt = f"within noise: {count_text(rows)} test rows cannot see a change below {half:.1%}"
    # the value says what moved and which way (a card titled "gain" showing "+5.8%" for a loss
    # that rose 5.8% read as a gain)
    text = f"loss {100 * change:+.1f}%" if math.isfinite(change) else "n/a"
    name = str(g.get("name", "gain")).replace("gain", "effect")
    return Headline(
        name,
        text,
        verdict if rows else "n/a",
        vt if rows else "no test rows",
        note=f"loss {before:.4g} -> {after:.4g}{on}; 95% interval of the change "
        f"[{-100 * high / scale:+.1f}%, {-100 * low / scale:+.1f}%]; below 0 is better, and "
        f"only an interval that excludes 0 counts",
        bar=False,
    )


def _power_headline(inp: ReportInputs) -> list[Headline]:
    """With nothing kept: the smallest gain the confirmation rows could have shown, so a reader
    can tell "no effect" from "too few rows to see one"."""
    c = inp.power or {}
    rel, rows, level = to_number(c.get("mde_relative")), c.get("rows"), to_number(c.get("power"))
    if not (math.isfinite(rel) and is_number(rows)):
        return []
    at = f" (with {level:.0%} power)" if math.isfinite(level) else ""
    return [
        Headline(
            "smallest gain the confirmation could see",
            f"{rel:.1%}",
            "n/a",
            note=f"a loss reduction below this share, over all {count_text(rows)} confirmation "
            f"rows{at}, is indistinguishable from noise; per partition in the Minimum "
            "detectable effect section",
            bar=False,
        )
    ]


def _error_headline(inp: ReportInputs, util: Mapping[str, float]) -> list[Headline]:
    """Without measured gains: DATE's test error against one model, numbers only."""
    errs = inp.errors or {}
    before, after = errs.get("no partition"), errs.get("DATE")
    if not (is_number(before) and is_number(after)):
        return []
    assert before is not None and after is not None
    n_test = util.get("test_rows")
    on = f" on {count_text(n_test)} test rows" if is_number(n_test) else ""
    if after < before:
        verdict, vt = "good", "lower"
    elif after > before:
        verdict, vt = "poor", "higher"
    else:
        verdict, vt = "n/a", "no change"
    digits = 4 if inp.task_name != "regression" else 2
    middle = errs.get("partition only")
    per_rule = f"a model per rule {middle:.{digits}f}, " if is_number(middle) else ""
    return [
        Headline(
            f"test {inp.error_name} (DATE)",
            f"{after:.{digits}f}",
            verdict,
            vt,
            note=f"one model {before:.{digits}f}, {per_rule}a model per rule with the kept rows "
            f"{after:.{digits}f}{on}; lower is better",
            bar=False,
        )
    ]


def _scale_css(h: Headline) -> str:
    """A red / amber / green bar with hard stops at the verdict bands."""
    span = (h.hi - h.lo) or 1.0
    colors = {"good": "#b7e1cd", "fair": "#fce8b2", "poor": "#f4c7c3"}
    if h.bands is None:
        return "background:#d8dee4"
    a, b = ((x - h.lo) / span * 100 for x in h.bands)
    order = ("poor", "fair", "good") if h.higher_is_better else ("good", "fair", "poor")
    c0, c1, c2 = (colors[o] for o in order)
    return (
        f"background:linear-gradient(to right,{c0} 0 {a:.1f}%,{c1} {a:.1f}% {b:.1f}%,"
        f"{c2} {b:.1f}% 100%)"
    )


def card(h: Headline) -> str:
    badge = (
        f"<span class='verdict {h.verdict}'>{escape(h.verdict_text or h.verdict)}</span>"
        if (h.verdict_text or h.verdict != "n/a")
        else ""
    )
    bar = ""
    if h.bar and h.value is not None:
        pos = min(100.0, max(0.0, (h.value - h.lo) / ((h.hi - h.lo) or 1.0) * 100))
        bar = (
            f"<div class='scale' style='{_scale_css(h)}'><div class='mark' "
            f"style='left:{pos:.1f}%'></div></div><div class='ends'><span>{escape(h.ends[0])}"
            f"</span><span>{escape(h.ends[1])}</span></div>"
        )
    note = f"<div class='note'>{escape(h.note)}</div>" if h.note else ""
    return (
        f"<div class='card {h.verdict}' data-headline='{escape(h.label)}'>"
        f"<div class='label'>{escape(h.label)}</div>"
        f"<div class='value'>{escape(h.text)}{badge}</div>"
        f"{bar}{note}</div>"
    )


__all__ = [
    "COPY_MARGINS",
    "COPY_SCALE_MAX",
    "FIDELITY_BANDS",
    "RULE_SHARE_BANDS",
    "Headline",
    "card",
    "headlines",
]
