"""Test doubles that need real data behind them, for tests and benchmarks of what DATE keeps.

- `date_spark.testing.oracle`: an OpenAI-compatible endpoint that answers row requests with real
  rows of a held-out pool of the same table (the best rows an LLM could write), or, with
  `noise=True`, the same rows with the target permuted (rows that look real and hurt a model).
- `date_spark.testing.pools`: `split_pool` (train / pool / test rows for such a run) and
  `read_table` (a CSV or Parquet file as pandas).

Nothing is imported here, so `python -m date_spark.testing.oracle` runs without a warning.
"""

from __future__ import annotations

__all__: list[str] = []
