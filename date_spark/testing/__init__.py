"""Test doubles for tests and benchmarks: endpoints that stand in for an LLM, and real data behind
them for measuring what DATE keeps.

- `date_spark.testing.oracle`: an OpenAI-compatible endpoint that answers row requests with real
  rows of a held-out pool of the same table (the best rows an LLM could write), or, with
  `noise=True`, the same rows with the target permuted (rows that look real and hurt a model).
- `date_spark.testing.stub`: the loopback OpenAI-compatible endpoint with injectable faults (rate
  limits, timeouts, malformed replies, rule violations) and rows drawn inside each request's rule;
- `date_spark.testing.planted`: tables with known structure (planted regimes, a thin segment), in
  pandas and Spark, for tests that must recover them and for the large benchmarks;
- `date_spark.testing.pools`: `split_pool` (train / pool / test rows for such a run) and
  `read_table` (a CSV or Parquet file as pandas).

Nothing is imported here, so `python -m date_spark.testing.oracle` (or `.stub`) runs without a
warning.
"""

from __future__ import annotations

__all__: list[str] = []
