"""The oracle and noise endpoints (`date_spark.testing.oracle`), over real HTTP on 127.0.0.1:
rows come from the pool, satisfy the quoted rule, do not repeat until the matching pool is spent,
are repeatable per seed; the noise endpoint permutes the target; bad pools and bad requests are
refused in one line; the command line serves and refuses; a job against the oracle writes pool
rows."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from date_spark.config import Config
from date_spark.errors import InputError
from date_spark.llm.rows import RULE_MARKER, RowSchema
from date_spark.llm.validation import validate_reply
from date_spark.schema import ColumnSpec, Kind, TableSchema
from date_spark.testing.oracle import PoolOracle, oracle_server
from date_spark.testing.planted import planted_regimes
from date_spark.testing.pools import split_pool

ROOT = Path(__file__).resolve().parents[2]
TABLE = TableSchema(
    (
        ColumnSpec("id", Kind.NUMERIC, "bigint", False, True),
        ColumnSpec("x", Kind.NUMERIC, "double"),
        ColumnSpec("c", Kind.CATEGORICAL, "string"),
        ColumnSpec("d", Kind.DATE, "date"),
        ColumnSpec("b", Kind.BOOLEAN, "boolean"),
        ColumnSpec("y", Kind.NUMERIC, "bigint", False, True),
    ),
    target="y",
    task="classification",
    classes=(0, 1),
)
N = 80


@pytest.fixture(scope="module")
def pool() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.random(N).round(3)
    x[::17] = np.nan
    return pd.DataFrame(
        {
            "id": np.arange(N),
            "x": x,
            "c": rng.choice(["a", "b", "c"], N),
            "d": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 365, N), unit="D"),
            "b": rng.random(N) < 0.5,
            "y": rng.integers(0, 2, N),
        }
    )


def row_schema(rule: str | None, n: int) -> RowSchema:
    return RowSchema.from_table(
        TABLE,
        rule,
        domains={"c": ["a", "b", "c"]},
        ranges={
            "id": (0, N - 1),
            "x": (0.0, 1.0),
            "d": (dt.date(2021, 1, 1), dt.date(2021, 12, 31)),
        },
        n_rows=n,
    )


def post(url: str, schema: dict[str, Any], tag: str) -> str:
    """One chat request for rows of `schema`; the reply's text."""
    body = {
        "model": "oracle",
        "messages": [{"role": "user", "content": f"rows please ({tag})"}],
        "response_format": {"type": "json_object", "schema": schema},
    }
    req = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(json.load(r)["choices"][0]["message"]["content"])


def ask(url: str, rs: RowSchema, tag: str) -> list[dict[str, Any]]:
    """Rows for `rs`, checked by the job's own validator: right types, inside the rule. A pool
    row with a null is served with the null, which the job's validator counts as missing."""
    text = post(url, rs.json_schema(), tag)
    result = validate_reply(rs, text)
    rows: list[dict[str, Any]] = json.loads(text)["rows"]
    with_null = sum(any(v is None for v in r.values()) for r in rows)
    assert result.rejected == ({"missing_field": with_null} if with_null else {}), text
    assert len(result.rows) == len(rows) - with_null
    return rows


def as_json(pool: pd.DataFrame, i: int) -> dict[str, Any]:
    r = pool.iloc[i]
    return {
        "id": int(r["id"]),
        "x": None if math.isnan(r["x"]) else float(r["x"]),
        "c": str(r["c"]),
        "d": r["d"].date().isoformat(),
        "b": bool(r["b"]),
        "y": int(r["y"]),
    }


@pytest.fixture
def served(pool: pd.DataFrame) -> Iterator[str]:
    with oracle_server(pool, "y", columns=list(pool.columns), seed=0) as url:
        yield url


def test_rows_are_pool_rows_inside_the_rule_in_the_requested_types(
    pool: pd.DataFrame, served: str
) -> None:
    rule = "x > 0.3 and c in ('a', 'b') and d >= '2021-03-01'"
    rows = ask(served, row_schema(rule, 5), "first")
    assert len(rows) == 5
    for row in rows:
        assert row == as_json(pool, row["id"])  # the pool's row, every value typed as asked
        assert row["x"] > 0.3 and row["c"] in ("a", "b") and row["d"] >= "2021-03-01"
    assert len({r["id"] for r in rows}) == 5


def test_rows_do_not_repeat_until_the_matching_pool_is_spent(
    pool: pd.DataFrame, served: str
) -> None:
    matching = set(pool.loc[pool["c"] == "a", "id"].astype(int))
    m = len(matching)
    assert m > 8
    seen: set[int] = set()
    for i in range(math.ceil(m / 4)):
        ids = [r["id"] for r in ask(served, row_schema("c = 'a'", 4), f"req {i}")]
        assert len(ids) == len(set(ids)) == 4 and set(ids) <= matching
        if 4 * (i + 1) <= m:
            assert not set(ids) & seen, i  # nothing served twice while fresh rows remain
        seen |= set(ids)
    assert seen == matching  # every matching row served once
    again = [r["id"] for r in ask(served, row_schema("c = 'a'", 4), "after")]
    assert len(set(again)) == 4 and set(again) <= matching  # then reused, distinct per reply
    few = ask(served, row_schema("id < 2", 5), "few")
    assert sorted(r["id"] for r in few) == [0, 1]  # fewer than asked when fewer match


def test_the_same_seed_and_requests_give_the_same_rows(pool: pd.DataFrame) -> None:
    def replies(seed: int) -> list[str]:
        with oracle_server(pool, "y", seed=seed) as url:
            return [post(url, row_schema("c = 'b'", 4).json_schema(), f"r{i}") for i in range(3)]

    first = replies(7)
    assert json.loads(first[0])["rows"]
    assert replies(7) == first
    assert replies(8) != first


def test_refinement_requests_get_no_rules(served: str) -> None:
    schema = {
        "type": "object",
        "properties": {
            "rows": {
                "type": "array",
                "items": {"type": "object", "properties": {"rule": {"type": "string"}}},
            }
        },
    }
    assert json.loads(post(served, schema, "refine")) == {"rows": []}


def test_noise_serves_pool_rows_with_the_target_permuted(pool: pd.DataFrame) -> None:
    with oracle_server(pool, "y", noise=True, seed=5) as url:
        rows = ask(url, row_schema(None, N), "all")
    assert len(rows) == N  # the whole pool, once
    got = pd.DataFrame(rows).sort_values("id").reset_index(drop=True)
    want = pd.DataFrame([as_json(pool, i) for i in range(N)])
    features = ["id", "x", "c", "d", "b"]
    pd.testing.assert_frame_equal(got[features], want[features])  # real rows...
    assert sorted(got["y"]) == sorted(want["y"])  # ...the same targets...
    assert (got["y"] != want["y"]).mean() > 0.3  # ...on the wrong rows


def test_bad_pools_are_refused_in_one_line(pool: pd.DataFrame) -> None:
    cases = [
        (pool.drop(columns="y"), None, ["no target column 'y'", "give a pool"]),
        (
            pool.drop(columns="x").assign(z=1),
            list(pool.columns),
            ["missing ['x']", "extra ['z']", "give a pool"],
        ),
        (pool.iloc[:0], None, ["pool is empty"]),
    ]
    for bad, columns, words in cases:
        with pytest.raises(InputError) as err:
            PoolOracle(bad, "y", columns=columns)
        text = str(err.value)
        assert "\n" not in text and all(w in text for w in words), text


def test_a_request_for_columns_the_pool_lacks_is_a_400(pool: pd.DataFrame) -> None:
    wide = TableSchema(
        (*TABLE.columns, ColumnSpec("zzz", Kind.NUMERIC, "double")), "y", "classification", (0, 1)
    )
    asks_zzz = RowSchema.from_table(wide, "x > 0.1", n_rows=3).json_schema()
    rule_zzz = {**row_schema(None, 3).json_schema(), "description": f"{RULE_MARKER} www > 1"}
    with oracle_server(pool, "y") as url:
        for schema, name in ((asks_zzz, "zzz"), (rule_zzz, "www")):
            with pytest.raises(urllib.error.HTTPError) as err:
                post(url, schema, name)
            assert err.value.code == 400
            message = json.loads(err.value.read())["error"]["message"]
            assert name in message and "\n" not in message, message


def oracle_cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "date_spark.testing.oracle", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_the_command_line_prints_its_url_and_serves(pool: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "pool.csv"
    pool.to_csv(path, index=False)  # dates come back as text: served as ISO dates all the same
    proc = oracle_cli("--pool", str(path), "--target", "y", "--port", "0", "--seed", "1")
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), url
        rows = ask(url, row_schema("c = 'a'", 3), "cli")
        assert len(rows) == 3 and all(r == as_json(pool, r["id"]) for r in rows)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_command_line_refuses_a_bad_pool_with_exit_2(
    pool: pd.DataFrame, tmp_path: Path
) -> None:
    path, table = tmp_path / "pool.parquet", tmp_path / "table.csv"
    pool.to_parquet(path, index=False)
    pool.drop(columns="b").to_csv(table, index=False)
    for args, words in (
        (["--target", "nope"], ["'nope'"]),
        (["--target", "y", "--columns-from", str(table)], ["extra ['b']"]),
    ):
        proc = oracle_cli("--pool", str(path), *args)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
        assert out == "" and len(err.strip().splitlines()) == 1, err
        assert all(w in err for w in words), err


def test_split_pool_gives_disjoint_parts_per_seed() -> None:
    df = pd.DataFrame({"i": range(50)})
    train, pool, test = split_pool(df, 20, 10, seed=4)
    assert (len(train), len(pool), len(test)) == (20, 10, 20)
    assert sorted([*train["i"], *pool["i"], *test["i"]]) == list(range(50))
    assert split_pool(df, 20, 10, seed=4)[1].equals(pool)
    assert not split_pool(df, 20, 10, seed=5)[1].equals(pool)
    with pytest.raises(InputError, match="fewer rows"):
        split_pool(df, 40, 11, seed=0)


def test_a_job_against_the_oracle_generates_pool_rows(spark: Any) -> None:
    from date_spark.synthesizer import DateSynthesizer

    table = planted_regimes(1000, n_features=8, seed=3).drop(columns="regime")
    train, pool, _test = split_pool(table, 600, 400, seed=3)
    cfg = Config().with_overrides(
        {
            "input.target": "y",
            "tracking.enabled": False,
            "llm.provider": "openai",
            "llm.api_key_env": None,
            "llm.structured_output": "json_object",
            "llm.cache_path": None,
            "generation.generator": "llm",
            "generation.iterations": 1,
            "generation.rows_per_request": 6,
            "generation.requests_per_rule": 1,
            "generation.rows_per_real_row": 0,
            "generation.max_rules": 4,
            "discovery.max_levels": 2,
            "selection.rule": "holm",
            "selection.strategy": "topk",
            "selection.confirm": False,
        }
    )
    with oracle_server(pool, "y", columns=list(train.columns), seed=3) as url:
        cfg = cfg.with_overrides({"llm.base_url": url})
        synth = DateSynthesizer(cfg, spark).fit(spark.createDataFrame(train))
    cols = list(train.columns)
    rows = synth.generation_.rows[cols]
    assert len(rows) > 0
    found = rows.merge(pool, on=cols, how="left", indicator=True)["_merge"]
    assert len(found) == len(rows) and (found == "both").all()
