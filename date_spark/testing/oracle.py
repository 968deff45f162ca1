"""An oracle (and a noise) Chat Completions endpoint: real held-out rows instead of an LLM's.

Whether DATE keeps the rows that help can only be measured against rows whose worth is known. The
oracle answers each row request with rows of a pool of the same table that the job never sees,
satisfying the rule quoted in the request: the best rows any LLM could write. The noise endpoint
serves the same rows with the target permuted across the pool (seeded): rows that look real in
every feature but carry wrong targets, so they hurt a model. A run against the oracle should keep
rows; against the noise endpoint it should keep none.

It is `StubServer` with a row factory (`PoolOracle`), so it speaks every structured-output dialect
the stub reads. Per request it returns as many matching pool rows as asked (fewer when fewer
match), taken in a fixed seeded order of the rule's matching rows without replacement across
requests while unused matching rows remain, so one job gets distinct rows; after that it reuses
them. The order is seeded by the construction seed and the rule alone, so the rows a rule's
requests receive between them do not depend on the order the requests arrive in (Spark tasks send
them concurrently); which request gets which of them does.
Refinement requests (rows of one `rule` field) get no rules back, as with `planted_rows`. A request
whose row schema or rule names columns the pool lacks is answered with HTTP 400.

    python -m date_spark.testing.oracle --pool pool.csv --target y [--noise] [--port 0]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import sys
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from date_spark.errors import DateSparkError, InputError
from date_spark.schema import Kind
from date_spark.testing.stub import (
    BadRowRequest,
    StubServer,
    row_schema_of,
    rule_text,
    serve_until_interrupted,
)

__all__ = ["PoolOracle", "main", "oracle_server"]


def _missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # array-like values are not missing scalars
        return False


def _plain(v: Any) -> Any:
    """A pandas/numpy scalar as the plain Python value JSON can carry."""
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


def _json_type(prop: Mapping[str, Any]) -> str:
    t = prop.get("type")
    if isinstance(t, list):
        return next((str(x) for x in t if x != "null"), "string")
    return str(t or "string")


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "t", "yes", "y", "1")
    return bool(v)


def _in_enum(v: Any, enum: Sequence[Any]) -> Any:
    """`v`, or the enum member it stands for (a category read as 3.0 where the enum says "3")."""
    if not enum or v in enum:
        return v
    for e in enum:
        if e is not None and str(e) == str(v):
            return e
        try:
            if e is not None and float(e) == float(v):
                return e
        except (TypeError, ValueError):
            continue
    return v


def _json_value(v: Any, prop: Mapping[str, Any]) -> Any:
    """A pool value in the JSON type the request's property asks for (NaN/None -> null); a value
    that will not convert is sent as it is, for the caller's validator to judge."""
    if _missing(v):
        return None
    t, fmt = _json_type(prop), prop.get("format")
    enum = [e for e in prop.get("enum") or [] if e is not None]
    out: Any
    try:
        if t == "boolean":
            out = _as_bool(v)
        elif t == "integer":
            x = float(v)
            if not math.isfinite(x):
                return None
            out = int(x) if x.is_integer() else x
        elif t == "number":
            x = float(v)
            if not math.isfinite(x):
                return None
            out = x
        elif fmt in ("date", "date-time"):
            ts = pd.Timestamp(v)
            if ts.tzinfo is not None:
                ts = ts.tz_convert("UTC").tz_localize(None)
            out = ts.date().isoformat() if fmt == "date" else ts.isoformat()
        else:
            p = _plain(v)
            out = str(int(p)) if isinstance(p, float) and p.is_integer() else str(p)
    except (TypeError, ValueError, OverflowError):
        p = _plain(v)
        return p if isinstance(p, (str, int, float, bool)) else str(p)
    return _in_enum(out, enum)


def _kind(prop: Mapping[str, Any]) -> Kind:
    t, fmt = _json_type(prop), prop.get("format")
    if t in ("integer", "number"):
        return Kind.NUMERIC
    if t == "boolean":
        return Kind.BOOLEAN
    if fmt == "date":
        return Kind.DATE
    if fmt == "date-time":
        return Kind.TIMESTAMP
    return Kind.CATEGORICAL


def _check_pool(pool: pd.DataFrame, target: str, columns: Sequence[str] | None) -> None:
    if not isinstance(pool, pd.DataFrame):
        raise InputError(f"the pool must be a pandas DataFrame, got {type(pool).__name__}")
    names = [str(c) for c in pool.columns]
    if columns is not None:
        want = [str(c) for c in columns]
        missing = [c for c in want if c not in names]
        extra = [c for c in names if c not in want]
        if missing or extra:
            parts = ([f"missing {missing}"] if missing else []) + (
                [f"extra {extra}"] if extra else []
            )
            raise InputError(
                f"the pool's columns differ from the table's ({', '.join(parts)}): give a pool "
                f"of the same table, with exactly its columns {want}"
            )
    if target not in names:
        raise InputError(
            f"the pool has no target column {target!r} (its columns: {names}): give a pool of "
            f"the job's table, target included, or name its target with --target"
        )
    if len(pool) == 0:
        raise InputError("the pool is empty: give at least one held-out row of the job's table")


class PoolOracle:
    """A `RowFactory` serving real pool rows that satisfy each request's rule (`noise=True`: with
    the target permuted across the pool first; `served` is the frame rows are drawn from).
    Thread-safe: the stub serves requests from several threads, and the record of used rows is
    shared."""

    def __init__(
        self,
        pool: pd.DataFrame,
        target: str,
        *,
        columns: Sequence[str] | None = None,
        seed: int = 0,
        noise: bool = False,
    ) -> None:
        _check_pool(pool, target, columns)
        served = pool.reset_index(drop=True).copy()
        served.columns = [str(c) for c in served.columns]
        if noise:
            perm = np.random.default_rng(seed).permutation(len(served))
            served[target] = served[target].to_numpy()[perm]
        self.served = served
        self.target = target
        self.seed = seed
        self.noise = noise
        self._lock = threading.Lock()
        self._used = np.zeros(len(served), dtype=bool)
        self._masks: dict[tuple[str, tuple[tuple[str, Kind], ...]], np.ndarray] = {}

    # -- state ----------------------------------------------------------------------------------
    @property
    def used_rows(self) -> int:
        """How many distinct pool rows have been served."""
        with self._lock:
            return int(self._used.sum())

    def reset(self) -> None:
        """Forget which rows were served (a new job starts from a fresh pool)."""
        with self._lock:
            self._used[:] = False

    # -- the row factory ------------------------------------------------------------------------
    def __call__(self, schema: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
        props, n = row_schema_of(schema)
        if set(props) == {"rule"}:
            return []  # a refinement request: the rules stay as discovered
        lacking = [c for c in props if c not in self.served.columns]
        if lacking:
            raise BadRowRequest(
                f"the request asks for columns the oracle's pool lacks {lacking}: serve a pool "
                f"of the job's table"
            )
        matching = self._matching(rule_text(schema), props)  # in the rule's seeded order
        with self._lock:
            k = min(n, len(matching))
            fresh = matching[~self._used[matching]]
            take = fresh[:k]
            if len(take) < k:  # the matching pool is spent: reuse, still distinct in one reply
                rng = np.random.default_rng([self.seed % 2**63, self._request_hash(body)])
                again = matching[self._used[matching]]
                take = np.concatenate([take, rng.choice(again, size=k - len(take), replace=False)])
            self._used[take] = True
        cols = list(props)
        block = self.served.iloc[take][cols]
        return [
            {c: _json_value(v, props[c]) for c, v in zip(cols, rec, strict=True)}
            for rec in block.itertuples(index=False, name=None)
        ]

    @staticmethod
    def _request_hash(body: Mapping[str, Any]) -> int:
        src = json.dumps([body.get("messages"), body.get("seed")], sort_keys=True, default=str)
        return int(hashlib.sha256(src.encode()).hexdigest()[:16], 16)

    def _matching(self, text: str | None, props: Mapping[str, Any]) -> np.ndarray:
        """Positions of the served rows that satisfy the rule (all rows without one), in an order
        seeded by the rule; cached per rule and column kinds, since every request of one DGR
        quotes the same rule."""
        from date_spark.errors import RuleError
        from date_spark.rules import parse_rule

        if not text:
            return np.random.default_rng(self.seed % 2**63).permutation(len(self.served))
        try:
            rule = parse_rule(text)
        except RuleError as e:
            raise BadRowRequest(f"the oracle cannot read the rule {text!r}: {e}") from e
        lacking = sorted(c for c in rule.columns() if c not in self.served.columns)
        if lacking:
            raise BadRowRequest(
                f"the rule names columns the oracle's pool lacks {lacking}: serve a pool of the "
                f"job's table"
            )
        kinds = tuple(sorted((c, _kind(props[c])) for c in rule.columns() if c in props))
        key = (text, kinds)
        with self._lock:
            if key in self._masks:
                return self._masks[key]
        frame = self.served[sorted(rule.columns())].copy()
        for c, kind in kinds:
            if kind is Kind.CATEGORICAL:  # compare as the request's strings, however stored
                frame[c] = [None if _missing(v) else _json_value(v, props[c]) for v in frame[c]]
        if len(kinds) == len(rule.columns()):
            # Typed literals (dates as dates); a rule the kinds refuse is applied as written.
            with contextlib.suppress(RuleError):
                rule = rule.bind(dict(kinds))
        try:
            mask = rule.mask(frame).to_numpy(dtype=bool)
        except (RuleError, TypeError, ValueError) as e:
            raise BadRowRequest(f"the oracle cannot apply the rule {text!r}: {e}") from e
        found = np.flatnonzero(mask)
        order = np.random.default_rng([self.seed % 2**63, zlib.crc32(repr(key).encode())])
        found = found[order.permutation(len(found))]
        with self._lock:
            self._masks[key] = found
        return found


def oracle_server(
    pool: pd.DataFrame,
    target: str,
    *,
    columns: Sequence[str] | None = None,
    seed: int = 0,
    noise: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
) -> StubServer:
    """`with oracle_server(pool, "y") as base_url:` serves the pool's rows (noise: with permuted
    targets) on 127.0.0.1; the bad-pool checks run here, before anything listens."""
    oracle = PoolOracle(pool, target, columns=columns, seed=seed, noise=noise)
    return StubServer(row_factory=oracle, host=host, port=port)


def main(argv: list[str] | None = None) -> int:
    """Serve an oracle from a file until Ctrl-C; the base URL is the only line on stdout."""
    from date_spark.testing.pools import read_columns, read_table

    ap = argparse.ArgumentParser(
        prog="python -m date_spark.testing.oracle",
        description="Chat Completions endpoint answering row requests with real pool rows",
    )
    ap.add_argument("--pool", required=True, help="held-out rows of the table (.csv/.parquet)")
    ap.add_argument("--target", required=True, help="the target column")
    ap.add_argument("--noise", action="store_true", help="permute the target across the pool")
    ap.add_argument("--columns-from", default=None, help="a table whose columns the pool must have")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        columns = read_columns(a.columns_from, "table") if a.columns_from else None
        pool = read_table(a.pool, "pool")
        server = oracle_server(
            pool, a.target, columns=columns, seed=a.seed, noise=a.noise, host=a.host, port=a.port
        )
        url = server.start()
    except DateSparkError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the port is taken, say
        print(f"error: cannot listen on {a.host}:{a.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(url, flush=True)
    what = "noise (permuted targets)" if a.noise else "oracle"
    print(f"{what}: {len(pool)} pool rows at {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    serve_until_interrupted(server)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit without interpreter teardown: on a refused pool the process has said all it will,
    # and a native thread pool (pyarrow's readers) aborting at teardown turned exit 2 into
    # SIGABRT (-6) in 2 of about 5 suite runs.
    os._exit(code)
