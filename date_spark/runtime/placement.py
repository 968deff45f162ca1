"""Where work on a small frame runs: the driver or the cluster, chosen by size.

Several steps run pandas functions per group of rows that are already small by construction
(discovery's capped samples of a small table, generation's capped per-partition sample and its
generated rows). Through Spark each costs a job, a shuffle, Python worker starts and two Arrow
conversions, seconds of fixed cost for milliseconds of work; a table of a few hundred rows paid
most of its run time that way. When a frame holds at most `driver_max_cells()` cells (rows x
columns; default 100,000, e.g. 5,000 rows x 20 columns) the same function runs on the driver,
group by group, and its output passes through the same Arrow conversion to the declared schema
that Spark applies, so both paths return the same frame (`tests/test_placement.py` runs both on
the same inputs). Larger frames stay in Spark, where the groups run in parallel across the
cluster. The limit follows `benchmarks/job_cost.py` on 2 cores: at 300 and 5,000 rows the
driver path cut discovery's seconds; at 50,000 rows (a million cells) the driver, training one
group after the other, was slower than two executors in discovery and generation.

`DATE_SPARK_DRIVER_MAX_CELLS` sets the limit (0: always Spark); `driver_max_cells(n)` sets it for
a block (tests, benchmarks).

On the driver, the model fits of such a step (the cross-fits of generation's row groups and of
selection's candidates: tens to hundreds of small fits, each on one core) would leave the
driver's other cores idle while Spark waits. `parallel_map` spreads them over
`driver_workers()` processes (scikit-learn's joblib, loky backend; the processes are kept for
the next call). Each fit is seeded and runs on one thread, so the results are the same as one
after the other (`tests/test_placement.py`). `DATE_SPARK_DRIVER_WORKERS` sets the number (1: no
extra process); by default the cores the driver process may use, at most `MAX_DRIVER_WORKERS`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
from pyspark.sql import types as T

from date_spark.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "apply_cogrouped",
    "apply_grouped",
    "driver_max_cells",
    "driver_workers",
    "frame_cells",
    "on_driver",
    "parallel_map",
    "through_arrow",
    "warm_workers",
]

DEFAULT_DRIVER_MAX_CELLS = 100_000
MAX_DRIVER_WORKERS = 8
_ENV = "DATE_SPARK_DRIVER_MAX_CELLS"
_WORKERS_ENV = "DATE_SPARK_DRIVER_WORKERS"
_override: list[int] = []
T_in = TypeVar("T_in")
T_out = TypeVar("T_out")


def _limit() -> int:
    if _override:
        return _override[-1]
    raw = os.environ.get(_ENV, "").strip()
    return int(raw) if raw else DEFAULT_DRIVER_MAX_CELLS


@contextlib.contextmanager
def driver_max_cells(n: int) -> Iterator[None]:
    """Run a block with the driver limit at `n` cells (0: every step in Spark)."""
    _override.append(int(n))
    try:
        yield
    finally:
        _override.pop()


def driver_workers() -> int:
    """Processes the driver's model fits may use (module doc): `DATE_SPARK_DRIVER_WORKERS`, else
    the cores this process may run on, at most `MAX_DRIVER_WORKERS`."""
    raw = os.environ.get(_WORKERS_ENV, "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise ConfigError(
                f"{_WORKERS_ENV}={raw!r} is not a whole number; set it to 1 or more, or unset it"
            ) from None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DRIVER_WORKERS))


def parallel_map(fn: Callable[[T_in], T_out], items: Sequence[T_in], workers: int) -> list[T_out]:
    """``[fn(x) for x in items]``, in `workers` processes when that is more than one and there
    are several items. `fn` must pickle (a module-level function or a `functools.partial` of
    one); what it holds is sent once per process, the items are dealt round-robin."""
    items = list(items)
    n = min(workers, len(items))
    if n <= 1:
        return [fn(x) for x in items]
    _join_warming()
    return _run_parallel(fn, items, n)


def _run_parallel(fn: Callable[[T_in], T_out], items: list[T_in], n: int) -> list[T_out]:
    from sklearn.utils.parallel import Parallel, delayed

    chunks = [items[j::n] for j in range(n)]
    # max_nbytes=None: arrays are pickled, not memory-mapped through /dev/shm (64 MB in a default
    # container); each chunk goes to one process, so a mapping would save little
    run = Parallel(n_jobs=n, backend="loky", max_nbytes=None)
    done = run(delayed(_map_chunk)(fn, c) for c in chunks)
    out: list[Any] = [None] * len(items)
    for j, part in enumerate(done):
        out[j::n] = part
    return out


def _map_chunk(fn: Callable[[T_in], T_out], chunk: list[T_in]) -> list[T_out]:
    return [fn(x) for x in chunk]


_WARMING: list[threading.Thread] = []


def warm_workers() -> threading.Thread | None:
    """Start the driver's worker processes (`parallel_map`) in the background, while Spark starts
    and reads the input, so the first cross-fit does not wait for them: each imports numpy,
    pandas and scikit-learn before its first fit. They are kept for the job's later calls, as
    any `parallel_map` call keeps them. None when the driver fits in-process."""
    n = driver_workers()
    _WARMING[:] = [t for t in _WARMING if t.is_alive()]
    if n <= 1 or _WARMING:
        return None

    def work() -> None:
        try:
            _run_parallel(_import_models, list(range(n)), n)
        except Exception as exc:  # the first real call starts them, and reports a failure
            log.debug("starting the driver's worker processes ahead failed: %s", exc)

    thread = threading.Thread(target=work, name="date-spark-warm-workers", daemon=True)
    _WARMING.append(thread)
    thread.start()
    return thread


def _join_warming() -> None:
    for thread in _WARMING:
        if thread is not threading.current_thread():
            thread.join()


def _import_models(_: int) -> None:
    import pandas  # noqa: F401
    import sklearn.ensemble  # noqa: F401  (numpy, scipy and the estimators the fits use)


def on_driver(rows: int, columns: int) -> bool:
    """Whether a frame of `rows` x `columns` is small enough to be worked on in the driver."""
    limit = _limit()
    return limit > 0 and rows * max(1, columns) <= limit


def through_arrow(out: pd.DataFrame, schema: T.StructType | str, timezone: str) -> pd.DataFrame:
    """`out` as it comes back from a trip through Spark (`createDataFrame(out, schema)` or a
    pandas UDF's result, then `toPandas()`): columns by name, each converted to the declared type
    through Arrow with unsafe casts, as Spark does; naive timestamps read in the session's
    `timezone` and given back naive in it."""
    struct = _struct(schema)
    if out.empty and not len(out.columns):
        out = pd.DataFrame(columns=[f.name for f in struct.fields])
    arrays = []
    for f in struct.fields:
        s = out[f.name]
        if isinstance(f.dataType, T.TimestampType):
            s = pd.to_datetime(s)
            if s.dt.tz is None:
                s = s.dt.tz_localize(timezone, ambiguous=False, nonexistent="shift_forward")
            s = s.dt.tz_convert("UTC")
        arrays.append(pa.Array.from_pandas(s, type=_arrow_type(f.dataType), safe=False))
    table = pa.Table.from_arrays(arrays, names=[f.name for f in struct.fields])
    pdf = table.to_pandas(date_as_object=True, coerce_temporal_nanoseconds=True)
    for f in struct.fields:
        if isinstance(f.dataType, T.TimestampType):
            pdf[f.name] = pd.to_datetime(pdf[f.name]).dt.tz_convert(timezone).dt.tz_localize(None)
    return pdf


_ARROW: dict[type, pa.DataType] = {
    T.BooleanType: pa.bool_(),
    T.ByteType: pa.int8(),
    T.ShortType: pa.int16(),
    T.IntegerType: pa.int32(),
    T.LongType: pa.int64(),
    T.FloatType: pa.float32(),
    T.DoubleType: pa.float64(),
    T.StringType: pa.string(),
    T.BinaryType: pa.binary(),
    T.DateType: pa.date32(),
    T.TimestampType: pa.timestamp("us", tz="UTC"),
    T.TimestampNTZType: pa.timestamp("us"),
}


def _arrow_type(dt: T.DataType) -> pa.DataType | None:
    """The Arrow type Spark converts `dt` through (None: let Arrow infer it)."""
    if isinstance(dt, T.DecimalType):
        return pa.decimal128(dt.precision, dt.scale)
    return _ARROW.get(type(dt))


def _struct(schema: T.StructType | str) -> T.StructType:
    if isinstance(schema, T.StructType):
        return schema
    parsed = T._parse_datatype_string(schema)
    assert isinstance(parsed, T.StructType)
    return parsed


def apply_grouped(
    pdf: pd.DataFrame,
    key: str,
    fn: Callable[[pd.DataFrame], pd.DataFrame],
    schema: T.StructType | str,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """`groupBy(key).applyInPandas(fn, schema)` then `toPandas()`, on the driver: groups in key
    order, each with a fresh index as a pandas UDF sees it. `pdf` must be what Spark would hand
    the function (a `toPandas()` result, or `through_arrow` of it)."""
    parts = [fn(g.reset_index(drop=True)) for _, g in pdf.groupby(key, sort=True, dropna=False)]
    out = _concat(parts)
    return through_arrow(out, schema, timezone)


def apply_cogrouped(
    left: pd.DataFrame,
    right: pd.DataFrame,
    key: str,
    fn: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame],
    schema: T.StructType | str,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """`left.groupBy(key).cogroup(right.groupBy(key)).applyInPandas(fn, schema)` then
    `toPandas()`, on the driver: every key of either side in key order, a side without it an
    empty frame with its columns."""
    lg = {k: g.reset_index(drop=True) for k, g in left.groupby(key, sort=True, dropna=False)}
    rg = {k: g.reset_index(drop=True) for k, g in right.groupby(key, sort=True, dropna=False)}
    parts = []
    for k in sorted(set(lg) | set(rg), key=lambda v: (v is None, str(v))):
        a = lg.get(k, left.iloc[:0].reset_index(drop=True))
        b = rg.get(k, right.iloc[:0].reset_index(drop=True))
        parts.append(fn(a, b))
    out = _concat(parts)
    return through_arrow(out, schema, timezone)


def _concat(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The groups' outputs in order; empty ones only when all are (they carry no row, and pandas
    warns about their dtypes; the Arrow conversion after sets every column's type anyway)."""
    rows = [p for p in parts if len(p)]
    if rows:
        return pd.concat(rows, ignore_index=True)
    return parts[0].iloc[:0] if parts else pd.DataFrame()


def frame_cells(pdf: pd.DataFrame, extra: Sequence[pd.DataFrame] = ()) -> tuple[int, int]:
    """(rows, columns) of `pdf` plus `extra` frames, for `on_driver`."""
    rows = len(pdf) + sum(len(x) for x in extra)
    return rows, max([len(pdf.columns), *[len(x.columns) for x in extra]])
