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

from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from date_spark.columns import named_col, quoted
from date_spark.config import InputConfig
from date_spark.errors import ConfigError, InputError
from date_spark.schema import ColumnSpec, Kind, TableSchema

__all__ = [
    "AUTO_CLASSIFICATION_MAX_DISTINCT",
    "DECIMAL_META",
    "DOMAIN_MAX_VALUES",
    "ColumnProfile",
    "Profile",
    "decimal_limits",
    "free_text_columns",
    "near_duplicate_labels",
    "normalize",
    "read_failure",
    "read_input",
    "select_columns",
    "table_format",
    "validate_and_profile",
]

log = logging.getLogger(__name__)

AUTO_CLASSIFICATION_MAX_DISTINCT = 20
DOMAIN_MAX_VALUES = 50
_CSV_HEADER_OPTS = {"header", "inferschema", "enforceschema", "samplingratio"}
_INF = float("inf")


def read_input(spark: SparkSession, cfg: InputConfig, *, flag: str = "input.path") -> DataFrame:
    """The raw input table; a missing path or table is an InputError naming it. `flag` is what
    the messages tell the user to fix (`input.path` for the job, `--real` for `evaluate`)."""
    if not cfg.path and not cfg.table:
        raise ConfigError("no input: set input.path (with input.format) or input.table")
    try:
        if cfg.table:
            return spark.table(cfg.table)
        assert cfg.path is not None
        _check_local_files(cfg)
        reader = spark.read.format(cfg.format)
        if cfg.format == "csv":
            reader = reader.options(**cfg.csv_options)
        elif cfg.merge_schema:
            reader = reader.option("mergeSchema", "true")
        df = reader.load(cfg.path)
        if cfg.format == "csv":
            _check_csv_header(spark, cfg, df.columns)
        return df
    except AnalysisException as err:
        text = str(err)
        if cfg.table:
            raise InputError(
                f"input table {cfg.table!r} was not found; check input.table "
                f"(catalog.schema.table) and that this session can see it"
            ) from None
        if "PATH_NOT_FOUND" in text or "does not exist" in text.lower():
            raise InputError(f"input path {cfg.path!r} does not exist; check {flag}") from None
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
                f"check {flag} and its format"
            ) from None
        raise InputError(
            f"cannot read input {cfg.path!r} as {cfg.format}: {_first_line(text)}"
        ) from None
    except PySparkException as err:
        # e.g. a CSV file read as Parquet fails on its footer: a Spark error, not an analysis one
        raise InputError(
            f"cannot read {cfg.path or cfg.table!r} as {cfg.format}: {_first_line(str(err))}; "
            f"check {flag} and its format"
        ) from None
    except Exception as err:  # a Java error through py4j (a stale checksum file on a remote FS)
        failure = read_failure(err, cfg.path or cfg.table)
        if failure is None:
            raise
        raise failure from None


def _check_local_files(cfg: InputConfig) -> None:
    """The footer and dialect checks the command line runs before Spark (damaged or disagreeing
    Parquet files, nanosecond timestamps, quoted line breaks in a CSV), for a local path read
    through the library too."""
    from date_spark.io.preflight import (
        check_checksums,
        check_csv_rows,
        check_parquet_files,
        data_files,
        local_path,
    )

    assert cfg.path is not None
    p = local_path(cfg.path)
    if p is None or not p.exists() or not cfg.target:
        return
    if cfg.format == "parquet":
        check_parquet_files(p, cfg)  # the checksums too
        return
    files = data_files(p) if p.is_dir() else [p]
    check_checksums(files)
    if str(cfg.csv_options.get("header", "false")).lower() == "true":
        check_csv_rows(files, cfg)


_READ_FAILURES = (
    "Parquet column cannot be converted",
    "FAILED_READ_FILE",
    "PARQUET_TYPE_ILLEGAL",
    "is not a Parquet file",
    "CANNOT_READ_FILE_FOOTER",
)


def read_failure(err: BaseException, where: str | None) -> InputError | None:
    """A Spark job that failed reading the input's files (a damaged file, a column whose type
    differs between files, a file changed after its checksum was written) as one line naming
    the file; None for other failures."""
    text = str(err)
    stale = re.search(r"ChecksumException: Checksum error: (\S+)", text)
    if stale:
        return InputError(
            f"cannot read the input {where!r}: file {stale.group(1)!r} does not match its "
            f"hidden .crc checksum file (it was changed after it was written); delete that .crc "
            f"file, or rewrite the directory with one writer"
        )
    if not any(k in text for k in _READ_FAILURES):
        return None
    m = re.search(r"(?:file|path)[:= ]+`?((?:file:|s3a?:|abfss?:|gs:|hdfs:)?/[^\s`'\]]+)", text)
    f = f" (file {m.group(1)!r})" if m else ""
    col = re.search(r"[Cc]olumn: \[([^\]]+)\]", text)
    column = f", column {col.group(1)!r}" if col else ""
    return InputError(
        f"cannot read the input {where!r}{f}{column}: a damaged file, or files that disagree "
        f"on a column's type; remove or rewrite that file, or drop the column with input.exclude"
    )


def table_format(path: str) -> str:
    """`csv` or `parquet` from a path's extension; a local directory by the files in it (Spark
    writes `part-*.csv` or `part-*.parquet`); parquet when nothing tells."""
    name = path.rstrip("/").lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    parsed = urlparse(path)
    local = parsed.path if parsed.scheme == "file" else path
    if parsed.scheme in ("", "file") and os.path.isdir(local):
        for _root, _dirs, files in os.walk(local):
            for f in files:
                low = f.lower()
                if low.endswith((".csv", ".csv.gz")):
                    return "csv"
                if low.endswith(".parquet"):
                    return "parquet"
    return "parquet"


def _first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:300]


def _check_csv_header(spark: SparkSession, cfg: InputConfig, columns: list[str]) -> None:
    """Spark renames CSV header names that collide case-insensitively (`age`, `Age` become
    `age0`, `Age8`) instead of failing; read the header as data (one line, no inference) and
    refuse the duplicates like any other input's. Only a name ending in its own position can be
    such a rename, so other tables cost no extra read."""
    if not any(c.endswith(str(i)) for i, c in enumerate(columns)):
        return
    opts = {k: v for k, v in cfg.csv_options.items() if k.lower() not in _CSV_HEADER_OPTS}
    if str(cfg.csv_options.get("header", "false")).lower() != "true":
        return
    assert cfg.path is not None
    first = (
        spark.read.options(**opts)
        .option("header", "false")
        .option("inferSchema", "false")
        .csv(cfg.path)
        .limit(1)
        .collect()
    )
    if not first:
        return
    seen: dict[str, str] = {}
    for name in first[0]:
        if name is None:
            continue
        key = str(name).strip().lower()
        if key in seen:
            raise InputError(
                f"duplicate column name {str(name).strip()!r} (also {seen[key]!r}) in "
                f"{cfg.path!r} (names are case-insensitive); rename one of them before running"
            )
        seen[key] = str(name).strip()


def select_columns(df: DataFrame, cfg: InputConfig) -> DataFrame:
    """Apply the include/exclude lists and check names, without reading data (the checks live in
    `preflight.check_names`, which the command line also runs on a file's header before Spark)."""
    from date_spark.io.preflight import check_names

    return df.select(*[quoted(c) for c in check_names(df.columns, cfg)])


DECIMAL_META = "date_spark.decimal"


def decimal_limits(fields: list[T.StructField]) -> dict[str, tuple[int, int]]:
    """(precision, scale) of the columns `normalize` read from a decimal type, by name."""
    out = {}
    for f in fields:
        ps = (f.metadata or {}).get(DECIMAL_META)
        if ps:
            out[f.name] = (int(ps[0]), int(ps[1]))
    return out


def normalize(df: DataFrame, target: str | None = None) -> DataFrame:
    """NaN becomes null in float columns, so every engine sees one notion of missing; so does an
    infinite feature value (no model, range or prompt can use it). An infinite target is kept,
    so that `validate_and_profile` refuses it by name instead of learning from it.

    Decimal columns (`decimal(10,2)`, money in a warehouse) are read as doubles for the run:
    models, rules, prompts and validation work on numbers, and pandas' decimal objects never
    reach Arrow. The output writes them back in the input's exact decimal type, rounded to its
    scale (`output.synthetic_frame`); input rows in `augmented` mode are the raw ones,
    untouched. The double column keeps its decimal (precision, scale) in its metadata
    (`DECIMAL_META`), so generation rejects a value past the precision (`decimal_limits`)."""
    out = []
    for f in df.schema.fields:
        if isinstance(f.dataType, T.DecimalType):
            meta = {**f.metadata, DECIMAL_META: [f.dataType.precision, f.dataType.scale]}
            out.append(named_col(f.name).cast("double").alias(f.name, metadata=meta))
        elif isinstance(f.dataType, (T.FloatType, T.DoubleType)):
            c = named_col(f.name)
            missing = F.isnan(c) if f.name == target else F.isnan(c) | (F.abs(c) == F.lit(_INF))
            out.append(F.when(missing, F.lit(None)).otherwise(c).alias(f.name))
        else:
            out.append(named_col(f.name))
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
    max_length: int | None = None  # categorical: the longest value, in characters
    control_chars: int = 0  # categorical: values holding a line break or other control character


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
    empty_columns: list[str] = field(default_factory=list)  # null in every row: left out

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
        left_out = (
            f"; left out, null in every row: {', '.join(map(repr, self.empty_columns))}"
            if self.empty_columns
            else ""
        )
        return (
            f"{self.rows} rows, {len(self.columns)} columns ({kind_text}); target {self.target!r} "
            f"({self.task}): {tgt}; highest null rate {worst.name!r} {worst.null_rate:.1%}"
            f"{left_out}"
        )


def free_text_columns(profile: Profile, max_chars: int) -> list[str]:
    """Categorical columns with a value longer than `max_chars` or a line break: free text, not
    categories. Rules never use them (a 100 KB value would become a 100 KB rule and prompt)."""
    return [
        c.name
        for c in profile.columns
        if c.name != profile.target
        and c.kind == Kind.CATEGORICAL.value
        and ((c.max_length or 0) > max_chars or c.control_chars)
    ]


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def validate_and_profile(
    df: DataFrame, specs: tuple[ColumnSpec, ...], cfg: InputConfig
) -> tuple[DataFrame, TableSchema, Profile]:
    """Check the table and profile it: one aggregation for counts and ranges, one for category
    domains, one for class counts. Fails with an `InputError` naming the fix."""
    target = cfg.target
    assert target is not None
    tspec = next(s for s in specs if s.name == target)
    try:
        stats = df.agg(*_profile_aggs(specs, tspec)).first()
    except Exception as err:  # the first job that reads every file
        failure = read_failure(err, cfg.path or cfg.table)
        if failure is None:
            raise
        raise failure from None
    assert stats is not None
    rows, present = _check_target_values(stats, tspec, cfg.min_rows)
    df, specs, empty = _drop_empty_columns(df, specs, stats, target)
    task = _detect_task(stats, tspec, cfg.task)
    domains, classes, class_values, mean, std = _domains_and_target(
        df, specs, stats, tspec, task, cfg.max_classes
    )
    schema = TableSchema(specs, target, task, class_values)
    profile = Profile(
        rows=rows,
        task=task,
        target=target,
        columns=_column_profiles(specs, stats, rows, domains),
        target_nulls=rows - present,
        classes=classes,
        target_mean=mean,
        target_std=std,
        empty_columns=empty,
    )
    if rows - present:
        log.warning("dropping %d rows whose target %r is null", rows - present, target)
        df = df.where(named_col(target).isNotNull())
    return df, schema, profile


def _profile_aggs(specs: tuple[ColumnSpec, ...], tspec: ColumnSpec) -> list[Column]:
    """The first job's columns: per column counts, distinct counts, ranges and text lengths; for
    the target what its checks and task detection need."""
    y = named_col(tspec.name)
    aggs = [F.count(F.lit(1)).alias("__rows"), F.count(y).alias("__target_present")]
    for s in specs:
        c = named_col(s.name)
        aggs.append(F.count(c).alias(f"n::{s.name}"))
        aggs.append(F.approx_count_distinct(c).alias(f"d::{s.name}"))
        if s.kind in (Kind.NUMERIC, Kind.DATE, Kind.TIMESTAMP):
            aggs.append(F.min(c).alias(f"min::{s.name}"))
            aggs.append(F.max(c).alias(f"max::{s.name}"))
        if s.kind is Kind.CATEGORICAL:
            aggs.append(F.max(F.length(c)).alias(f"len::{s.name}"))
            aggs.append(F.count(F.when(c.rlike("[\\x00-\\x1f]"), 1)).alias(f"ctl::{s.name}"))
    if tspec.kind is Kind.NUMERIC:
        yd = y.cast("double")
        finite = F.when(F.abs(yd) < F.lit(_INF), yd)  # floor(inf) overflows under ANSI
        aggs += [
            F.count(F.when(F.abs(yd) == F.lit(_INF), 1)).alias("__inf"),
            F.count(F.when(finite != F.floor(finite), 1)).alias("__fractional"),
            F.mean(finite).alias("__mean"),
            F.stddev_pop(finite).alias("__std"),
        ]
    elif tspec.kind is Kind.CATEGORICAL:
        # numbers written as text (a CSV column holding `inf` or `nan` is inferred as a string)
        as_num = F.expr(f"try_cast({quoted(tspec.name)} AS double)")
        aggs += [
            F.count(as_num).alias("__numeric_text"),
            F.count(F.when(F.isnan(as_num) | (F.abs(as_num) == F.lit(_INF)), 1)).alias(
                "__nonfinite_text"
            ),
        ]
    return aggs


def _check_target_values(stats: Row, tspec: ColumnSpec, min_rows: int) -> tuple[int, int]:
    """(rows, rows with a target), after checking there are enough and the target is finite."""
    target = tspec.name
    rows = int(stats["__rows"])
    if rows == 0:
        raise InputError("the input table has no rows; point input.path/input.table at data")
    present = int(stats["__target_present"])
    if present == 0:
        raise InputError(f"target column {target!r} is null in every row; choose another target")
    if present < min_rows:
        raise InputError(
            f"the input has {present} rows with a target; date-spark needs at least "
            f"{min_rows} to split train/validation/test (input.min_rows)"
        )
    if tspec.kind is Kind.NUMERIC and int(stats["__inf"]):
        raise InputError(
            f"target column {target!r} has {int(stats['__inf'])} non-finite values (inf or -inf) "
            f"in {present} rows; a model cannot learn them: remove those rows or make the "
            f"target null there (rows with a null target are dropped)"
        )
    if (
        tspec.kind is Kind.CATEGORICAL
        and int(stats["__numeric_text"]) == present
        and int(stats["__nonfinite_text"])
    ):
        raise InputError(
            f"target column {target!r} has {int(stats['__nonfinite_text'])} non-finite values "
            f"(inf, -inf or nan) in {present} rows, so the numbers in it were read as text; "
            f"remove those rows or leave the target empty there (rows with a null target are "
            f"dropped)"
        )
    return rows, present


def _drop_empty_columns(
    df: DataFrame, specs: tuple[ColumnSpec, ...], stats: Row, target: str
) -> tuple[DataFrame, tuple[ColumnSpec, ...], list[str]]:
    """Leave out feature columns null in every row; fail when that is every feature."""
    empty = [s.name for s in specs if s.name != target and int(stats[f"n::{s.name}"]) == 0]
    if len(empty) == len(specs) - 1:
        raise InputError(
            f"every feature column is null in every row ({', '.join(map(repr, empty))}); "
            f"there is nothing to learn from: check the input"
        )
    if empty:
        # A column with no value carries nothing a rule, a model or a prompt can use, and no
        # generated value could be checked against its (empty) domain: it is left out of the
        # run and null in synthetic rows, as an excluded column is.
        log.warning(
            "column(s) %s hold no value in any row: left out of the run, null in synthetic rows "
            "(add them to input.exclude to silence this)",
            ", ".join(map(repr, empty)),
        )
        specs = tuple(s for s in specs if s.name not in empty)
        df = df.select(*[quoted(s.name) for s in specs])
    return df, specs, empty


def _detect_task(stats: Row, tspec: ColumnSpec, task: str) -> str:
    """`input.task`, or with "auto" the task the target's type and values imply (module doc)."""
    target = tspec.name
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
    return task


def _domains_and_target(
    df: DataFrame,
    specs: tuple[ColumnSpec, ...],
    stats: Row,
    tspec: ColumnSpec,
    task: str,
    max_classes: int,
) -> tuple[dict[str, list[Any]], dict[str, int], tuple[Any, ...], float | None, float | None]:
    """The second job: value domains of low-cardinality columns (prompts and validation need
    them) and, for a classification target, the rows per class, in one aggregation grouped by
    the target. Returns (domains, class counts, class values, mean, std)."""
    target = tspec.name
    small = [
        s
        for s in specs
        if s.kind in (Kind.CATEGORICAL, Kind.BOOLEAN)
        and int(stats[f"d::{s.name}"]) <= DOMAIN_MAX_VALUES
    ]
    sets = [F.collect_set(named_col(s.name)).alias(f"set::{s.name}") for s in small]
    groups: list[Row] = []
    if task == "classification":
        if int(stats[f"d::{target}"]) > max_classes * 2:
            raise InputError(
                f"target {target!r} has about {int(stats[f'd::{target}'])} distinct values, too "
                f"many classes (input.max_classes={max_classes}); set input.task: regression"
            )
        by_class = df.groupBy(named_col(target).alias("v"))
        groups = by_class.agg(F.count(F.lit(1)).alias("n"), *sets).collect()
    elif sets:
        row = df.agg(*sets).first()
        assert row is not None
        groups = [row]
    domains: dict[str, list[Any]] = {}
    for s in small:
        values = {v for g in groups for v in g[f"set::{s.name}"]}
        domains[s.name] = sorted(values, key=lambda v: (str(type(v)), v))
    if task != "classification":
        mean, std = float(stats["__mean"]), float(stats["__std"] or 0.0)
        if std == 0.0:
            raise InputError(f"target {target!r} is constant ({mean:g}); there is nothing to model")
        return domains, {}, (), mean, std
    counts = [g for g in groups if g["v"] is not None]
    typed_classes = sorted((r["v"] for r in counts), key=lambda v: (str(type(v)), v))
    classes = {str(r["v"]): int(r["n"]) for r in counts}
    _warn_near_duplicate_labels(target, classes)
    if len(classes) < 2:
        only = next(iter(classes), "?")
        raise InputError(
            f"target {target!r} has a single class ({only!r}); a classifier needs at least "
            f"two, so pick another target or add rows of the other classes"
        )
    if len(classes) > max_classes:
        raise InputError(
            f"target {target!r} has {len(classes)} classes (input.max_classes="
            f"{max_classes}); set input.task: regression or raise input.max_classes"
        )
    return domains, classes, tuple(typed_classes), None, None


def near_duplicate_labels(classes: dict[str, int]) -> list[list[str]]:
    """Class labels that differ only in case or surrounding spaces (`Yes`, `yes `, `YES`)."""
    groups: dict[str, list[str]] = {}
    for label in classes:
        groups.setdefault(" ".join(label.split()).casefold(), []).append(label)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def _warn_near_duplicate_labels(target: str, classes: dict[str, int]) -> None:
    for group in near_duplicate_labels(classes):
        shown = ", ".join(f"{g!r} ({classes[g]} rows)" for g in group)
        log.warning(
            "target %r has labels that differ only in case or spaces: %s; they are separate "
            "classes in this run: clean the labels (e.g. trim and lower-case them) if they mean "
            "the same",
            target,
            shown,
        )


def _column_profiles(
    specs: tuple[ColumnSpec, ...], stats: Row, rows: int, domains: dict[str, list[Any]]
) -> list[ColumnProfile]:
    profiles = []
    for s in specs:
        nonnull = int(stats[f"n::{s.name}"])
        has_range = s.kind in (Kind.NUMERIC, Kind.DATE, Kind.TIMESTAMP)
        categorical = s.kind is Kind.CATEGORICAL
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
                max_length=int(stats[f"len::{s.name}"] or 0) if categorical else None,
                control_chars=int(stats[f"ctl::{s.name}"]) if categorical else 0,
            )
        )
    return profiles
