"""The evaluation report a person reads: one self-contained HTML page, a short Markdown summary
and the numbers as JSON.

The page opens with the headline numbers, each with its scale and a verdict (good / fair / poor)
so a reader who does not know SDMetrics can tell what 0.83 means, and with warnings where a
number cannot be trusted (too few synthetic rows for fidelity) or where nothing was kept (and
why). Below come one section per topic.

Extending it: the page is `date_spark/templates/report.html` + `report.css`; the sections are
built by the functions in `SECTIONS` (`report_sections`), each taking the `ReportInputs`
(`report_inputs`) and returning a `Section` or None (nothing to show). A new section is a new
function in that tuple (or `extra_sections` for a caller's own); a new headline number is a
`Headline` in `headlines()` (`report_headlines`). Plots live in `report_plots`, number
formatting and HTML helpers in `report_format`.

Plots are drawn with matplotlib's Agg canvas (no display, no global pyplot state) from the
aggregates `evaluate` already computed, and embedded as base64 PNG, so the page opens anywhere,
offline, and can be logged to MLflow as one artifact.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from date_spark.errors import OutputError
from date_spark.evaluation.evaluator import EvaluationResult
from date_spark.evaluation.report_format import count_text, escape, fmt, to_number
from date_spark.evaluation.report_headlines import Headline, card, headlines
from date_spark.evaluation.report_inputs import (
    FIDELITY_NOISE_MAX,
    ReportInputs,
    Section,
    fidelity_noise,
    rows_for_fidelity,
)
from date_spark.evaluation.report_plots import plot_distribution
from date_spark.evaluation.report_sections import SECTIONS, ceiling_text
from date_spark.version import __version__

log = logging.getLogger(__name__)

HTML_NAME = "evaluation_report.html"
MARKDOWN_NAME = "evaluation_summary.md"
JSON_NAME = "evaluation.json"


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    markdown: Path
    json: Path


def _banners(inp: ReportInputs) -> str:
    out = f"<p class='headline-text'>{escape(inp.headline)}</p>" if inp.headline else ""
    if inp.nothing_kept is not None:
        out += (
            "<div class='banner stop' id='nothing-kept'><b>No synthetic row was kept.</b>"
            f"{escape(inp.nothing_kept[:1].upper() + inp.nothing_kept[1:])}. The output holds no "
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
            f" Fidelity needs about {count_text(need)} synthetic rows to mean much." if need else ""
        )
        out += (
            "<div class='banner warn' id='too-few-rows'><b>Too few synthetic rows for the "
            "fidelity figures to mean anything.</b>"
            f"With {count_text(r.synthetic_rows)} synthetic rows against "
            f"{count_text(r.real_rows)} real "
            f"ones, even rows drawn from the real distribution itself would score as low as "
            f"{max(0.0, 1 - inp.noise):.2f} on a column's shape by chance (95% bound)."
            f"{need_text}</div>"
        )
    return out


def _meta(inp: ReportInputs) -> str:
    r = inp.result
    if r is None:
        util = inp.utility_numbers or {}
        parts = [f"{count_text(v)} {k.replace('_', ' ')}" for k, v in util.items() if "." not in k]
        return escape("; ".join(parts) + (f"; task {inp.task_name}" if inp.task_name else ""))
    return escape(
        f"{count_text(r.real_rows)} real rows, {count_text(r.synthetic_rows)} synthetic rows, "
        f"{count_text(len(r.columns))} columns; target {r.target or '(none)'} ({r.task}); "
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
        f"<section id='{escape(s.id)}'><h2>{escape(s.heading)}</h2>\n{s.body}\n</section>"
        for s in sections
    )
    toc = "".join(f"<a href='#{escape(s.id)}'>{escape(s.heading)}</a>" for s in sections)
    return Template(_template("report.html")).substitute(
        title=escape(title),
        version=escape(__version__),
        style=_template("report.css"),
        meta=_meta(inp),
        banners=_banners(inp),
        cards="\n".join(card(h) for h in headlines(inp)),
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
            lines.append("- error: " + ", ".join(f"{k} {fmt(float(x))}" for k, x in errors.items()))
        lines += _power_lines(power)
        return "\n".join(lines) + "\n"
    f, p, v = result.fidelity, result.privacy, result.validity
    worst = sorted(
        (s for s in f.column_shapes if s.score is not None), key=lambda s: s.score or 0.0
    )[:3]
    lines += [
        f"- rows: {count_text(result.real_rows)} real, "
        f"{count_text(result.synthetic_rows)} synthetic; "
        f"{len(result.columns)} columns",
        f"- fidelity: overall {fmt(f.overall)} (column shapes {fmt(f.column_shapes_score)}, "
        f"pair trends {fmt(f.column_pair_trends_score)}; 0 unlike the real data, 1 same "
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
            "- weakest columns: " + ", ".join(f"`{s.column}` {fmt(s.score)}" for s in worst)
        )
    dcr = ""
    if p.dcr_synthetic is not None:
        dcr = f"; median distance to the closest training row {p.dcr_synthetic.median:.4f}"
        if p.dcr_holdout is not None:
            dcr += f" (holdout {p.dcr_holdout.median:.4f})"
    flag = "n/a (no holdout)" if p.too_close is None else ("**TOO CLOSE**" if p.too_close else "ok")
    lines.append(
        f"- privacy: {flag}; exact copies {count_text(p.exact_copies)} "
        f"({fmt(p.exact_copy_rate, True)}){dcr}"
    )
    if p.too_close:
        lines.append(f"  - {p.reason}")
    lines.append(
        f"- validity: rule {fmt(v.rule_share, True)}, schema {fmt(v.schema_adherence)}, "
        f"categories {fmt(v.category_adherence_score)}, bounds {fmt(v.boundary_adherence_score)}"
    )
    if v.missing_columns:
        lines.append(f"  - missing columns: {', '.join(v.missing_columns)}")
    if errors:
        lines.append("- error: " + ", ".join(f"{k} {fmt(float(x))}" for k, x in errors.items()))
    util = utility or result.utility
    if util:
        lines.append(
            "- utility: "
            + ", ".join(f"{k} {count_text(x) if '.' not in k else fmt(x)}" for k, x in util.items())
        )
    return "\n".join(lines) + "\n"


def _power_lines(power: Mapping[str, Any] | None, limit: int = 6) -> list[str]:
    if not power:
        return []
    parts = sorted(power.get("partitions") or (), key=lambda p: -to_number(p.get("rows")))
    out = [
        f"- smallest detectable loss reduction: {fmt(power.get('mde_relative'), pct=True)} over "
        f"all {count_text(power.get('rows'))} confirmation rows"
    ]
    out += [
        f"  - `{p.get('key')}` ({count_text(p.get('rows'))} rows): "
        f"{fmt(p.get('mde_relative'), pct=True)}"
        + (f"; its last real rows bought {ceiling_text(p)}" if ceiling_text(p) else "")
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
