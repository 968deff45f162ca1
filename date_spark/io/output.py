"""The output table: selected synthetic rows in the input's exact schema plus provenance, written so
that a failed run changes nothing and a rerun of a date replaces that date only.

Provenance columns: `_date_synthetic` (false for input rows in `augmented` mode), `_date_arm`,
`_date_rule` (the arm's rule text; every synthetic row satisfies it), `_date_round`,
`_date_run_id`, `_date_generator`, and the partition column `run_date`.

Commit protocol: the run's rows are first written to a staging directory under the run
(`<run>/output_staging`), read back and checked; only then are they written to the destination
with dynamic partition overwrite, so the destination's `run_date=<date>` partition is replaced and
every other date stays as it was. Spark's commit protocol moves partitions into place only when
the whole job succeeded: a failure during the final write leaves the previous output intact.
Input columns excluded from the run are null in synthetic rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import shutil
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from date_spark.columns import ARM, GENERATOR, ROUND, RULE, RUN_ID, SYNTHETIC, named_col
from date_spark.config import OutputConfig
from date_spark.errors import OutputError

__all__ = [
    "PROVENANCE",
    "PROVENANCE_COLS",
    "RUN_DATE_COL",
    "check_input_columns",
    "fit_decimals",
    "input_frame",
    "output_schema",
    "synthetic_frame",
    "write",
]


log = logging.getLogger(__name__)

RUN_DATE_COL = "run_date"
PROVENANCE = T.StructType(
    [
        T.StructField(SYNTHETIC, T.BooleanType(), False),
        T.StructField(ARM, T.StringType()),
        T.StructField(RULE, T.StringType()),
        T.StructField(ROUND, T.IntegerType()),
        T.StructField(RUN_ID, T.StringType()),
        T.StructField(GENERATOR, T.StringType()),
    ]
)
PROVENANCE_COLS = [f.name for f in PROVENANCE.fields]


def _decimal_text(v: Any, scale: int, precision: int) -> str | None:
    """`v` as the exact text of a decimal(precision, scale), rounded half up to the scale; None
    for a missing value; ValueError when it does not fit the precision."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA:
        if isinstance(v, float) and math.isinf(v):
            raise ValueError("infinite")
        return None
    d = Decimal(str(v)).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    if d.adjusted() + 1 > precision - scale and d != 0:
        raise ValueError("too many digits")
    return format(d, "f")


def fit_decimals(
    rows: pd.DataFrame, input_schema: T.StructType
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Decimal columns as exact text in their type's scale; rows whose value does not fit the
    column's precision are rejected, counted per column (a generated `123456789.5` cannot be a
    `decimal(10,2)`)."""
    out = rows.copy()
    keep = pd.Series(True, index=out.index)
    rejected: dict[str, int] = {}
    for f in input_schema.fields:
        if not isinstance(f.dataType, T.DecimalType) or f.name not in out.columns:
            continue
        p, sc = f.dataType.precision, f.dataType.scale
        texts: list[str | None] = []
        bad = []
        for v in out[f.name].tolist():
            try:
                texts.append(_decimal_text(v, sc, p))
                bad.append(False)
            except (ValueError, ArithmeticError):
                texts.append(None)
                bad.append(True)
        out[f.name] = pd.Series(texts, index=out.index, dtype=object)
        failed = pd.Series(bad, index=out.index)
        if failed.any():
            rejected[f.name] = int((failed & keep).sum())
            keep &= ~failed
    if rejected:
        log.warning(
            "output: %d generated row(s) rejected: a value does not fit its decimal column's "
            "precision (%s)",
            int((~keep).sum()),
            ", ".join(f"{k}: {v}" for k, v in rejected.items()),
        )
    return out[keep].reset_index(drop=True), rejected


def synthetic_frame(
    spark: SparkSession,
    rows: pd.DataFrame,
    input_schema: T.StructType,
    *,
    run_id: str,
    run_date: dt.date,
) -> DataFrame:
    """Selected rows (pandas, small) as a Spark frame with the input's columns, types and order,
    then the provenance columns and `run_date`. Decimal values are rounded to their column's
    scale; a row with a value past its precision is rejected (`fit_decimals`)."""
    rows, _ = fit_decimals(rows, input_schema)
    arrow_safe = rows.copy()
    cols: list[Column] = []
    staged_fields = []
    for f in input_schema.fields:
        if f.name in arrow_safe.columns:
            staged_fields.append(
                T.StructField(f.name, T.StringType() if _needs_text(f) else f.dataType)
            )
        else:
            arrow_safe[f.name] = None
            staged_fields.append(T.StructField(f.name, f.dataType))
        cols.append(named_col(f.name).cast(f.dataType).alias(f.name))
    for name in (ARM, RULE, GENERATOR):
        arrow_safe[name] = arrow_safe[name].astype(object) if name in arrow_safe else None
    arrow_safe[ROUND] = (
        pd.to_numeric(arrow_safe[ROUND]).astype("Int32") if ROUND in arrow_safe else None
    )
    staged_fields += [
        PROVENANCE[ARM],
        PROVENANCE[RULE],
        PROVENANCE[ROUND],
        PROVENANCE[GENERATOR],
    ]
    names = [f.name for f in staged_fields]
    for f in input_schema.fields:
        if _needs_text(f) and f.name in rows.columns:
            arrow_safe[f.name] = arrow_safe[f.name].map(lambda v: None if pd.isna(v) else str(v))
    if len(arrow_safe):
        staged = spark.createDataFrame(arrow_safe[names], schema=T.StructType(staged_fields))
    else:
        # pandas without rows skips Arrow and becomes a Python RDD, whose first read starts
        # Python workers (1-2 s of a small job's output stage when nothing was kept); an empty
        # range with typed nulls is the same empty frame, built in the JVM
        staged = spark.range(0).select(
            *[F.lit(None).cast(f.dataType).alias(f.name) for f in staged_fields]
        )
    return staged.select(
        *cols,
        F.lit(True).alias(SYNTHETIC),
        F.col(ARM),
        F.col(RULE),
        F.col(ROUND),
        F.lit(run_id).alias(RUN_ID),
        F.col(GENERATOR),
        F.lit(run_date).alias(RUN_DATE_COL),
    )


def _needs_text(f: T.StructField) -> bool:
    # Decimal and small integer types do not round-trip through pandas reliably: go through text
    # and let Spark cast exactly.
    return isinstance(f.dataType, (T.DecimalType, T.ByteType, T.ShortType))


def input_frame(df: DataFrame, *, run_id: str, run_date: dt.date) -> DataFrame:
    """Input rows for `augmented` mode, untouched, with `_date_synthetic = false`."""
    return df.select(
        *[named_col(c) for c in df.columns],
        F.lit(False).alias(SYNTHETIC),
        F.lit(None).cast("string").alias(ARM),
        F.lit(None).cast("string").alias(RULE),
        F.lit(None).cast("int").alias(ROUND),
        F.lit(run_id).alias(RUN_ID),
        F.lit(None).cast("string").alias(GENERATOR),
        F.lit(run_date).alias(RUN_DATE_COL),
    )


def output_schema(input_schema: T.StructType) -> list[str]:
    return [f.name for f in input_schema.fields] + PROVENANCE_COLS + [RUN_DATE_COL]


def check_input_columns(input_schema: T.StructType) -> None:
    if any(f.name.lower() == RUN_DATE_COL for f in input_schema.fields):
        raise OutputError(
            f"the input has a column named {RUN_DATE_COL!r}, the output's partition column; "
            f"rename it or drop it with input.exclude"
        )


def _table_exists(spark: SparkSession, table: str) -> bool:
    try:
        return bool(spark.catalog.tableExists(table))
    except AnalysisException:
        return False


def _clear_date(spark: SparkSession, cfg: OutputConfig) -> str:
    part = f"{RUN_DATE_COL}={cfg.run_date.isoformat()}"
    if cfg.table:
        if not _table_exists(spark, cfg.table):
            return "nothing to clear"
        spark.sql(
            f"ALTER TABLE {cfg.table} DROP IF EXISTS PARTITION "
            f"({RUN_DATE_COL} = DATE'{cfg.run_date.isoformat()}')"
        )
        return f"partition {part} of {cfg.table} dropped"
    assert cfg.path is not None
    parsed = urlparse(cfg.path)
    if parsed.scheme not in ("", "file"):
        return (
            f"{part} under {cfg.path} left as it was (remote storage: remove it with your "
            f"storage tools if an earlier run wrote it)"
        )
    target = Path(parsed.path if parsed.scheme else cfg.path) / part
    if target.exists():
        shutil.rmtree(target)
        return f"{target} removed"
    return "nothing to clear"


def _write_empty(staged: DataFrame, cfg: OutputConfig) -> str:
    """An empty `run_date=<date>` partition (a schema-only Parquet file) at a path, or the table
    created empty when it does not exist yet."""
    part = f"{RUN_DATE_COL}={cfg.run_date.isoformat()}"
    if cfg.path:
        target = f"{cfg.path.rstrip('/')}/{part}"
        staged.drop(RUN_DATE_COL).write.mode("overwrite").parquet(target)
        return f"empty partition with the full schema written to {target}"
    assert cfg.table is not None
    spark = staged.sparkSession
    if _table_exists(spark, cfg.table):
        return f"table {cfg.table} keeps its schema, with no rows for {part}"
    staged.write.partitionBy(RUN_DATE_COL).format("parquet").saveAsTable(cfg.table)
    return f"table {cfg.table} created empty, with the full schema"


def write(
    out: DataFrame,
    cfg: OutputConfig,
    *,
    staging_dir: str | Path,
) -> dict[str, Any]:
    """Stage, verify, then commit `out` to `output.path` or `output.table`."""
    spark = out.sparkSession
    staging = str(staging_dir)
    out.write.mode("overwrite").parquet(staging)
    staged = spark.read.parquet(staging)
    expected = out.columns
    if staged.columns != expected:
        raise OutputError(f"staged output has columns {staged.columns}, expected {expected}")
    counts = staged.agg(
        F.count(F.lit(1)).alias("rows"), F.count(F.when(F.col(SYNTHETIC), 1)).alias("synthetic")
    ).first()  # one job for both counts
    assert counts is not None
    rows, synthetic = int(counts["rows"]), int(counts["synthetic"])
    if rows == 0:
        # Dynamic overwrite of zero rows replaces nothing: clear the date explicitly, so a rerun
        # that keeps no row does not leave the previous run's rows for that date; then write the
        # date's partition empty, with the full schema, so a consumer reading it finds a table.
        cleared = _clear_date(spark, cfg)
        where = _write_empty(staged, cfg)
        log.warning("output: no rows kept for run_date=%s; %s; %s", cfg.run_date, cleared, where)
        return {
            "location": cfg.path or cfg.table,
            "rows": 0,
            "synthetic_rows": 0,
            "note": f"{cleared}; {where}",
        }
    prior = spark.conf.get("spark.sql.sources.partitionOverwriteMode", "static") or "static"
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    try:
        if cfg.path:
            staged.write.mode("overwrite").partitionBy(RUN_DATE_COL).parquet(cfg.path)
            where = cfg.path
        else:
            assert cfg.table is not None
            if _table_exists(spark, cfg.table):
                existing = spark.table(cfg.table).columns
                if existing != expected:
                    raise OutputError(
                        f"output.table {cfg.table!r} has columns {existing}; this run writes "
                        f"{expected}; write to a new table or migrate it"
                    )
                staged.write.insertInto(cfg.table, overwrite=True)
            else:
                staged.write.partitionBy(RUN_DATE_COL).format("parquet").saveAsTable(cfg.table)
            where = cfg.table
    finally:
        spark.conf.set("spark.sql.sources.partitionOverwriteMode", prior)
    log.info("output: %d rows (%d synthetic) committed to %s", rows, synthetic, where)
    return {"location": where, "rows": rows, "synthetic_rows": synthetic}
