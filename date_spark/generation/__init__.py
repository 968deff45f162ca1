"""Stage 2 (the paper's Algorithm 2): DGR-guided generation with decision-tree path reasoning and
rule refinement.

- `generator.py`: the rounds (`Generator`, `generate`), with the algorithm's description;
- `scoring.py`: the tree-path grouping, the label check and each group's gain (pure pandas, in
  the scoring UDF), and the learning-curve benefit that decides where to generate;
- `refinement.py`: the reflective prompts and the checks a proposed rule must pass (step 4);
- `reroute.py`: rows outside the rule they were asked for, moved to the partition they satisfy;
- `sampling.py`: the partition sample, example rows, domains and questions;
- `prompts.py`: the row and refinement prompts within their token budget, and the masking of
  sensitive values in them;
- `interpolation.py`: the generator without an LLM;
- `result.py`: round statistics, the rows, the arms table, save/load;
- `fields.py`: the internal columns the stage's frames carry.
"""

from __future__ import annotations

from date_spark.generation.fields import (
    CANDIDATE_COL,
    DGR_COL,
    REQUEST_COL,
    REST,
    DiscoveryLike,
)
from date_spark.generation.generator import Generator, generate
from date_spark.generation.interpolation import interpolate, request_parents
from date_spark.generation.result import (
    Candidate,
    GenerationResult,
    RoundStats,
    arms_table,
    reject_table,
)
from date_spark.generation.sampling import partition_sample, prompt_budget
from date_spark.generation.scoring import (
    ScoringSpec,
    allocate_requests,
    partition_benefit,
    score_groups,
)

__all__ = [
    "CANDIDATE_COL",
    "DGR_COL",
    "REQUEST_COL",
    "REST",
    "Candidate",
    "DiscoveryLike",
    "GenerationResult",
    "Generator",
    "RoundStats",
    "ScoringSpec",
    "allocate_requests",
    "arms_table",
    "generate",
    "interpolate",
    "partition_benefit",
    "partition_sample",
    "prompt_budget",
    "reject_table",
    "request_parents",
    "score_groups",
]
