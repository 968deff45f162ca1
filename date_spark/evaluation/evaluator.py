"""Evaluation of a synthetic table against the real one: fidelity, privacy and validity.

Works on any real/synthetic pair (the job's output, or two files through `date-spark evaluate`).
Every metric is a Spark aggregation; only aggregates and capped samples reach the driver.

`evaluate` aligns both tables to the schema, computes the shared statistics once (pass 1), then
fidelity, validity and privacy from them.

Cost: about seven Spark jobs (statistics, grid counts, category counts, contingency, validity,
copies join, DCR samples), each over the union of both sides; more only for very wide tables."""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from date_spark.errors import InputError
from date_spark.evaluation.fidelity import Distribution, Fidelity, measure_fidelity, scored_pairs
from date_spark.evaluation.privacy import Privacy, measure_privacy
from date_spark.evaluation.settings import EvaluationSettings
from date_spark.evaluation.stats import first_pass
from date_spark.evaluation.tables import Aligned, align_reference, aligned
from date_spark.evaluation.validity import Validity, measure_validity
from date_spark.schema import TableSchema

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    real_rows: int
    synthetic_rows: int
    columns: list[str]
    target: str
    task: str
    fidelity: Fidelity
    privacy: Privacy
    validity: Validity
    distributions: list[Distribution]
    settings: EvaluationSettings
    seconds: float = 0.0
    utility: dict[str, float] | None = None  # filled by the paper-protocol evaluation

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (NaN becomes None)."""
        return _json_safe(asdict(self))

    def metrics(self) -> dict[str, float]:
        """Flat `section.name -> value` for MLflow; None values are left out."""
        f, p, v = self.fidelity, self.privacy, self.validity
        out: dict[str, float | bool | None] = {
            "fidelity.overall": f.overall,
            "fidelity.column_shapes": f.column_shapes_score,
            "fidelity.column_pair_trends": f.column_pair_trends_score,
            "privacy.exact_copy_rate": p.exact_copy_rate,
            "privacy.exact_copies": p.exact_copies,
            "privacy.holdout_exact_copy_rate": p.holdout_exact_copy_rate,
            "privacy.too_close": p.too_close,
            "validity.rule_share": v.rule_share,
            "validity.schema_adherence": v.schema_adherence,
            "validity.category_adherence": v.category_adherence_score,
            "validity.boundary_adherence": v.boundary_adherence_score,
            "rows.real": self.real_rows,
            "rows.synthetic": self.synthetic_rows,
        }
        for name, stats in (("synthetic", p.dcr_synthetic), ("holdout", p.dcr_holdout)):
            if stats is not None:
                out[f"privacy.dcr_{name}_median"] = stats.median
                out[f"privacy.dcr_{name}_p05"] = stats.p05
        for s in f.column_shapes:
            out[f"fidelity.shape.{_metric_key(s.column)}"] = s.score
        for key, value in (self.utility or {}).items():
            out[f"utility.{_metric_key(key)}"] = value
        return {
            k: float(val)
            for k, val in out.items()
            if val is not None and not (isinstance(val, float) and math.isnan(val))
        }


def _metric_key(name: str) -> str:
    # MLflow accepts letters, digits, _ - . space : / in metric names.
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", name)[:200]


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _json_safe(v.item())
    return v


def evaluate(
    real: DataFrame,
    synthetic: DataFrame,
    schema: TableSchema,
    *,
    holdout: DataFrame | None = None,
    train: DataFrame | None = None,
    rule_column: str | None = None,
    settings: EvaluationSettings | None = None,
) -> EvaluationResult:
    """Fidelity of `synthetic` against `real`, privacy against `train` (default: `real`, the rows
    the generator saw) with `holdout` (real rows it never saw) as the baseline, and validity.

    Columns of `schema` missing from `synthetic` are reported and left out of the metrics; extra
    synthetic columns (other than `rule_column` and `_date_*` provenance) are reported."""
    t0 = time.perf_counter()
    st = settings or EvaluationSettings()
    _check_columns(real, synthetic, schema, rule_column)
    # before any cast: an empty file written by pandas types its columns `null` (read as int),
    # and aligning it to the real types would fail in Spark's analyzer with a Java trace
    _check_rows(0 if real.isEmpty() else 1, 0 if synthetic.isEmpty() else 1)
    t = aligned(real, synthetic, schema, rule_column)
    chosen, pairs_total, corr_pairs = scored_pairs(t.shared, t.cont, st)
    rs, ss = first_pass(t.real, t.syn, t.cont, t.disc, st, corr_pairs)
    _check_rows(rs.rows, ss.rows)
    fidelity, dists, cat_adherence = measure_fidelity(t, rs, ss, st, chosen, pairs_total)
    validity = measure_validity(
        synthetic, schema, t.align, t.shared, t.cont, rs, rule_column, cat_adherence, st
    )
    train_a, train_rows = _training(train, t, rs.rows)
    hold_a = align_reference(holdout, t.sub, "holdout") if holdout is not None else None
    privacy = measure_privacy(
        t.syn, ss.rows, train_a, train_rows, hold_a, t.shared, t.cont, t.disc, rs, st
    )
    _log_summary(fidelity, privacy, validity, ss.rows)
    return EvaluationResult(
        real_rows=rs.rows,
        synthetic_rows=ss.rows,
        columns=[s.name for s in t.shared],
        target=schema.target,
        task=schema.task,
        fidelity=fidelity,
        privacy=privacy,
        validity=validity,
        distributions=dists,
        settings=st,
        seconds=round(time.perf_counter() - t0, 3),
    )


def _check_columns(
    real: DataFrame, synthetic: DataFrame, schema: TableSchema, rule_column: str | None
) -> None:
    """The schema must describe the real table, and a named rule column must exist."""
    missing_real = [n for n in schema.names if n not in real.columns]
    if missing_real:
        raise InputError(
            f"column {missing_real[0]!r} of the schema is not in the real table; pass the schema "
            f"of the table being evaluated"
        )
    if rule_column and rule_column not in synthetic.columns:
        raise InputError(
            f"rule column {rule_column!r} is not in the synthetic table; columns are: "
            f"{', '.join(synthetic.columns)}"
        )


def _check_rows(real_rows: int, synthetic_rows: int) -> None:
    if real_rows == 0:
        raise InputError("the real table has no rows; point --real at the table the generator saw")
    if synthetic_rows == 0:
        raise InputError("the synthetic table has no rows; there is nothing to evaluate")


def _training(train: DataFrame | None, t: Aligned, real_rows: int) -> tuple[DataFrame, int]:
    """The rows the generator saw and their count: `train` when given, else the real table."""
    if train is None:
        return t.real, real_rows
    train_a = align_reference(train, t.sub, "training")
    counted = train_a.agg(F.count(F.lit(1)).alias("n")).first()
    train_rows = int(counted["n"]) if counted else 0
    if train_rows == 0:
        raise InputError("the training table has no rows; pass the rows the generator saw")
    return train_a, train_rows


def _log_summary(
    fidelity: Fidelity, privacy: Privacy, validity: Validity, synthetic_rows: int
) -> None:
    overall = fidelity.overall
    log.info(
        "evaluation: fidelity %s, exact copies %d/%d, too_close %s, rule share %s",
        f"{overall:.4f}" if overall is not None else "n/a",
        privacy.exact_copies,
        synthetic_rows,
        privacy.too_close,
        f"{validity.rule_share:.3f}" if validity.rule_share is not None else "n/a",
    )


__all__ = ["EvaluationResult", "evaluate"]
