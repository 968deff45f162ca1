"""Column names the job reserves, and the one way to name a column in a Spark expression.

Every column the job adds to a frame or writes to the output starts with `RESERVED_PREFIX`, so an
input column can never collide with one (the preflight refuses input names with that prefix).
The output's provenance columns are named here once and imported everywhere else. No pyspark
import at module level: the preflight reads `RESERVED_PREFIX` before Spark starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame

__all__ = [
    "ARM",
    "GENERATOR",
    "PARENTS",
    "PROVENANCE_NAMES",
    "RESERVED_PREFIX",
    "ROUND",
    "RULE",
    "RUN_ID",
    "SYNTHETIC",
    "named_col",
    "pandas_safe",
    "quoted",
    "restore_names",
]

RESERVED_PREFIX = "_date_"

# The output's provenance columns, in the order they are written after the input's columns.
SYNTHETIC = "_date_synthetic"  # true for a generated row, false for an input row (mode "union")
ARM = "_date_arm"  # the arm a kept row came from (a DGR, a tree path, a round)
RULE = "_date_rule"  # the rule text the row was generated for
ROUND = "_date_round"  # the generation round
RUN_ID = "_date_run_id"
GENERATOR = "_date_generator"  # "llm:<model>" or "interpolation"
PROVENANCE_NAMES = (SYNTHETIC, ARM, RULE, ROUND, RUN_ID, GENERATOR)
# Within a run, never written: the real rows a generated row was derived from, when the generator
# knows them ("12.57": row labels of the partition sample), so selection never lets the row train
# a fold that scores its parents.
PARENTS = "_date_parents"


def quoted(name: str) -> str:
    """`name` as a Spark SQL identifier: any column name (dots, spaces, backticks) stays one
    column instead of a struct path or a parse error."""
    return "`" + name.replace("`", "``") + "`"


def named_col(name: str) -> Column:
    """The column `name`, whatever characters it holds. (pyspark is imported here, not above:
    the preflight imports this module before Spark starts.)"""
    from pyspark.sql import functions as F

    return F.col(quoted(name))


def _unsafe(name: str) -> bool:
    return "." in name or "`" in name


def pandas_safe(df: DataFrame) -> tuple[DataFrame, dict[str, str]]:
    """`df` ready for a pandas UDF (`applyInPandas`, `mapInPandas`, `cogroup`), and the map from
    the aliases it used back to the real names. pyspark hands a pandas UDF its input columns by
    resolving each name as an expression (`df[name]`), so a name holding a dot (`crl.tot`, a
    struct path to it) or a backtick (a parse error) fails there; those columns travel under a
    reserved alias instead, and the UDF gets its frame back with the real names
    (`restore_names`). Other names, and frames without such names, are left as they are."""
    back: dict[str, str] = {}
    cols = []
    for i, name in enumerate(df.columns):
        if _unsafe(name):
            alias = f"{RESERVED_PREFIX}col{i}"
            back[alias] = name
            cols.append(named_col(name).alias(alias))
        else:
            cols.append(named_col(name))
    return (df.select(*cols) if back else df), back


def restore_names(pdf: pd.DataFrame, back: dict[str, str]) -> pd.DataFrame:
    """Inside the UDF: the frame with its real column names (`pandas_safe`)."""
    return pdf.rename(columns=back) if back else pdf
