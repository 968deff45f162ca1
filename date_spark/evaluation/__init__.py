"""Evaluation of a synthetic table against the real one: fidelity, privacy and validity, and the
report a person reads (`date_spark.evaluation.report`, kept out of this root so that evaluating
does not import matplotlib).

One module per concern: `settings` (accuracy and sample caps), `tables` (schema and alignment of
the two tables), `stats` (the shared first pass), `fidelity`, `privacy`, `validity`, and
`evaluator` (`evaluate`, which runs them, and its `EvaluationResult`). `utility` is the job's own
test-split evaluation of the kept rows: the loss of one model, and of a model per rule, with and
without them.
"""

from __future__ import annotations

from date_spark.evaluation.evaluator import EvaluationResult, evaluate
from date_spark.evaluation.fidelity import (
    ColumnShape,
    Distribution,
    Fidelity,
    PairTrend,
    choose_pairs,
)
from date_spark.evaluation.privacy import (
    FLAG_RULE,
    DcrStats,
    Privacy,
    exact_copies_frame,
    nearest_distances,
)
from date_spark.evaluation.settings import EvaluationSettings
from date_spark.evaluation.tables import infer_schema, only_synthetic
from date_spark.evaluation.validity import RuleCheck, Validity

__all__ = [
    "FLAG_RULE",
    "ColumnShape",
    "DcrStats",
    "Distribution",
    "EvaluationResult",
    "EvaluationSettings",
    "Fidelity",
    "PairTrend",
    "Privacy",
    "RuleCheck",
    "Validity",
    "choose_pairs",
    "evaluate",
    "exact_copies_frame",
    "infer_schema",
    "nearest_distances",
    "only_synthetic",
]
