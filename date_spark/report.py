"""The evaluation report a person reads: one self-contained HTML page, a short Markdown summary
and the numbers as JSON.

The page opens with the headline numbers, each with its scale and a verdict (good / fair / poor)
so a reader who does not know SDMetrics can tell what 0.83 means, and with warnings where a
number cannot be trusted (too few synthetic rows for fidelity) or where nothing was kept (and
why). Below come one section per topic.

Extending it: the page is `templates/report.html` + `templates/report.css`; the sections are
built by the functions in `SECTIONS`, each taking the `ReportInputs` and returning a `Section`
or None (nothing to show). A new section is a new function in that tuple (or `extra_sections`
for a caller's own); a new headline number is a `Headline` in `headlines()`.

Plots are drawn with matplotlib's Agg canvas (no display, no global pyplot state) from the
aggregates `evaluate` already computed, and embedded as base64 PNG, so the page opens anywhere,
offline, and can be logged to MLflow as one artifact.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from date_spark import __version__
from date_spark.errors import OutputError
from date_spark.evaluation import Distribution, EvaluationResult

log = logging.getLogger(__name__)

HTML_NAME = "evaluation_report.html"
MARKDOWN_NAME = "evaluation_summary.md"
JSON_NAME = "evaluation.json"
_REAL, _SYN = "#4c72b0", "#dd8452"
_MAX_BARS = 30
_MAX_TABLE_ROWS = 200
_EPOCH = dt.datetime(1970, 1, 1)

# Fidelity scores (SDMetrics, 0..1): bands for the verdict, stated on the page.
FIDELITY_BANDS = (0.75, 0.90)  # below the first: poor; from the second on: good
RULE_SHARE_BANDS = (0.90, 0.99)
# Exact copies: compared with the share of unseen real rows that equal a training row.
COPY_MARGINS = (0.01, 0.05)
COPY_SCALE_MAX = 0.20
# A column-shape score is 1 - KS statistic. Two samples from the SAME distribution differ by up
# to 1.358 * sqrt(1/n + 1/m) at the 95% level, so with few synthetic rows a perfect generator
# scores far below 1. Above this noise the fidelity figures cannot tell good rows from bad ones.
KS_95 = 1.358
FIDELITY_NOISE_MAX = 0.10

PRIVACY_RULE_WORDS = (
    "The synthetic rows are flagged as too close to the training data when either test fires. "
    "(1) Near neighbours: take the distance from each real row the generator never saw (the "
    "holdout) to its nearest training row; 5% of holdout rows are closer than some distance q. "
    "If clearly more than 5% of synthetic rows are closer than q, they sit nearer the training "
    "rows than new real data does. (2) Copies: the share of synthetic rows that equal a training "
    "row is compared with the share of holdout rows that do. 'Clearly more' means by more than "
    "5 percentage points and by more than three standard errors, so a handful of rows cannot "
    "raise the flag by chance."
)


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    markdown: Path
    json: Path


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _epoch_label(seconds: float) -> str:
    try:
        return (_EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d")
    except (OverflowError, ValueError):
        return f"{seconds:.0f}s"


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def plot_distribution(d: Distribution) -> str:
    """Real vs synthetic shares of one column, as base64 PNG."""
    fig = Figure(figsize=(5.2, 3.0))
    ax = fig.subplots()
    if d.kind == "continuous" and d.edges is not None:
        ax.stairs(d.real, d.edges, fill=True, alpha=0.45, color=_REAL, label="real")
        ax.stairs(d.synthetic, d.edges, color=_SYN, linewidth=1.8, label="synthetic")
        ax.set_xlabel(d.column)
        if d.unit.startswith(("days", "seconds")):
            scale = 86_400.0 if d.unit.startswith("days") else 1.0
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: _epoch_label(x * scale)))
            ax.tick_params(axis="x", labelrotation=30)
    else:
        labels = [_short(v, 16) for v in d.labels]
        real, syn = list(d.real), list(d.synthetic)
        if d.real_other > 1e-12 or d.synthetic_other > 1e-12:
            labels.append("(other)")
            real.append(d.real_other)
            syn.append(d.synthetic_other)
        xs = list(range(len(labels)))
        ax.bar([x - 0.2 for x in xs], real, width=0.4, color=_REAL, label="real")
        ax.bar([x + 0.2 for x in xs], syn, width=0.4, color=_SYN, label="synthetic")
        ax.set_xticks(xs, labels, rotation=45 if len(labels) > 4 else 0, ha="right")
    ax.set_ylabel("share of non-null values")
    title = d.column
    if d.real_null or d.synthetic_null:
        title += f"  (missing: real {d.real_null:.1%}, synthetic {d.synthetic_null:.1%})"
    ax.set_title(_short(title, 70), fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_pair_heatmap(result: EvaluationResult) -> str | None:
    cols = result.columns
    if len(cols) < 2:
        return None
    idx = {c: i for i, c in enumerate(cols)}
    grid = [[math.nan] * len(cols) for _ in cols]
    for i in range(len(cols)):
        grid[i][i] = 1.0
    for p in result.fidelity.pair_trends:
        v = math.nan if p.score is None else p.score
        grid[idx[p.column_1]][idx[p.column_2]] = v
        grid[idx[p.column_2]][idx[p.column_1]] = v
    size = min(12.0, 2.5 + 0.45 * len(cols))
    fig = Figure(figsize=(size, size * 0.85))
    ax = fig.subplots()
    im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="RdYlGn")
    labels = [_short(c, 18) for c in cols]
    ax.set_xticks(range(len(cols)), labels, rotation=90)
    ax.set_yticks(range(len(cols)), labels)
    ax.set_title("column pair trends (1 = same as real)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def _barh(values: Mapping[str, float], title: str, xlabel: str) -> str:
    items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:_MAX_BARS]
    fig = Figure(figsize=(7.0, 1.2 + 0.32 * len(items)))
    ax = fig.subplots()
    names = [_short(k, 60) for k, _ in items][::-1]
    vals = [v for _, v in items][::-1]
    ax.barh(range(len(items)), vals, color=[_REAL if v >= 0 else _SYN for v in vals])
    ax.set_yticks(range(len(items)), names, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.axvline(0, color="black", linewidth=0.6)
    return _png(fig)


_TRACE_KEYS = ("score_after", "score", "utility", "best_score", "validation_error", "error", "gain")


def _trace_plot(trace: Sequence[Mapping[str, Any]]) -> str | None:
    keys = [k for k in _TRACE_KEYS if any(_is_number(r.get(k)) for r in trace)]
    if not keys:
        return None
    fig = Figure(figsize=(7.0, 3.2))
    ax = fig.subplots()
    steps = _trace_steps(trace)
    for k in keys[:1]:
        pts = [(s, float(r[k])) for s, r in zip(steps, trace, strict=True) if _is_number(r.get(k))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=k)
        took = [
            (s, float(r[k]))
            for s, r in zip(steps, trace, strict=True)
            if _is_number(r.get(k)) and r.get("accepted") is True
        ]
        if took:
            ax.scatter(
                [p[0] for p in took], [p[1] for p in took], s=40, facecolors="none",
                edgecolors="#1b7f3b", linewidths=1.5, zorder=3,
            )  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("selection step (circled: arm kept)")
    ax.set_ylabel(keys[0].replace("_", " "))
    ax.set_title("selection trace", fontsize=10)
    return _png(fig)


def _errors_plot(errors: Mapping[str, float], ylabel: str) -> str:
    fig = Figure(figsize=(6.0, 3.0))
    ax = fig.subplots()
    names = list(errors)
    ax.bar(range(len(names)), [float(errors[n]) for n in names], color=_REAL)
    ax.set_xticks(range(len(names)), [_short(n, 18) for n in names], rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title("before and after (lower is better)", fontsize=10)
    return _png(fig)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ----------------------------------------------------------------------------------------------
# Numbers as text
# ----------------------------------------------------------------------------------------------


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any, pct: bool = False, digits: int = 4) -> str:
    """A score or share; whole-number counts go through `_count`."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:.1%}" if pct else f"{v:.{digits}f}"
    return str(v)


def _count(v: Any) -> str:
    """A count as an integer (`1,234`), whatever numeric type it arrived as."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    try:
        return f"{round(float(v)):,}"
    except (TypeError, ValueError):
        return str(v)


def _num(v: Any) -> float:
    """A number from a loosely typed mapping; NaN when it is not one."""
    return float(v) if _is_number(v) else math.nan


def _is_whole(v: Any) -> bool:
    return _is_number(v) and float(v).is_integer()


def fidelity_noise(synthetic_rows: int, real_rows: int) -> float:
    """The 95% bound on a column-shape score's shortfall from 1 that sampling alone produces."""
    if synthetic_rows <= 0 or real_rows <= 0:
        return 1.0
    return min(1.0, KS_95 * math.sqrt(1 / synthetic_rows + 1 / real_rows))


def rows_for_fidelity(real_rows: int) -> int | None:
    """Synthetic rows needed before the sampling noise drops to `FIDELITY_NOISE_MAX`."""
    room = (FIDELITY_NOISE_MAX / KS_95) ** 2 - 1 / max(real_rows, 1)
    return math.ceil(1 / room) if room > 0 else None


# ----------------------------------------------------------------------------------------------
# Inputs, headlines, sections
# ----------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Section:
    id: str
    heading: str
    body: str  # HTML


def _band(v: float, bands: tuple[float, float], higher_is_better: bool = True) -> str:
    low, high = bands
    if higher_is_better:
        return "good" if v >= high else ("fair" if v >= low else "poor")
    return "good" if v <= low else ("fair" if v <= high else "poor")


def headlines(inp: ReportInputs) -> list[Headline]:
    out: list[Headline] = []
    r = inp.result
    kept = r.synthetic_rows if r is not None else 0
    util = inp.utility_numbers or {}
    if r is not None:
        note = f"against {_count(r.real_rows)} real training rows"
        out.append(Headline("synthetic rows kept", _count(kept), "n/a", note=note, bar=False))
    else:
        out.append(
            Headline("synthetic rows kept", "0", "poor", "none", note="see why above", bar=False)
        )
    if inp.gains:  # with no kept row the synthetic gains are 0 by construction: not news
        shown = [g for g in inp.gains if r is not None or "synthetic" not in str(g.get("name"))]
        out += [_gain_headline(g) for g in shown]
    else:
        out += _error_headline(inp, util)
    if r is None:
        return out + _power_headline(inp)
    f, p, v = r.fidelity, r.privacy, r.validity
    lo_b, hi_b = FIDELITY_BANDS
    if f.overall is not None:
        verdict = _band(f.overall, FIDELITY_BANDS)
        vt = verdict
        if inp.too_few:
            verdict, vt = "n/a", "too few rows"
        out.append(
            Headline(
                "fidelity (overall)",
                f"{f.overall:.2f}",
                verdict,
                vt,
                value=f.overall,
                bands=FIDELITY_BANDS,
                ends=("0 unlike the real data", "1 same distributions"),
                note=f"column shapes {_fmt(f.column_shapes_score, digits=2)}, pair trends "
                f"{_fmt(f.column_pair_trends_score, digits=2)}; good from {hi_b:.2f}, poor "
                f"below {lo_b:.2f}",
            )
        )
    hold = p.holdout_exact_copy_rate or 0.0
    copy_bands = (hold + COPY_MARGINS[0], hold + COPY_MARGINS[1])
    cv = _band(p.exact_copy_rate, copy_bands, higher_is_better=False)
    if p.too_close and p.exact_copy_rate > hold:
        cv = "poor"
    cvt = {"good": "as real data", "fair": "some", "poor": "too many"}[cv]
    hold_note = (
        f"unseen real rows that equal a training row: {_fmt(hold, pct=True)}"
        if p.holdout_exact_copy_rate is not None
        else "no holdout to compare with"
    )
    out.append(
        Headline(
            "exact copies of a training row",
            f"{p.exact_copy_rate:.1%}",
            cv,
            cvt,
            value=min(p.exact_copy_rate, COPY_SCALE_MAX),
            hi=COPY_SCALE_MAX,
            higher_is_better=False,
            bands=(min(copy_bands[0], COPY_SCALE_MAX), min(copy_bands[1], COPY_SCALE_MAX)),
            ends=("0%", f"{COPY_SCALE_MAX:.0%} or more"),
            note=f"{_count(p.exact_copies)} of {_count(kept)} rows; {hold_note}. Lower is "
            f"better: good within {COPY_MARGINS[0]:.0%} of that, poor more than "
            f"{COPY_MARGINS[1]:.0%} above it",
        )
    )
    pv = "n/a" if p.too_close is None else ("poor" if p.too_close else "good")
    pvt = "no holdout" if p.too_close is None else ("TOO CLOSE" if p.too_close else "ok")
    out.append(
        Headline(
            "privacy",
            pvt,
            pv,
            "",
            note="flagged when synthetic rows sit nearer the training rows than unseen real "
            "rows do (rule in words in the Privacy section)",
            bar=False,
        )
    )
    if v.rule_share is not None:
        out.append(
            Headline(
                "rows satisfying their rule",
                f"{v.rule_share:.1%}",
                _band(v.rule_share, RULE_SHARE_BANDS),
                _band(v.rule_share, RULE_SHARE_BANDS),
                value=v.rule_share,
                bands=RULE_SHARE_BANDS,
                ends=("0%", "100%"),
                note=f"{_count(v.rule_satisfied)} of {_count(v.rule_rows)}; every kept row "
                f"should satisfy the rule it was generated for",
            )
        )
    return out


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
    on = f" on {_count(rows)} test rows" if _is_number(rows) else ""
    text = f"{100 * change:+.1f}%" if math.isfinite(change) else "n/a"
    return Headline(
        str(g.get("name", "gain")),
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
    rel, rows, level = _num(c.get("mde_relative")), c.get("rows"), _num(c.get("power"))
    if not (math.isfinite(rel) and _is_number(rows)):
        return []
    at = f" (with {level:.0%} power)" if math.isfinite(level) else ""
    return [
        Headline(
            "smallest gain the confirmation could see",
            f"{rel:.1%}",
            "n/a",
            note=f"a loss reduction below this share, over all {_count(rows)} confirmation "
            f"rows{at}, is indistinguishable from noise; per partition in the Minimum "
            "detectable effect section",
            bar=False,
        )
    ]


def _error_headline(inp: ReportInputs, util: Mapping[str, float]) -> list[Headline]:
    """Without measured gains: DATE's test error against one model, numbers only."""
    errs = inp.errors or {}
    before, after = errs.get("no partition"), errs.get("DATE")
    if not (_is_number(before) and _is_number(after)):
        return []
    assert before is not None and after is not None
    n_test = util.get("test_rows")
    on = f" on {_count(n_test)} test rows" if _is_number(n_test) else ""
    if after < before:
        verdict, vt = "good", "lower"
    elif after > before:
        verdict, vt = "poor", "higher"
    else:
        verdict, vt = "n/a", "no change"
    digits = 4 if inp.task_name != "regression" else 2
    middle = errs.get("partition only")
    per_rule = f"a model per rule {middle:.{digits}f}, " if _is_number(middle) else ""
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


def _card(h: Headline) -> str:
    badge = (
        f"<span class='verdict {h.verdict}'>{_e(h.verdict_text or h.verdict)}</span>"
        if (h.verdict_text or h.verdict != "n/a")
        else ""
    )
    bar = ""
    if h.bar and h.value is not None:
        pos = min(100.0, max(0.0, (h.value - h.lo) / ((h.hi - h.lo) or 1.0) * 100))
        bar = (
            f"<div class='scale' style='{_scale_css(h)}'><div class='mark' "
            f"style='left:{pos:.1f}%'></div></div><div class='ends'><span>{_e(h.ends[0])}"
            f"</span><span>{_e(h.ends[1])}</span></div>"
        )
    note = f"<div class='note'>{_e(h.note)}</div>" if h.note else ""
    return (
        f"<div class='card {h.verdict}' data-headline='{_e(h.label)}'>"
        f"<div class='label'>{_e(h.label)}</div><div class='value'>{_e(h.text)}{badge}</div>"
        f"{bar}{note}</div>"
    )


def _img(b64: str, plot: str, alt: str, column: str | None = None) -> str:
    col = f' data-column="{_e(column)}"' if column is not None else ""
    return (
        f'<img class="plot" data-plot="{_e(plot)}"{col} alt="{_e(alt)}" '
        f'src="data:image/png;base64,{b64}">'
    )


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    cls: str = "",
    numeric: Sequence[bool] | None = None,
    row_classes: Sequence[str] | None = None,
) -> str:
    num = list(numeric) if numeric is not None else [False] * len(headers)

    def cell(tag: str, i: int, v: Any) -> str:
        c = " class='num'" if i < len(num) and num[i] else ""
        return f"<{tag}{c}>{_e(v)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = ""
    for k, r in enumerate(rows):
        rc = f" class='{_e(row_classes[k])}'" if row_classes and row_classes[k] else ""
        body += f"<tr{rc}>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>"
    return f'<table class="{_e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# -- sections ----------------------------------------------------------------------------------


def _errors_section(inp: ReportInputs) -> Section | None:
    if not inp.errors:
        return None
    body = _img(
        _errors_plot(inp.errors, f"test {inp.error_name}"), "errors", "test error before and after"
    )
    body += (
        "<p class='note'>On the job's own test split (rows no stage ever used). <b>no "
        "partition</b>: one model on the training rows; <b>partition only</b>: one model per "
        "discovered rule, the rest to the global model; <b>DATE</b>: the same with the kept "
        "synthetic rows added to their rule's model; <b>global + synthetic</b>, where shown: one "
        "model on the training rows plus the kept rows (what a user of the output gets). Lower "
        "is better.</p>"
    )
    body += _table(
        ["setting", f"test {inp.error_name}"],
        [(k, _fmt(float(x))) for k, x in inp.errors.items()],
        numeric=[False, True],
    )
    return Section("errors", "Error before and after", body)


_SETTINGS = ("no_partition", "partition_only", "date", "global_synthetic", "relative_reduction")
_GAIN_COLUMNS = ("gain", "relative", "low", "high", "significant")


def _utility_cell(column: str, v: float | None) -> str:
    if v is None:
        return ""
    if column in ("relative", "relative_reduction"):
        return _fmt(v, pct=True)
    if column == "rows" or column.endswith("_rows"):
        return _count(v)
    if column == "significant":
        return {1: "better", -1: "worse"}.get(int(v), "no") if _is_number(v) else "n/a"
    return _fmt(v)


def _utility_section(inp: ReportInputs) -> Section | None:
    """The flat utility numbers as tables: `group.column` keys (`group` may hold dots itself, as in
    `segment.<name>.low`), one table per set of columns (losses per variant; gains with their
    interval), counts as a line."""
    util = inp.utility_numbers
    if not util:
        return None
    counts = {k: v for k, v in util.items() if "." not in k}
    groups: dict[str, dict[str, float]] = {}
    for k, v in util.items():
        if "." in k:
            group, column = k.rsplit(".", 1)  # "segment.<name>.low": the name may hold dots
            groups.setdefault(group, {})[column] = v
    order = {c: i for i, c in enumerate((*_SETTINGS, *_GAIN_COLUMNS))}
    tables: dict[tuple[str, ...], list[str]] = {}
    for group, vals in groups.items():
        cols = tuple(sorted(vals, key=lambda c: (order.get(c, len(order)), c)))
        tables.setdefault(cols, []).append(group)
    body = ""
    if counts:
        body += (
            "<p class='note'>"
            + ", ".join(f"{_e(k.replace('_', ' '))}: {_count(v)}" for k, v in counts.items())
            + "</p>"
        )
    for cols, names in tables.items():
        body += _table(
            ["", *[c.replace("_", " ") for c in cols]],
            [
                (g.replace("_", " "), *[_utility_cell(c, groups[g].get(c)) for c in cols])
                for g in names
            ],
            "utility",
            numeric=[False, *[True] * len(cols)],
        )
    body += (
        f"<p class='note'>Losses: test {_e(inp.error_name)}, lower is better. Gains: loss "
        "before minus after (above 0 is better) with the low and high end of its interval; "
        "relative = gain / loss before.</p>"
    )
    return Section("utility", "Utility", body)


def _power_section(inp: ReportInputs) -> Section | None:
    """The confirmation test and, per partition, the smallest loss reduction its rows could have
    detected: the answer to "would more rows have helped?" when nothing was kept."""
    c = inp.power
    if not c:
        return None
    body = ""
    if c.get("tested"):
        z, min_z, gain, base = (_num(c.get(k)) for k in ("z", "min_z", "gain", "baseline_loss"))
        change = -gain / base if base > 0 else math.nan  # below 0: the loss went down
        verdict = (
            "<span class='good-text'>passed</span>"
            if c.get("passed")
            else "<span class='poor-text'>failed</span>"
        )
        body += (
            f"<p>Confirmation: {verdict}. The searched set changed the loss on "
            f"{_count(c.get('rows'))} confirmation rows by "
            f"{f'{change:+.1%}' if math.isfinite(change) else 'n/a'} (below 0 is better) with "
            f"z = {_fmt(z, digits=2)}; passing needs a lower loss and z above "
            f"{_fmt(min_z, digits=2)}.</p>"
        )
    else:
        body += (
            "<p class='note'>The confirmation test did not run (nothing to confirm, or "
            "<code>selection.confirm</code> is off).</p>"
        )
    level = _num(c.get("power"))
    at = f"{level:.0%}" if math.isfinite(level) else "the configured"
    body += (
        "<p class='note'>Minimum detectable effect: the smallest mean loss reduction a "
        f"partition's confirmation rows would detect with {at} power at the confirmation's "
        "z threshold, in loss units and as a share of the partition's loss. A gain smaller than "
        'that cannot be told from noise on these rows, so "nothing kept" there means "too '
        'few rows to see it", not "no effect". "What its last real rows bought" is the '
        "ceiling: the loss reduction the partition's last real rows (as many as the budget, "
        "at most half) bought on the same rows; new rows of the real distribution, the best "
        "a generator can write, buy about that much or less. Partitions with most rows first.</p>"
    )
    parts = sorted(c.get("partitions") or (), key=lambda p: -_num(p.get("rows")))
    tests = {str(t.get("key")): t for t in c.get("tests") or ()}
    rows: list[tuple[Any, ...]] = [
        (
            str(p.get("key", "")),
            _count(p.get("rows")),
            _fmt(p.get("loss")),
            _fmt(p.get("mde")),
            _fmt(p.get("mde_relative"), pct=True),
            _ceiling(p),
            _partition_test(tests.get(str(p.get("key")))),
        )
        for p in parts[:_MAX_TABLE_ROWS]
    ]
    rows.append(
        (
            "all confirmation rows",
            _count(c.get("rows")),
            _fmt(c.get("baseline_loss")),
            _fmt(c.get("mde")),
            _fmt(c.get("mde_relative"), pct=True),
            "",
            "",
        )
    )
    headers = [
        "partition",
        "confirmation rows",
        "loss",
        "detectable reduction",
        "as share of loss",
        "what its last real rows bought",
    ]
    if tests:  # per-partition tests (Holm's step-down): which partitions' arms were kept
        headers.append("test of its arms")
    body += _table(
        headers,
        [r[: len(headers)] for r in rows],
        "power",
        numeric=[False, True, True, True, True, False][: len(headers)],
        row_classes=[""] * (len(rows) - 1) + ["total"],
    )
    return Section("power", "Minimum detectable effect", body)


def _partition_test(t: Mapping[str, Any] | None) -> str:
    """One partition's confirmation test (`PartitionTest.to_dict()`) in words."""
    if t is None:
        return "no arm to test"
    base, loss = _num(t.get("baseline_loss")), _num(t.get("loss"))
    change = f"{(loss - base) / base:+.1%}" if base > 0 else "n/a"
    verdict = "kept" if t.get("passed") else "dropped"
    return (
        f"loss {change}, z {_fmt(_num(t.get('z')), digits=2)} vs "
        f"{_fmt(_num(t.get('threshold')), digits=2)}: {verdict}"
    )


def _fidelity_section(inp: ReportInputs) -> Section | None:
    r = inp.result
    if r is None:
        return None
    f = r.fidelity
    body = ""
    if inp.too_few and inp.noise is not None:
        body += (
            f"<p class='poor-text'>With {_count(r.synthetic_rows)} synthetic rows these scores "
            f"mostly measure sampling noise (see the warning at the top).</p>"
        )
    body += (
        "<p class='note'>Scores run from 0 (unlike the real data) to 1 (same distribution). "
        "SDMetrics definitions: KSComplement (numeric, date), TVComplement (categorical, "
        "boolean), CorrelationSimilarity (numeric pairs, full tables), ContingencySimilarity "
        f"(other pairs, on a sample of {_count(f.contingency_sample_rows.get('real', 0))} real / "
        f"{_count(f.contingency_sample_rows.get('synthetic', 0))} synthetic rows).</p>"
    )
    body += _table(
        ["column", "metric", "score", "real non-null", "synthetic non-null"],
        [
            (
                s.column,
                s.metric,
                _fmt(s.score),
                _count(s.real_non_null),
                _count(s.synthetic_non_null),
            )
            for s in f.column_shapes
        ],
        "shapes",
        numeric=[False, False, True, True, True],
    )
    heat = plot_pair_heatmap(r)
    if heat:
        body += _img(heat, "pair-trends", "column pair trends heatmap")
    worst = sorted(f.pair_trends, key=lambda t: (t.score is None, t.score if t.score else 0.0))
    shown = worst[:_MAX_TABLE_ROWS]
    if shown:
        body += (
            f"<p class='note'>Column pairs, lowest score first ({_count(len(shown))} of "
            f"{_count(len(f.pair_trends))}).</p>"
        )
        body += _table(
            ["column 1", "column 2", "metric", "score", "real corr", "synthetic corr"],
            [
                (
                    t.column_1,
                    t.column_2,
                    t.metric,
                    _fmt(t.score),
                    _fmt(t.real_correlation),
                    _fmt(t.synthetic_correlation),
                )
                for t in shown
            ],
            "pairs",
            numeric=[False, False, False, True, True, True],
        )
    return Section("fidelity", "Fidelity", body)


def _distributions_section(inp: ReportInputs) -> Section | None:
    r = inp.result
    if r is None or not r.distributions:
        return None
    body = "<div class='grid'>"
    for d in r.distributions:
        body += _img(plot_distribution(d), "distribution", f"distribution of {d.column}", d.column)
    body += "</div>"
    return Section("distributions", "Distributions, real vs synthetic", body)


def _privacy_section(inp: ReportInputs) -> Section | None:
    r = inp.result
    if r is None:
        return None
    p = r.privacy
    verdict = (
        "<span class='note'>not tested: no holdout</span>"
        if p.too_close is None
        else (
            "<span class='poor-text'>TOO CLOSE</span>"
            if p.too_close
            else "<span class='good-text'>ok</span>"
        )
    )
    body = f"<p>Verdict: {verdict}. {_e(p.reason)}.</p>"
    body += f"<p class='rule-words'>{_e(PRIVACY_RULE_WORDS)}</p>"
    body += (
        "<details><summary>the rule as a formula</summary>"
        f"<p><code>{_e(p.rule)}</code></p></details>"
    )
    prow: list[tuple[str, str]] = [
        (
            "exact copies of a training row",
            f"{_count(p.exact_copies)} ({_fmt(p.exact_copy_rate, True)})",
        ),
        ("holdout rows equal to a training row", _fmt(p.holdout_exact_copy_rate, True)),
        ("training rows in the distance reference sample", _count(p.reference_rows)),
    ]
    for name, stats in (("synthetic", p.dcr_synthetic), ("holdout", p.dcr_holdout)):
        if stats is not None:
            prow.append(
                (
                    f"distance to the closest training row, {name} ({_count(stats.rows)} rows)",
                    f"5th percentile {stats.p05:.4f}, median {stats.median:.4f}, mean "
                    f"{stats.mean:.4f}; at distance 0: {stats.zero_share:.1%}",
                )
            )
    if p.holdout_p05 is not None:
        prow.append(
            (
                "share within the holdout's 5th-percentile distance",
                f"synthetic {_fmt(p.synthetic_share_within_p05, True)}, holdout "
                f"{_fmt(p.holdout_share_within_p05, True)}",
            )
        )
    body += _table(["measure", "value"], prow, "privacy")
    return Section("privacy", "Privacy", body)


def _validity_section(inp: ReportInputs) -> Section | None:
    r = inp.result
    if r is None:
        return None
    v = r.validity
    vrow: list[tuple[str, str]] = [
        ("rule column", v.rule_column or "(none)"),
        (
            "rows satisfying their rule",
            f"{_count(v.rule_satisfied)} of {_count(v.rule_rows)} ({_fmt(v.rule_share, True)})",
        ),
        ("rows without a rule", _count(v.rows_without_rule)),
        ("schema adherence", _fmt(v.schema_adherence)),
        ("missing columns", ", ".join(v.missing_columns) or "none"),
        ("extra columns", ", ".join(v.extra_columns) or "none"),
        (
            "type differences",
            ", ".join(f"{k}: {t}" for k, t in v.type_mismatches.items()) or "none",
        ),
        (
            "uncastable values",
            ", ".join(f"{k}: {_count(n)}" for k, n in v.uncastable_values.items()) or "none",
        ),
        ("category adherence", _fmt(v.category_adherence_score)),
        ("boundary adherence", _fmt(v.boundary_adherence_score)),
    ]
    body = "<p class='note'>Shares from 0 to 1, higher is better: 1 means every synthetic value "
    body += "is a known category or within the real column's range.</p>"
    body += _table(["measure", "value"], vrow, "validity")
    per_col = [(c, "category", _fmt(x)) for c, x in v.category_adherence.items()] + [
        (c, "boundary", _fmt(x)) for c, x in v.boundary_adherence.items()
    ]
    if per_col:
        body += _table(
            ["column", "adherence", "share"], per_col, "adherence", numeric=[False, False, True]
        )
    if v.rules:
        body += _table(
            ["rule", "rows", "satisfied", "problem"],
            [
                (r.rule, _count(r.rows), _count(r.satisfied), r.error or "")
                for r in v.rules[:_MAX_TABLE_ROWS]
            ],
            "rules",
            numeric=[False, True, True, False],
        )
    return Section("validity", "Validity", body)


def _coverage_section(inp: ReportInputs) -> Section | None:
    if not inp.coverage:
        return None
    values = {k: float(x) for k, x in inp.coverage.items()}
    whole = all(float(x).is_integer() for x in values.values())
    unit = "training rows" if whole else "support"
    body = _img(_barh(values, f"{unit} per rule", unit), "coverage", "dgr coverage")
    ranked = sorted(values.items(), key=lambda kv: -kv[1])
    body += _table(
        ["rule", unit],
        [(k, _count(x) if whole else _fmt(x)) for k, x in ranked],
        numeric=[False, True],
    )
    return Section("coverage", "DGR coverage", body)


def _arms_section(inp: ReportInputs) -> Section | None:
    if not inp.arm_gains:
        return None
    values = {k: float(x) for k, x in inp.arm_gains.items()}
    body = (
        "<p class='note'>Each arm is a group of generated rows (one rule, one decision-tree "
        "path). Gain: how much adding the group lowered its partition's validation error when "
        "it was generated; above 0 makes it a candidate for selection.</p>"
    )
    if len(values) > 1:  # one bar says nothing the table does not
        body += _img(_barh(values, "validation gain per arm", "gain"), "arm-gains", "arm gains")
    ranked = sorted(values.items(), key=lambda kv: -kv[1])
    body += _table(
        ["arm", "gain"], [(k, _fmt(x)) for k, x in ranked[:_MAX_TABLE_ROWS]], numeric=[False, True]
    )
    return Section("arms", "Arm gains", body)


_COUNT_KEYS = {"step", "rows", "round", "evaluations"}


def _trace_steps(trace: Sequence[Mapping[str, Any]]) -> list[int]:
    """The trace's own step numbers when it has them, else 1, 2, 3, ..."""
    if all(_is_whole(r.get("step")) for r in trace):
        return [int(r["step"]) for r in trace]
    return list(range(1, len(trace) + 1))


def _trace_section(inp: ReportInputs) -> Section | None:
    trace = inp.selection_trace
    if not trace:
        return None
    body = ""
    tp = _trace_plot(trace)
    if tp:
        body += _img(tp, "selection-trace", "selection trace")
    keys: list[str] = []
    for r in trace:
        keys += [k for k in r if k not in keys and k != "step"]
    steps = _trace_steps(trace)

    def show(k: str, v: Any) -> str:
        if k in _COUNT_KEYS or (k.endswith("_rows") and _is_whole(v)):
            return _count(v)
        if isinstance(v, float) and math.isnan(v):
            return ""
        return _fmt(v)

    rows = [(s, *[show(k, r.get(k)) for k in keys]) for s, r in zip(steps, trace, strict=True)]
    numeric = [True, *[any(_is_number(r.get(k)) for r in trace) for k in keys]]
    accepted = ["accepted" if r.get("accepted") is True else "" for r in trace]
    body += (
        "<p class='note'>One row per evaluation; kept arms are highlighted. quality, diversity "
        "and utility are the bandit's normalised parts (utility = alpha x quality + (1 - alpha) "
        "x diversity); gain is the change of the validation score and z its significance.</p>"
    )
    body += _table(
        ["step", *keys],
        rows[:_MAX_TABLE_ROWS],
        "trace",
        numeric=numeric,
        row_classes=accepted[:_MAX_TABLE_ROWS],
    )
    return Section("trace", "Selection trace", body)


SectionBuilder = Callable[[ReportInputs], "Section | None"]
SECTIONS: tuple[SectionBuilder, ...] = (
    _errors_section,
    _utility_section,
    _power_section,
    _fidelity_section,
    _distributions_section,
    _privacy_section,
    _validity_section,
    _coverage_section,
    _arms_section,
    _trace_section,
)


def _banners(inp: ReportInputs) -> str:
    out = f"<p class='headline-text'>{_e(inp.headline)}</p>" if inp.headline else ""
    if inp.nothing_kept is not None:
        out += (
            "<div class='banner stop' id='nothing-kept'><b>No synthetic row was kept.</b>"
            f"{_e(inp.nothing_kept[:1].upper() + inp.nothing_kept[1:])}. The output holds no "
            "synthetic row for this run; fidelity, privacy and validity are measured on kept "
            "rows, so they are not shown."
            + (
                " Whether more rows could have shown a gain: <a href='#power'>Minimum detectable "
                "effect</a>."
                if inp.power
                else ""
            )
            + "</div>"
        )
    r = inp.result
    if r is not None and inp.too_few and inp.noise is not None:
        need = rows_for_fidelity(r.real_rows)
        need_text = (
            f" Fidelity needs about {_count(need)} synthetic rows to mean much." if need else ""
        )
        out += (
            "<div class='banner warn' id='too-few-rows'><b>Too few synthetic rows for the "
            "fidelity figures to mean anything.</b>"
            f"With {_count(r.synthetic_rows)} synthetic rows against {_count(r.real_rows)} real "
            f"ones, even rows drawn from the real distribution itself would score as low as "
            f"{max(0.0, 1 - inp.noise):.2f} on a column's shape by chance (95% bound)."
            f"{need_text}</div>"
        )
    return out


def _meta(inp: ReportInputs) -> str:
    r = inp.result
    if r is None:
        util = inp.utility_numbers or {}
        parts = [f"{_count(v)} {k.replace('_', ' ')}" for k, v in util.items() if "." not in k]
        return _e("; ".join(parts) + (f"; task {inp.task_name}" if inp.task_name else ""))
    return _e(
        f"{_count(r.real_rows)} real rows, {_count(r.synthetic_rows)} synthetic rows, "
        f"{_count(len(r.columns))} columns; target {r.target or '(none)'} ({r.task}); "
        f"evaluated in {r.seconds:.1f} s."
    )


def _template(name: str) -> str:
    return resources.files("date_spark").joinpath("templates", name).read_text(encoding="utf-8")


def render_html(
    result: EvaluationResult | None,
    *,
    title: str = "date-spark evaluation",
    coverage: Mapping[str, float] | None = None,
    arm_gains: Mapping[str, float] | None = None,
    selection_trace: Sequence[Mapping[str, Any]] | None = None,
    errors: Mapping[str, float] | None = None,
    utility: Mapping[str, float] | None = None,
    nothing_kept: str | None = None,
    task: str | None = None,
    error_label: str | None = None,
    gains: Sequence[Mapping[str, Any]] | None = None,
    headline: str | None = None,
    power: Mapping[str, Any] | None = None,
    extra_sections: Sequence[Section] = (),
) -> str:
    """The report page as a string (see `render_report`). `result` is None when no synthetic row
    was kept; pass `nothing_kept` (why) then."""
    inp = ReportInputs(
        result,
        title,
        coverage,
        arm_gains,
        selection_trace,
        errors,
        utility,
        nothing_kept if nothing_kept is not None or result is not None else "nothing to evaluate",
        task,
        error_label,
        gains,
        headline,
        power,
    )
    sections = [s for s in (b(inp) for b in SECTIONS) if s is not None] + list(extra_sections)
    body = "\n".join(
        f"<section id='{_e(s.id)}'><h2>{_e(s.heading)}</h2>\n{s.body}\n</section>" for s in sections
    )
    toc = "".join(f"<a href='#{_e(s.id)}'>{_e(s.heading)}</a>" for s in sections)
    return Template(_template("report.html")).substitute(
        title=_e(title),
        version=_e(__version__),
        style=_template("report.css"),
        meta=_meta(inp),
        banners=_banners(inp),
        cards="\n".join(_card(h) for h in headlines(inp)),
        toc=toc,
        sections=body,
        written=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def render_markdown(
    result: EvaluationResult | None,
    *,
    errors: Mapping[str, float] | None = None,
    utility: Mapping[str, float] | None = None,
    nothing_kept: str | None = None,
    headline: str | None = None,
    power: Mapping[str, Any] | None = None,
) -> str:
    """A few lines for a PR comment, a run summary or a notebook."""
    lines = ["# Evaluation summary", ""]
    if headline:
        lines += [headline, ""]
    if result is None:
        lines.append(f"- no synthetic row was kept: {nothing_kept or 'nothing to evaluate'}")
        if errors:
            lines.append(
                "- error: " + ", ".join(f"{k} {_fmt(float(x))}" for k, x in errors.items())
            )
        lines += _power_lines(power)
        return "\n".join(lines) + "\n"
    f, p, v = result.fidelity, result.privacy, result.validity
    worst = sorted(
        (s for s in f.column_shapes if s.score is not None), key=lambda s: s.score or 0.0
    )[:3]
    lines += [
        f"- rows: {_count(result.real_rows)} real, {_count(result.synthetic_rows)} synthetic; "
        f"{len(result.columns)} columns",
        f"- fidelity: overall {_fmt(f.overall)} (column shapes {_fmt(f.column_shapes_score)}, "
        f"pair trends {_fmt(f.column_pair_trends_score)}; 0 unlike the real data, 1 same "
        f"distributions)",
    ]
    noise = fidelity_noise(result.synthetic_rows, result.real_rows)
    if noise > FIDELITY_NOISE_MAX:
        lines.append(
            f"  - **warning**: too few synthetic rows for these to mean anything: rows drawn "
            f"from the real distribution itself could score {max(0.0, 1 - noise):.2f} by chance"
        )
    if worst:
        lines.append(
            "- weakest columns: " + ", ".join(f"`{s.column}` {_fmt(s.score)}" for s in worst)
        )
    dcr = ""
    if p.dcr_synthetic is not None:
        dcr = f"; median distance to the closest training row {p.dcr_synthetic.median:.4f}"
        if p.dcr_holdout is not None:
            dcr += f" (holdout {p.dcr_holdout.median:.4f})"
    flag = "n/a (no holdout)" if p.too_close is None else ("**TOO CLOSE**" if p.too_close else "ok")
    lines.append(
        f"- privacy: {flag}; exact copies {_count(p.exact_copies)} "
        f"({_fmt(p.exact_copy_rate, True)}){dcr}"
    )
    if p.too_close:
        lines.append(f"  - {p.reason}")
    lines.append(
        f"- validity: rule {_fmt(v.rule_share, True)}, schema {_fmt(v.schema_adherence)}, "
        f"categories {_fmt(v.category_adherence_score)}, bounds {_fmt(v.boundary_adherence_score)}"
    )
    if v.missing_columns:
        lines.append(f"  - missing columns: {', '.join(v.missing_columns)}")
    if errors:
        lines.append("- error: " + ", ".join(f"{k} {_fmt(float(x))}" for k, x in errors.items()))
    util = utility or result.utility
    if util:
        lines.append(
            "- utility: "
            + ", ".join(f"{k} {_count(x) if '.' not in k else _fmt(x)}" for k, x in util.items())
        )
    return "\n".join(lines) + "\n"


def _ceiling(p: Mapping[str, Any]) -> str:
    """The partition's ceiling cell: what its last n real rows did to its loss (a reduction)."""
    n, rel = p.get("ceiling_rows") or 0, _num(p.get("ceiling_relative"))
    if not n or not math.isfinite(rel):
        return ""
    return f"{_fmt(rel, pct=True)} ({_count(n)} rows)"


def _power_lines(power: Mapping[str, Any] | None, limit: int = 6) -> list[str]:
    if not power:
        return []
    parts = sorted(power.get("partitions") or (), key=lambda p: -_num(p.get("rows")))
    out = [
        f"- smallest detectable loss reduction: {_fmt(power.get('mde_relative'), pct=True)} over "
        f"all {_count(power.get('rows'))} confirmation rows"
    ]
    out += [
        f"  - `{p.get('key')}` ({_count(p.get('rows'))} rows): "
        f"{_fmt(p.get('mde_relative'), pct=True)}"
        + (f"; its last real rows bought {_ceiling(p)}" if _ceiling(p) else "")
        for p in parts[:limit]
    ]
    if len(parts) > limit:
        out.append(f"  - and {len(parts) - limit} more partitions (see the HTML report)")
    return out


# ----------------------------------------------------------------------------------------------
# Files and MLflow
# ----------------------------------------------------------------------------------------------


def render_report(
    result: EvaluationResult | None,
    out_dir: str | Path,
    *,
    title: str = "date-spark evaluation",
    coverage: Mapping[str, float] | None = None,
    arm_gains: Mapping[str, float] | None = None,
    selection_trace: Sequence[Mapping[str, Any]] | None = None,
    errors: Mapping[str, float] | None = None,
    utility: Mapping[str, float] | None = None,
    nothing_kept: str | None = None,
    task: str | None = None,
    error_label: str | None = None,
    gains: Sequence[Mapping[str, Any]] | None = None,
    headline: str | None = None,
    power: Mapping[str, Any] | None = None,
    extra_sections: Sequence[Section] = (),
) -> ReportPaths:
    """Write the HTML report, the Markdown summary and the numbers as JSON into `out_dir`.

    coverage: rule text -> training rows it covers; arm_gains: arm -> validation gain;
    selection_trace: one mapping per step (`score_after`/`score`/`utility`/`gain` are plotted);
    errors: setting -> test error (no partition / partition only / DATE); utility: the paper
    protocol's numbers; nothing_kept: why no row was kept, when `result` is None; power: the
    selection's `Confirmation.to_dict()` (plus "power", the level), shown as the per-partition
    minimum detectable effect."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = ReportPaths(out / HTML_NAME, out / MARKDOWN_NAME, out / JSON_NAME)
        page = render_html(
            result,
            title=title,
            coverage=coverage,
            arm_gains=arm_gains,
            selection_trace=selection_trace,
            errors=errors,
            utility=utility,
            nothing_kept=nothing_kept,
            task=task,
            error_label=error_label,
            gains=gains,
            headline=headline,
            power=power,
            extra_sections=extra_sections,
        )
        paths.html.write_text(page, encoding="utf-8")
        paths.markdown.write_text(
            render_markdown(
                result,
                errors=errors,
                utility=utility,
                nothing_kept=nothing_kept,
                headline=headline,
                power=power,
            ),
            encoding="utf-8",
        )
        data: dict[str, Any] = (
            result.to_dict()
            if result is not None
            else {"synthetic_rows": 0, "nothing_kept": nothing_kept, "utility": dict(utility or {})}
        )
        if power:
            data["confirmation"] = dict(power)
        paths.json.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write the evaluation report to {str(out)!r}: {err}") from None
    return paths


def log_report(
    paths: ReportPaths,
    *,
    result: EvaluationResult | None = None,
    artifact_path: str = "evaluation",
) -> bool:
    """Log the report files (and the result's metrics) to the active MLflow run; False, doing
    nothing, when no run is active, so callers need not check."""
    # A run can only be active if this process imported mlflow; importing it costs seconds.
    mlflow = sys.modules.get("mlflow")
    if mlflow is None or mlflow.active_run() is None:
        return False
    for p in (paths.html, paths.markdown, paths.json):
        mlflow.log_artifact(str(p), artifact_path=artifact_path)
    if result is not None:
        mlflow.log_metrics(result.metrics())
    return True


__all__ = [
    "HTML_NAME",
    "JSON_NAME",
    "MARKDOWN_NAME",
    "SECTIONS",
    "Headline",
    "ReportInputs",
    "ReportPaths",
    "Section",
    "fidelity_noise",
    "headlines",
    "log_report",
    "plot_distribution",
    "render_html",
    "render_markdown",
    "render_report",
]
