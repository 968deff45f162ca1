"""How exact an evaluation is and how much of each table it may sample."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluationSettings:
    """Accuracy and sample caps; the defaults keep a 10M-row evaluation to a few passes."""

    ks_grid_levels: int = 1001
    quantile_accuracy: int = 10_000
    plot_bins: int = 30
    plot_top_categories: int = 20
    contingency_bins: int = 10
    pair_sample_rows: int = 100_000
    pair_sample_cells: int = 20_000_000  # rows x pairs exploded per side, at most
    max_pairs: int = 2_000  # column pairs scored for pair trends (a seeded sample beyond)
    dcr_reference_rows: int = 20_000
    dcr_query_rows: int = 1_000
    max_rules: int = 1_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ks_grid_levels < 2 or self.plot_bins < 1 or self.contingency_bins < 1:
            raise ValueError("ks_grid_levels >= 2, plot_bins >= 1 and contingency_bins >= 1")
        if min(self.pair_sample_rows, self.dcr_reference_rows, self.dcr_query_rows) < 1:
            raise ValueError("sample caps must be positive")
        if self.max_pairs < 1:
            raise ValueError("sample caps must be positive")


__all__ = ["EvaluationSettings"]
