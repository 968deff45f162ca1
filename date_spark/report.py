"""The evaluation report: one self-contained HTML page plus a short Markdown summary.

Plots are drawn with matplotlib's Agg canvas (no display, no global pyplot state) from the
aggregates `evaluate` already computed, and embedded as base64 PNG, so the page opens anywhere,
offline, and can be logged to MLflow as one artifact. Sections for rule coverage, arm gains, the
selection trace and error before/after render only when the caller passes them.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

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


def _trace_plot(trace: Sequence[Mapping[str, Any]]) -> str | None:
    keys = [
        k
        for k in ("score", "utility", "best_score", "validation_error", "error", "gain")
        if any(_is_number(r.get(k)) for r in trace)
    ]
    if not keys:
        return None
    fig = Figure(figsize=(7.0, 3.2))
    ax = fig.subplots()
    for k in keys[:3]:
        pts = [(i, float(r[k])) for i, r in enumerate(trace) if _is_number(r.get(k))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=k)
    ax.set_xlabel("selection step")
    ax.set_title("selection trace", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def _errors_plot(errors: Mapping[str, float]) -> str:
    fig = Figure(figsize=(6.0, 3.0))
    ax = fig.subplots()
    names = list(errors)
    ax.bar(range(len(names)), [float(errors[n]) for n in names], color=_REAL)
    ax.set_xticks(range(len(names)), [_short(n, 18) for n in names], rotation=20, ha="right")
    ax.set_ylabel("test error")
    ax.set_title("error before and after", fontsize=10)
    return _png(fig)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.1%}" if pct else f"{v:.4f}"
    return str(v)


def _img(b64: str, plot: str, alt: str, column: str | None = None) -> str:
    col = f' data-column="{_e(column)}"' if column is not None else ""
    return (
        f'<img class="plot" data-plot="{_e(plot)}"{col} alt="{_e(alt)}" '
        f'src="data:image/png;base64,{b64}">'
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{_e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1300px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f4f4f4}
.kpi{display:inline-block;margin:0 18px 8px 0;padding:8px 12px;background:#f6f8fa;border-radius:6px}
.kpi b{display:block;font-size:20px}.grid{display:flex;flex-wrap:wrap;gap:8px}
.flag{color:#b00020;font-weight:bold}.ok{color:#1b7f3b;font-weight:bold}.note{color:#666;font-size:12px}
"""


def render_html(
    result: EvaluationResult,
    *,
    title: str = "date-spark evaluation",
    coverage: Mapping[str, float] | None = None,
    arm_gains: Mapping[str, float] | None = None,
    selection_trace: Sequence[Mapping[str, Any]] | None = None,
    errors: Mapping[str, float] | None = None,
) -> str:
    """The report page as a string (see `render_report`)."""
    f, p, v = result.fidelity, result.privacy, result.validity
    parts: list[str] = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='note'>{result.real_rows} real rows, {result.synthetic_rows} synthetic rows, "
        f"{len(result.columns)} columns; target {_e(result.target or '(none)')} "
        f"({_e(result.task)}); evaluated in {result.seconds:.1f} s.</p>",
    ]
    flag = (
        "<span class='note'>n/a (no holdout)</span>"
        if p.too_close is None
        else (
            "<span class='flag'>TOO CLOSE</span>" if p.too_close else "<span class='ok'>ok</span>"
        )
    )
    kpis = [
        ("fidelity (overall)", _fmt(f.overall)),
        ("column shapes", _fmt(f.column_shapes_score)),
        ("column pair trends", _fmt(f.column_pair_trends_score)),
        ("exact copies", _fmt(p.exact_copy_rate, pct=True)),
        ("rows satisfying their rule", _fmt(v.rule_share, pct=True)),
    ]
    parts.append(
        "<div>"
        + "".join(f"<span class='kpi'>{_e(k)}<b>{_e(val)}</b></span>" for k, val in kpis)
        + f"<span class='kpi'>privacy<b>{flag}</b></span></div>"
    )

    if errors:
        parts.append("<h2 id='errors'>Error before and after</h2>")
        parts.append(_img(_errors_plot(errors), "errors", "test error before and after"))
        parts.append(_table(["setting", "error"], [(k, _fmt(float(x))) for k, x in errors.items()]))
    if result.utility:
        parts.append("<h2 id='utility'>Utility</h2>")
        parts.append(_table(["metric", "value"], [(k, _fmt(x)) for k, x in result.utility.items()]))

    parts.append("<h2 id='fidelity'>Fidelity</h2>")
    parts.append(
        "<p class='note'>SDMetrics definitions: KSComplement (numeric, date), TVComplement "
        "(categorical, boolean), CorrelationSimilarity (numeric pairs, full tables), "
        "ContingencySimilarity (other pairs, on a sample of "
        f"{f.contingency_sample_rows.get('real', 0)} real / "
        f"{f.contingency_sample_rows.get('synthetic', 0)} synthetic rows).</p>"
    )
    parts.append(
        _table(
            ["column", "metric", "score", "real non-null", "synthetic non-null"],
            [
                (s.column, s.metric, _fmt(s.score), s.real_non_null, s.synthetic_non_null)
                for s in f.column_shapes
            ],
            "shapes",
        )
    )
    heat = plot_pair_heatmap(result)
    if heat:
        parts.append(_img(heat, "pair-trends", "column pair trends heatmap"))
    worst = sorted(f.pair_trends, key=lambda t: (t.score is None, t.score if t.score else 0.0))
    shown = worst[:_MAX_TABLE_ROWS]
    if shown:
        parts.append(
            f"<p class='note'>Column pairs, lowest score first ({len(shown)} of "
            f"{len(f.pair_trends)}).</p>"
        )
        parts.append(
            _table(
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
            )
        )

    parts.append("<h2 id='distributions'>Distributions, real vs synthetic</h2><div class='grid'>")
    for d in result.distributions:
        parts.append(
            _img(plot_distribution(d), "distribution", f"distribution of {d.column}", d.column)
        )
    parts.append("</div>")

    parts.append("<h2 id='privacy'>Privacy</h2>")
    prow: list[tuple[str, str]] = [
        ("exact copies of a training row", f"{p.exact_copies} ({_fmt(p.exact_copy_rate, True)})"),
        ("holdout rows equal to a training row", _fmt(p.holdout_exact_copy_rate, True)),
        ("training rows in the DCR reference sample", str(p.reference_rows)),
    ]
    for name, stats in (("synthetic", p.dcr_synthetic), ("holdout", p.dcr_holdout)):
        if stats is not None:
            prow.append(
                (
                    f"DCR {name} -> training ({stats.rows} rows)",
                    f"p05 {stats.p05:.4f}, median {stats.median:.4f}, mean {stats.mean:.4f}, "
                    f"at distance 0: {stats.zero_share:.1%}",
                )
            )
    prow.append(("too close", _fmt(p.too_close)))
    prow.append(("why", p.reason))
    parts.append(_table(["measure", "value"], prow, "privacy"))
    parts.append(f"<p class='note'>Flag rule: {_e(p.rule)}</p>")

    parts.append("<h2 id='validity'>Validity</h2>")
    vrow: list[tuple[str, str]] = [
        ("rule column", v.rule_column or "(none)"),
        (
            "rows satisfying their rule",
            f"{v.rule_satisfied} of {v.rule_rows} ({_fmt(v.rule_share, True)})",
        ),
        ("rows without a rule", str(v.rows_without_rule)),
        ("schema adherence", _fmt(v.schema_adherence)),
        ("missing columns", ", ".join(v.missing_columns) or "none"),
        ("extra columns", ", ".join(v.extra_columns) or "none"),
        (
            "type differences",
            ", ".join(f"{k}: {t}" for k, t in v.type_mismatches.items()) or "none",
        ),
        (
            "uncastable values",
            ", ".join(f"{k}: {n}" for k, n in v.uncastable_values.items()) or "none",
        ),
        ("category adherence", _fmt(v.category_adherence_score)),
        ("boundary adherence", _fmt(v.boundary_adherence_score)),
    ]
    parts.append(_table(["measure", "value"], vrow, "validity"))
    per_col = [(c, "category", _fmt(x)) for c, x in v.category_adherence.items()] + [
        (c, "boundary", _fmt(x)) for c, x in v.boundary_adherence.items()
    ]
    if per_col:
        parts.append(_table(["column", "adherence", "share"], per_col, "adherence"))
    if v.rules:
        parts.append(
            _table(
                ["rule", "rows", "satisfied", "problem"],
                [(r.rule, r.rows, r.satisfied, r.error or "") for r in v.rules[:_MAX_TABLE_ROWS]],
                "rules",
            )
        )

    for values, anchor, heading, title, key, unit, plot_id in (
        (coverage, "coverage", "DGR coverage", "support per rule", "rule", "support", "coverage"),
        (arm_gains, "arms", "Arm gains", "validation gain per arm", "arm", "gain", "arm-gains"),
    ):
        if not values:
            continue
        parts.append(f"<h2 id='{anchor}'>{heading}</h2>")
        parts.append(_img(_barh(values, title, unit), plot_id, heading.lower()))
        ranked = sorted(values.items(), key=lambda kv: -float(kv[1]))
        parts.append(
            _table(
                [key, unit],
                [(k, _fmt(float(x))) for k, x in ranked],
            )
        )
    if selection_trace:
        parts.append("<h2 id='trace'>Selection trace</h2>")
        tp = _trace_plot(selection_trace)
        if tp:
            parts.append(_img(tp, "selection-trace", "selection trace"))
        keys: list[str] = []
        for r in selection_trace:
            keys += [k for k in r if k not in keys]
        parts.append(
            _table(
                ["step", *keys],
                [
                    (i, *[_fmt(r.get(k)) for k in keys])
                    for i, r in enumerate(selection_trace[:_MAX_TABLE_ROWS])
                ],
                "trace",
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def render_markdown(result: EvaluationResult, *, errors: Mapping[str, float] | None = None) -> str:
    """A few lines for a PR comment, a run summary or a notebook."""
    f, p, v = result.fidelity, result.privacy, result.validity
    worst = sorted(
        (s for s in f.column_shapes if s.score is not None), key=lambda s: s.score or 0.0
    )[:3]
    lines = [
        "# Evaluation summary",
        "",
        f"- rows: {result.real_rows} real, {result.synthetic_rows} synthetic; "
        f"{len(result.columns)} columns",
        f"- fidelity: overall {_fmt(f.overall)} (column shapes {_fmt(f.column_shapes_score)}, "
        f"pair trends {_fmt(f.column_pair_trends_score)})",
    ]
    if worst:
        lines.append(
            "- weakest columns: " + ", ".join(f"`{s.column}` {_fmt(s.score)}" for s in worst)
        )
    dcr = ""
    if p.dcr_synthetic is not None:
        dcr = f"; median DCR synthetic {p.dcr_synthetic.median:.4f}"
        if p.dcr_holdout is not None:
            dcr += f" vs holdout {p.dcr_holdout.median:.4f}"
    flag = "n/a (no holdout)" if p.too_close is None else ("**TOO CLOSE**" if p.too_close else "ok")
    lines.append(
        f"- privacy: {flag}; exact copies {p.exact_copies} ({_fmt(p.exact_copy_rate, True)}){dcr}"
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
    if result.utility:
        lines.append("- utility: " + ", ".join(f"{k} {_fmt(x)}" for k, x in result.utility.items()))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Files and MLflow
# ----------------------------------------------------------------------------------------------


def render_report(
    result: EvaluationResult,
    out_dir: str | Path,
    *,
    title: str = "date-spark evaluation",
    coverage: Mapping[str, float] | None = None,
    arm_gains: Mapping[str, float] | None = None,
    selection_trace: Sequence[Mapping[str, Any]] | None = None,
    errors: Mapping[str, float] | None = None,
) -> ReportPaths:
    """Write the HTML report, the Markdown summary and the result as JSON into `out_dir`.

    coverage: rule text -> support; arm_gains: arm -> validation gain; selection_trace: one mapping
    per step (numeric `score`/`utility`/`gain`/... keys are plotted); errors: setting -> test error
    (e.g. no partition / partition only / DATE)."""
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
        )
        paths.html.write_text(page, encoding="utf-8")
        paths.markdown.write_text(render_markdown(result, errors=errors), encoding="utf-8")
        paths.json.write_text(
            json.dumps(result.to_dict(), indent=2, default=str) + "\n", encoding="utf-8"
        )
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
    "ReportPaths",
    "log_report",
    "plot_distribution",
    "render_html",
    "render_markdown",
    "render_report",
]
