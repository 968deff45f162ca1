"""SparkSession handling. The library never builds a session behind a user's back on a cluster:
`session()` reuses the active one (Databricks, spark-submit, Spark Connect) and only builds a local
session when none exists."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from date_spark import logs
from date_spark.config import SparkConfig

__all__ = ["LOCAL_DEFAULTS", "STAGE_SQL_CONF", "session", "sql_conf", "task_slots", "to_pandas"]


log = logging.getLogger(__name__)

# Defaults for sessions this package builds itself. Large CASE/WHEN expressions over many rules are
# only JIT-compiled with -XX:-DontCompileHugeMethods (measured 100 s -> 7 s at 10M rows x 50 rules).
LOCAL_DEFAULTS: Mapping[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "20000",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.ui.showConsoleProgress": "false",
    # The web UI costs its start and a listener on every job; a local job is short and its stages
    # log their own progress. `spark.conf: {spark.ui.enabled: "true"}` brings it back.
    "spark.ui.enabled": "false",
    "spark.driver.extraJavaOptions": "-XX:-DontCompileHugeMethods",
    "spark.executor.extraJavaOptions": "-XX:-DontCompileHugeMethods",
}


def _prepare_local_python() -> None:
    # Python workers must run the driver's interpreter, or they miss pandas/pyarrow.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


# Catalyst's constraint propagation grows with every aliased column under a filter: the job's
# plans hash and filter on all of a table's columns, and at 300 columns the planner alone ran a
# 1 GB driver out of memory before a row was read (`benchmarks/wide_tables.py`; discovery at 300
# columns finished once it was off). Set for each stage, the session's own value put back after.
STAGE_SQL_CONF: Mapping[str, str] = {"spark.sql.constraintPropagation.enabled": "false"}


@contextlib.contextmanager
def sql_conf(spark: SparkSession, values: Mapping[str, str] = STAGE_SQL_CONF) -> Iterator[None]:
    """Runtime SQL settings for a block (classic and Spark Connect), then the previous values.
    A setting the session refuses (a static conf, or one a managed cluster does not expose) is
    skipped with one log line: the block runs under the session's own value."""
    before: dict[str, str | None] = {}
    for k, v in values.items():
        old = spark.conf.get(k, None)
        try:
            spark.conf.set(k, v)
        except Exception as exc:  # AnalysisException classic, SparkConnectException on Connect
            log.info("left %s as the session has it (%s)", k, str(exc).splitlines()[0][:160])
            continue
        before[k] = old
    try:
        yield
    finally:
        for k, prev in before.items():
            if prev is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, prev)


def _conf(spark: SparkSession, key: str) -> str | None:
    try:
        value = spark.conf.get(key, None)
    except Exception:  # a managed cluster or Spark Connect may not expose it
        return None
    return value or None


def _positive_int(text: str | None) -> int | None:
    try:
        n = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def task_slots(spark: SparkSession) -> int | None:
    """How many tasks the session runs at once, read from its configuration (no Spark job): the
    cores of a `local[N]` master, else executors x cores, else `spark.default.parallelism`; None
    when the session does not say (a cluster with dynamic allocation, some Spark Connect servers).
    Work split into more tasks than this runs in waves."""
    master = _conf(spark, "spark.master") or ""
    if master.startswith("local"):
        inner = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
        cores = inner.split(",")[0].strip()
        return (os.cpu_count() or 1) if cores == "*" else _positive_int(cores)
    executors = _positive_int(_conf(spark, "spark.executor.instances"))
    cores_each = _positive_int(_conf(spark, "spark.executor.cores"))
    if executors and cores_each:
        per_task = _positive_int(_conf(spark, "spark.task.cpus")) or 1
        return max(1, executors * cores_each // per_task)
    return _positive_int(_conf(spark, "spark.default.parallelism"))


def to_pandas(df: DataFrame) -> pd.DataFrame:
    """`df.toPandas()` without Spark Connect's plan metrics in `attrs`: they are not serialisable
    and would break every later `to_parquet` of the frame or of anything sliced from it."""
    pdf = df.toPandas()
    pdf.attrs.clear()
    return pdf


def session(cfg: SparkConfig | None = None) -> SparkSession:
    """The active session if there is one, else a new one built from `cfg`."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    cfg = cfg or SparkConfig()
    builder = SparkSession.builder.appName(cfg.app_name)
    if cfg.master:
        if cfg.master.startswith("local"):
            _prepare_local_python()
        builder = builder.master(cfg.master)
    conf = (
        {**LOCAL_DEFAULTS, **cfg.conf} if (cfg.master or "").startswith("local") else dict(cfg.conf)
    )
    for k, v in conf.items():
        builder = builder.config(k, v)
    # From the command line, the JVM's log4j output and warnings go to a file, not the terminal.
    with logs.spark_stderr():
        return builder.getOrCreate()
