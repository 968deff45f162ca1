"""Stage 3 (the paper's Algorithm 3, "MDS"): which generated arms to keep, on the driver.

- `search.py`: the strategies (the bandit, forward and backward greedy, top-k) and `select()`,
  with the algorithm's description;
- `crossfit.py`: the scores they decide by (cross-fitted per-row losses, the paired z);
- `confirmation.py`: the one test of the searched set on rows the search never saw, and each
  partition's power;
- `diversity.py`: how alike two arms' rules are;
- `result.py`: arms, the evaluator protocol, the trace and the `Selection`.
"""

from __future__ import annotations

from date_spark.selection.confirmation import Confirmation, PartitionPower, PartitionTest
from date_spark.selection.crossfit import CrossFitEvaluator, Partition, paired_z
from date_spark.selection.diversity import diversity, infer_domains, rule_overlap
from date_spark.selection.result import Arm, Evaluator, LossEvaluator, Selection, TraceStep
from date_spark.selection.search import (
    STRATEGIES,
    confirm_selection,
    screen_threshold,
    select,
)

__all__ = [
    "STRATEGIES",
    "Arm",
    "Confirmation",
    "CrossFitEvaluator",
    "Evaluator",
    "LossEvaluator",
    "Partition",
    "PartitionPower",
    "PartitionTest",
    "Selection",
    "TraceStep",
    "confirm_selection",
    "diversity",
    "infer_domains",
    "paired_z",
    "rule_overlap",
    "screen_threshold",
    "select",
]
