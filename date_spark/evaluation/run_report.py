"""A run's report from its stages' results: what the job's evaluation stage writes under the run,
and beside a path output. The facade hands over the results; the choice of what the page shows
(errors by model, the arms' gains, the trace, why nothing was kept) is made here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from date_spark.config import Config
from date_spark.discovery import Discovery
from date_spark.evaluation.evaluator import EvaluationResult
from date_spark.evaluation.report import render_report
from date_spark.evaluation.report_sections import keep_section
from date_spark.evaluation.utility import Utility
from date_spark.selection import Selection

__all__ = ["write_run_report"]


def write_run_report(
    out_dir: Path,
    *,
    run_id: str,
    cfg: Config,
    rules: Discovery,
    arms: pd.DataFrame,
    selection: Selection,
    utility: Utility,
    metrics: dict[str, float],
    result: EvaluationResult | None,
    task: str,
) -> Path:
    """The report under `out_dir`, and a copy beside a local path output
    (`<output.path>_report/<run_date>/`); returns the HTML page."""
    u, sel = utility, selection
    errors = {
        "no partition": u.losses["no_partition"],
        "partition only": u.losses["partition_only"],
        "DATE": u.losses["date"],
        "global + synthetic": u.losses["global_synthetic"],
    }
    trace = [{str(k): v for k, v in r.items()} for r in sel.trace_frame().to_dict("records")]
    nothing_kept: Any = None
    if not sel.n_rows:
        why = sel.explain(power=False, rules_found=bool(rules.dgrs))
        nothing_kept = why.removeprefix("kept 0 rows: ")
    paths = render_report(
        result,
        out_dir,
        title=f"date-spark run {run_id}",
        coverage={d.rule.to_text(): d.support for d in rules.dgrs},
        arm_gains=dict(zip(arms["arm_id"], arms["gain"].astype(float), strict=True))
        if len(arms)
        else None,
        selection_trace=trace if sel.trace else None,
        errors=errors,
        error_label=f"{u.loss_name} ({u.model})",
        gains=[g.to_dict() for g in u.gains()],
        headline=u.headline(),
        utility=metrics,
        nothing_kept=nothing_kept,
        task=task,
        power=None
        if sel.confirmation is None
        else {**sel.confirmation.to_dict(), "power": cfg.selection.power},
        extra_sections=[keep_section(sel.gain.to_dict())] if sel.gain is not None else (),
    )
    if cfg.output.path and "://" not in cfg.output.path:
        beside = Path(f"{cfg.output.path.rstrip('/')}_report") / cfg.output.run_date.isoformat()
        beside.mkdir(parents=True, exist_ok=True)
        for p in (paths.html, paths.markdown, paths.json):
            (beside / p.name).write_bytes(p.read_bytes())
    return paths.html
