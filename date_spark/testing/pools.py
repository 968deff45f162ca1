"""Tables for oracle runs: reading a pool from a file, and splitting one table into the rows a job
trains on, the pool an oracle serves from, and the rows a model is judged on.

The three parts are disjoint, so an oracle's rows are never rows the job has seen, and a gain on
the test rows is not the model remembering them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from date_spark.errors import InputError

__all__ = ["read_columns", "read_table", "split_pool"]

_CSV = (".csv", ".txt")
_PARQUET = (".parquet", ".pq")


def _kind(path: Path, what: str) -> str:
    if path.is_dir() or path.suffix.lower() in _PARQUET:
        return "parquet"
    if path.suffix.lower() in _CSV:
        return "csv"
    raise InputError(
        f"cannot read the {what} {str(path)!r}: use a .csv or .parquet file (or a Parquet folder)"
    )


def _existing(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(
            f"the {what} {str(p)!r} does not exist: give the path of a CSV or Parquet file"
        )
    return p


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_table(path: str | Path, what: str = "table") -> pd.DataFrame:
    """A CSV or Parquet file as pandas; an unreadable file is an `InputError` naming it."""
    p = _existing(path, what)
    kind = _kind(p, what)
    try:
        return pd.read_csv(p) if kind == "csv" else pd.read_parquet(p)
    except Exception as e:  # any reader failure is the file's fault here
        raise InputError(f"cannot read the {what} {str(p)!r} as {kind}: {_first_line(e)}") from e


def read_columns(path: str | Path, what: str = "table") -> list[str]:
    """The column names of a CSV or Parquet file, without reading its rows when it can."""
    p = _existing(path, what)
    kind = _kind(p, what)
    try:
        if kind == "csv":
            return [str(c) for c in pd.read_csv(p, nrows=0).columns]
        import pyarrow.dataset as ds

        return [str(c) for c in ds.dataset(str(p), format="parquet").schema.names]
    except Exception as e:
        raise InputError(f"cannot read the {what} {str(p)!r} as {kind}: {_first_line(e)}") from e


def split_pool(
    df: pd.DataFrame, train_rows: int, pool_rows: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, pool, test): `train_rows` and `pool_rows` rows drawn at random (per `seed`) without
    overlap, and every remaining row as test. Each part keeps the table's row order and gets a
    fresh index."""
    if train_rows < 1 or pool_rows < 1:
        raise InputError(
            f"split_pool needs at least one train and one pool row, got train_rows={train_rows}, "
            f"pool_rows={pool_rows}"
        )
    if train_rows + pool_rows > len(df):
        raise InputError(
            f"split_pool asked for {train_rows} train + {pool_rows} pool rows from a table of "
            f"{len(df)}: ask for fewer rows or give a larger table"
        )
    order = np.random.default_rng(seed).permutation(len(df))
    parts = (order[:train_rows], order[train_rows : train_rows + pool_rows])
    rest = order[train_rows + pool_rows :]
    train, pool, test = (df.iloc[np.sort(idx)].reset_index(drop=True) for idx in (*parts, rest))
    return train, pool, test
