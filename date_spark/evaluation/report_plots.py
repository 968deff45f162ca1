"""The report's plots, drawn with matplotlib's Agg canvas (no display, no global pyplot state)
and returned as base64 PNG."""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from date_spark.evaluation.evaluator import EvaluationResult
from date_spark.evaluation.fidelity import Distribution
from date_spark.evaluation.report_format import is_number, is_whole, shorten

_REAL, _SYN = "#4c72b0", "#dd8452"
_MAX_BARS = 30
_EPOCH = dt.datetime(1970, 1, 1)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _epoch_label(seconds: float) -> str:
    try:
        return (_EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d")
    except (OverflowError, ValueError):
        return f"{seconds:.0f}s"


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
        labels = [shorten(v, 16) for v in d.labels]
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
    ax.set_title(shorten(title, 70), fontsize=10)
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
    labels = [shorten(c, 18) for c in cols]
    ax.set_xticks(range(len(cols)), labels, rotation=90)
    ax.set_yticks(range(len(cols)), labels)
    ax.set_title("column pair trends (1 = same as real)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def barh_plot(values: Mapping[str, float], title: str, xlabel: str) -> str:
    items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:_MAX_BARS]
    fig = Figure(figsize=(7.0, 1.2 + 0.32 * len(items)))
    ax = fig.subplots()
    names = [shorten(k, 60) for k, _ in items][::-1]
    vals = [v for _, v in items][::-1]
    ax.barh(range(len(items)), vals, color=[_REAL if v >= 0 else _SYN for v in vals])
    ax.set_yticks(range(len(items)), names, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.axvline(0, color="black", linewidth=0.6)
    return _png(fig)


_TRACE_KEYS = ("score_after", "score", "utility", "best_score", "validation_error", "error", "gain")


def trace_plot(trace: Sequence[Mapping[str, Any]]) -> str | None:
    keys = [k for k in _TRACE_KEYS if any(is_number(r.get(k)) for r in trace)]
    if not keys:
        return None
    fig = Figure(figsize=(7.0, 3.2))
    ax = fig.subplots()
    steps = trace_steps(trace)
    for k in keys[:1]:
        pts = [(s, float(r[k])) for s, r in zip(steps, trace, strict=True) if is_number(r.get(k))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=k)
        took = [
            (s, float(r[k]))
            for s, r in zip(steps, trace, strict=True)
            if is_number(r.get(k)) and r.get("accepted") is True
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


def errors_plot(errors: Mapping[str, float], ylabel: str) -> str:
    fig = Figure(figsize=(6.0, 3.0))
    ax = fig.subplots()
    names = list(errors)
    ax.bar(range(len(names)), [float(errors[n]) for n in names], color=_REAL)
    ax.set_xticks(range(len(names)), [shorten(n, 18) for n in names], rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title("before and after (lower is better)", fontsize=10)
    return _png(fig)


def trace_steps(trace: Sequence[Mapping[str, Any]]) -> list[int]:
    """The trace's own step numbers when it has them, else 1, 2, 3, ..."""
    if all(is_whole(r.get("step")) for r in trace):
        return [int(r["step"]) for r in trace]
    return list(range(1, len(trace) + 1))


__all__ = [
    "barh_plot",
    "errors_plot",
    "plot_distribution",
    "plot_pair_heatmap",
    "trace_plot",
    "trace_steps",
]
