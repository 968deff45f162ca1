"""Stage 3: which generated rows to keep, on the driver.

- `gain.py` and `keep.py`: the default rule (`selection.rule: gain`): the expected gain for one
  model of the user's kind trained on real + kept rows, cross-fitted over every non-test row, per
  partition at a few volumes, shrunk; `copies.py` drops generated rows that copy a real row;
- `search.py` (the paper's Algorithm 3, "MDS", `selection.rule: holm | paper`): the strategies
  (the bandit, forward and backward greedy, top-k) and `select()`, with the algorithm's
  description;
- `crossfit.py`: the scores they decide by (cross-fitted per-row losses, the paired z);
- `confirmation.py`: the one test of the searched set on rows the search never saw, and each
  partition's power;
- `diversity.py`: how alike two arms' rules are;
- `evaluators.py`: the search's screen and confirmation evaluators, built from the real rows;
- `result.py`: arms, the evaluator protocol, the trace and the `Selection`, which explains itself
  with `explain.py` (what was kept and why, the stage's numbers).
"""

from __future__ import annotations

from date_spark.selection.confirmation import Confirmation, PartitionPower, PartitionTest
from date_spark.selection.copies import CopyCount, find_copies
from date_spark.selection.crossfit import CrossFitEvaluator, Partition, paired_z
from date_spark.selection.diversity import diversity, infer_domains, rule_overlap
from date_spark.selection.evaluators import search_evaluators
from date_spark.selection.gain import GainDecision, GainEstimate, GainEvaluator, PartitionChoice
from date_spark.selection.keep import drop_copies, gain_evaluator, select_by_gain
from date_spark.selection.result import (
    Arm,
    Evaluator,
    LossEvaluator,
    Selection,
    TraceStep,
    nothing_kept_reason,
)
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
    "CopyCount",
    "CrossFitEvaluator",
    "Evaluator",
    "GainDecision",
    "GainEstimate",
    "GainEvaluator",
    "LossEvaluator",
    "Partition",
    "PartitionChoice",
    "PartitionPower",
    "PartitionTest",
    "Selection",
    "TraceStep",
    "confirm_selection",
    "diversity",
    "drop_copies",
    "find_copies",
    "gain_evaluator",
    "infer_domains",
    "nothing_kept_reason",
    "paired_z",
    "rule_overlap",
    "screen_threshold",
    "search_evaluators",
    "select",
    "select_by_gain",
]
