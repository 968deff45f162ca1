"""Input contract: read the table, check it, detect the task, profile it.

Every check that can be made from the schema alone runs before Spark reads a row, so a wrong
column name fails in seconds. Profiling costs three small aggregation jobs (counts and ranges;
category domains; class counts), never a collect of the table.

Task detection (`input.task: auto`): a string or boolean target is classification; a numeric target
is classification when every value is a whole number and it has at most 20 distinct values,
otherwise regression. Set `input.task` to override.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from date_spark.config import Config, InputConfig, OutputConfig
from date_spark.errors import ConfigError, InputError, OutputError
from date_spark.schema import ColumnSpec, Kind, TableSchema, column_specs

log = logging.getLogger(__name__)

AUTO_CLASSIFICATION_MAX_DISTINCT = 20
DOMAIN_MAX_VALUES = 50


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def read_input(spark: SparkSession, cfg: InputConfig) -> DataFrame:
    """The raw input table; a missing path or table is an InputError naming it."""
    if not cfg.path and not cfg.table:
        raise ConfigError("no input: set input.path (with input.format) or input.table")
    try:
        if cfg.table:
            return spark.table(cfg.table)
        assert cfg.path is not None
        reader = spark.read.format(cfg.format)
        if cfg.format == "csv":
            reader = reader.options(**cfg.csv_options)
        return reader.load(cfg.path)
    except AnalysisException as err:
        text = str(err)
        if cfg.table:
            raise InputError(
                f"input table {cfg.table!r} was not found; check input.table "
                f"(catalog.schema.table) and that this session can see it"
            ) from None
        if "PATH_NOT_FOUND" in text or "does not exist" in text.lower():
            raise InputError(f"input path {cfg.path!r} does not exist; check input.path") from None
        if "COLUMN_ALREADY_EXISTS" in text or "duplicate column" in text.lower():
            m = re.search(r"column `([^`]+)`", text)
            name = f" {m.group(1)!r}" if m else ""
            raise InputError(
                f"duplicate column name{name} in {cfg.path!r} (names are case-insensitive); "
                f"rename one of them before running"
            ) from None
        if "UNABLE_TO_INFER_SCHEMA" in text:
            raise InputError(
                f"input path {cfg.path!r} holds no readable {cfg.format} files; "
                f"check input.path and input.format"
            ) from None
        raise InputError(
            f"cannot read input {cfg.path!r} as {cfg.format}: {text.splitlines()[0]}"
        ) from None


def select_columns(df: DataFrame, cfg: InputConfig) -> DataFrame:
    """Apply the include/exclude lists and check names, without reading data (the checks live in
    `preflight.check_names`, which the command line also runs on a file's header before Spark)."""
    from date_spark.preflight import check_names

    return df.select(*[_q(c) for c in check_names(df.columns, cfg)])


def normalize(df: DataFrame) -> DataFrame:
    """NaN becomes null in float columns, so every engine sees one notion of missing."""
    out = []
    for f in df.schema.fields:
        if isinstance(f.dataType, (T.FloatType, T.DoubleType)):
            c = F.col(_q(f.name))
            out.append(F.when(F.isnan(c), F.lit(None)).otherwise(c).alias(f.name))
        else:
            out.append(F.col(_q(f.name)))
    return df.select(*out)


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    kind: str
    spark_type: str
    nulls: int
    null_rate: float
    distinct_approx: int
    min: Any = None
    max: Any = None
    domain: list[Any] | None = None  # categorical/boolean values when few enough


@dataclass(frozen=True)
class Profile:
    rows: int
    task: str
    target: str
    columns: list[ColumnProfile]
    target_nulls: int
    classes: dict[str, int] = field(default_factory=dict)
    target_mean: float | None = None
    target_std: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def domain(self, column: str) -> list[Any] | None:
        for c in self.columns:
            if c.name == column:
                return c.domain
        raise KeyError(column)

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for c in self.columns:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        kind_text = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
        if self.task == "classification":
            bal = ", ".join(f"{k}: {v}" for k, v in sorted(self.classes.items()))
            tgt = f"classes {{{bal}}}"
        else:
            tgt = f"mean {self.target_mean:.4g}, std {self.target_std:.4g}"
        worst = max(self.columns, key=lambda c: c.null_rate)
        return (
            f"{self.rows} rows, {len(self.columns)} columns ({kind_text}); target {self.target!r} "
            f"({self.task}): {tgt}; highest null rate {worst.name!r} {worst.null_rate:.1%}"
        )


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def prepare(spark: SparkSession, cfg: Config) -> tuple[DataFrame, TableSchema, Profile]:
    """Read, check and profile the input. Returns the table restricted to the chosen columns
    (rows with a null target removed), its schema and its profile."""
    raw = read_input(spark, cfg.input)
    df = normalize(select_columns(raw, cfg.input))
    specs = column_specs(df.schema)
    return validate_and_profile(df, specs, cfg.input)


def validate_and_profile(
    df: DataFrame, specs: tuple[ColumnSpec, ...], cfg: InputConfig
) -> tuple[DataFrame, TableSchema, Profile]:
    target = cfg.target
    assert target is not None
    tspec = next(s for s in specs if s.name == target)
    y = F.col(_q(target))
    aggs = [F.count(F.lit(1)).alias("__rows"), F.count(y).alias("__target_present")]
    for s in specs:
        c = F.col(_q(s.name))
        aggs.append(F.count(c).alias(f"n::{s.name}"))
        aggs.append(F.approx_count_distinct(c).alias(f"d::{s.name}"))
        if s.kind in (Kind.NUMERIC, Kind.DATE, Kind.TIMESTAMP):
            aggs.append(F.min(c).alias(f"min::{s.name}"))
            aggs.append(F.max(c).alias(f"max::{s.name}"))
    if tspec.kind is Kind.NUMERIC:
        yd = y.cast("double")
        aggs += [
            F.count(F.when(yd != F.floor(yd), 1)).alias("__fractional"),
            F.mean(yd).alias("__mean"),
            F.stddev_pop(yd).alias("__std"),
        ]
    stats = df.agg(*aggs).first()
    assert stats is not None
    rows = int(stats["__rows"])
    if rows == 0:
        raise InputError("the input table has no rows; point input.path/input.table at data")
    present = int(stats["__target_present"])
    if present == 0:
        raise InputError(f"target column {target!r} is null in every row; choose another target")
    if present < cfg.min_rows:
        raise InputError(
            f"the input has {present} rows with a target; date-spark needs at least "
            f"{cfg.min_rows} to split train/validation/test (input.min_rows)"
        )

    task = cfg.task
    if task == "auto":
        if tspec.kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
            task = "classification"
        elif tspec.kind is Kind.NUMERIC:
            few = int(stats[f"d::{target}"]) <= AUTO_CLASSIFICATION_MAX_DISTINCT
            task = "classification" if few and int(stats["__fractional"]) == 0 else "regression"
        else:
            raise InputError(
                f"target {target!r} is a {tspec.kind.value}; use a numeric, boolean or "
                f"categorical target"
            )
    if task == "regression" and tspec.kind is not Kind.NUMERIC:
        raise InputError(
            f"input.task is regression but target {target!r} is {tspec.kind.value}; "
            f"set input.task: classification"
        )

    # Second job: value domains of low-cardinality columns (prompts and validation need them).
    small = [
        s
        for s in specs
        if s.kind in (Kind.CATEGORICAL, Kind.BOOLEAN)
        and int(stats[f"d::{s.name}"]) <= DOMAIN_MAX_VALUES
    ]
    domains: dict[str, list[Any]] = {}
    if small:
        drow = df.agg(*[F.collect_set(F.col(_q(s.name))).alias(s.name) for s in small]).first()
        assert drow is not None
        for s in small:
            domains[s.name] = sorted(drow[s.name], key=lambda v: (str(type(v)), v))

    classes: dict[str, int] = {}
    mean = std = None
    if task == "classification":
        if int(stats[f"d::{target}"]) > cfg.max_classes * 2:
            raise InputError(
                f"target {target!r} has about {int(stats[f'd::{target}'])} distinct values, too "
                f"many classes (input.max_classes={cfg.max_classes}); set input.task: regression"
            )
        counts = df.where(y.isNotNull()).groupBy(y.alias("v")).count().collect()
        typed_classes = sorted((r["v"] for r in counts), key=lambda v: (str(type(v)), v))
        classes = {str(r["v"]): int(r["count"]) for r in counts}
        if len(classes) < 2:
            only = next(iter(classes), "?")
            raise InputError(
                f"target {target!r} has a single class ({only!r}); a classifier needs at least "
                f"two, so pick another target or add rows of the other classes"
            )
        if len(classes) > cfg.max_classes:
            raise InputError(
                f"target {target!r} has {len(classes)} classes (input.max_classes="
                f"{cfg.max_classes}); set input.task: regression or raise input.max_classes"
            )
    else:
        mean, std = float(stats["__mean"]), float(stats["__std"] or 0.0)
        if std == 0.0:
            raise InputError(f"target {target!r} is constant ({mean:g}); there is nothing to model")

    profiles = []
    for s in specs:
        nonnull = int(stats[f"n::{s.name}"])
        has_range = s.kind in (Kind.NUMERIC, Kind.DATE, Kind.TIMESTAMP)
        profiles.append(
            ColumnProfile(
                name=s.name,
                kind=s.kind.value,
                spark_type=s.spark_type,
                nulls=rows - nonnull,
                null_rate=(rows - nonnull) / rows,
                distinct_approx=int(stats[f"d::{s.name}"]),
                min=_jsonable(stats[f"min::{s.name}"]) if has_range else None,
                max=_jsonable(stats[f"max::{s.name}"]) if has_range else None,
                domain=[_jsonable(v) for v in domains[s.name]] if s.name in domains else None,
            )
        )
    class_values: tuple[Any, ...] = ()
    if task == "classification":
        class_values = tuple(typed_classes)
    schema = TableSchema(specs, target, task, class_values)
    profile = Profile(
        rows=rows,
        task=task,
        target=target,
        columns=profiles,
        target_nulls=rows - present,
        classes=classes,
        target_mean=mean,
        target_std=std,
    )
    if rows - present:
        log.warning("dropping %d rows whose target %r is null", rows - present, target)
        df = df.where(y.isNotNull())
    return df, schema, profile


# ----------------------------------------------------------------------------------------------
# Output location safety
# ----------------------------------------------------------------------------------------------


def _norm_location(path: str) -> str:
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        local = parsed.path if parsed.scheme == "file" else path
        return "file://" + os.path.realpath(os.path.abspath(local)).rstrip("/")
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}".lower()


def check_output(input_cfg: InputConfig, output_cfg: OutputConfig) -> None:
    """Refuse an output that would overwrite or sit inside the input (and the reverse)."""
    if not output_cfg.path and not output_cfg.table:
        raise ConfigError("no output: set output.path or output.table")
    same_table = (
        input_cfg.table
        and output_cfg.table
        and input_cfg.table.strip("`").lower() == output_cfg.table.strip("`").lower()
    )
    if same_table:
        raise OutputError(
            f"output.table {output_cfg.table!r} is the input table; write to another table"
        )
    if input_cfg.path and output_cfg.path:
        a, b = _norm_location(input_cfg.path), _norm_location(output_cfg.path)
        if a == b or b.startswith(a + "/") or a.startswith(b + "/"):
            raise OutputError(
                f"output.path {output_cfg.path!r} overlaps the input {input_cfg.path!r}; "
                f"choose a separate output location so the input is never touched"
            )
