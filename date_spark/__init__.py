"""date-spark: diversity-aware synthetic rows for heterogeneous tables (DATE) on Apache Spark."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
