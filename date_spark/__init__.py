"""date-spark: diversity-aware synthetic rows for heterogeneous tables (DATE) on Apache Spark.

The public surface: `DateSynthesizer` (the facade: `fit`, `select`, `sample`, `run`), `Config`
and `load_config` (YAML + environment overrides). They load on first use, so importing a small
module of the package (the preflight, the column names) does not start pyspark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from date_spark.version import __version__

__all__ = ["Config", "DateSynthesizer", "__version__", "load_config"]

if TYPE_CHECKING:
    from date_spark.config import Config, load_config
    from date_spark.synthesizer import DateSynthesizer


def __getattr__(name: str) -> Any:
    if name in ("Config", "load_config"):
        from date_spark import config

        return getattr(config, name)
    if name == "DateSynthesizer":
        from date_spark.synthesizer import DateSynthesizer

        return DateSynthesizer
    raise AttributeError(f"module 'date_spark' has no attribute {name!r}")
