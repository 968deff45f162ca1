"""Work on small frames runs on the driver or in Spark by size (`date_spark.runtime.placement`);
both paths must give the same result. The fit runs twice on one table, once with every step in Spark
(`driver_max_cells(0)`) and once with the small steps on the driver, and the rules, arms, scored
rows and kept rows are compared."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from pyspark.sql import types as T

from date_spark.config import load_config
from date_spark.errors import ConfigError
from date_spark.runtime.placement import (
    MAX_DRIVER_WORKERS,
    apply_cogrouped,
    apply_grouped,
    driver_max_cells,
    driver_workers,
    on_driver,
    parallel_map,
    warm_workers,
)
from date_spark.synthesizer import DateSynthesizer
from date_spark.testing.planted import planted_regimes
from date_spark.testing.stub import StubServer, planted_rows


def test_limit_and_override() -> None:
    assert on_driver(300, 20)
    assert not on_driver(10_000_000, 20)
    with driver_max_cells(0):
        assert not on_driver(1, 1)
    with driver_max_cells(100):
        assert on_driver(10, 10) and not on_driver(11, 10)


def test_grouped_matches_spark(spark: Any) -> None:
    pdf = pd.DataFrame(
        {
            "k": ["b", "a", "b", "c", "a"],
            "x": [1.0, None, 3.0, 4.0, 5.0],
            "d": pd.to_datetime(["2024-01-01", "2024-02-01", None, "2024-03-01", "2024-04-01"]),
        }
    )
    schema = "k string, n long, s double, d timestamp"

    def fn(g: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {"k": [g["k"].iloc[0]], "n": [len(g)], "s": [g["x"].sum()], "d": [g["d"].max()]}
        )

    sdf = spark.createDataFrame(pdf)
    via_spark = sdf.groupBy("k").applyInPandas(fn, schema).toPandas()
    local = apply_grouped(sdf.toPandas(), "k", fn, schema)
    assert_frame_equal(local, via_spark.sort_values("k").reset_index(drop=True))

    other = pd.DataFrame({"k": ["a", "d"], "y": [1, 2]})

    def co(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
        key = a["k"].iloc[0] if len(a) else b["k"].iloc[0]
        return pd.DataFrame({"k": [key], "left": [len(a)], "right": [len(b)]})

    co_schema = T.StructType(
        [
            T.StructField("k", T.StringType()),
            T.StructField("left", T.IntegerType()),
            T.StructField("right", T.IntegerType()),
        ]
    )
    osdf = spark.createDataFrame(other)
    via_spark = sdf.groupBy("k").cogroup(osdf.groupBy("k")).applyInPandas(co, co_schema).toPandas()
    local = apply_cogrouped(sdf.toPandas(), osdf.toPandas(), "k", co, co_schema)
    assert_frame_equal(local, via_spark.sort_values("k").reset_index(drop=True))


def _fit(table: Path, tmp: Path, url: str) -> DateSynthesizer:
    cfg = load_config(
        [],
        [
            f"input.path={table}",
            "input.target=y",
            f"output.path={tmp / 'out'}",
            f"output.runs_dir={tmp / 'runs'}",
            "llm.provider=openai",
            f"llm.base_url={url}",
            "llm.api_key_env=null",
            "llm.structured_output=json_object",
            "llm.cache_path=null",
            "generation.iterations=2",
            # placement is under test, not volume: a tenth of the default rows keeps every
            # step (several arms per round, refinement, the gain rule's volumes) at a third of
            # the time
            "generation.rows_per_real_row=0.3",
            "selection.min_z=0",
            "tracking.enabled=false",
        ],
    )
    return DateSynthesizer(cfg).fit()


def _canonical(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values(by, kind="mergesort").reset_index(drop=True)


@pytest.mark.usefixtures("spark")
def test_fit_is_the_same_on_the_driver_and_in_spark(tmp_path: Path) -> None:
    table = tmp_path / "planted.parquet"
    planted_regimes(1500, n_features=8, seed=3).drop(columns=["regime"]).to_parquet(table)
    with StubServer(row_factory=planted_rows(harmful_regimes={3, 4})) as url:
        with driver_max_cells(0):
            spark_fit = _fit(table, tmp_path / "spark", url)
        driver_fit = _fit(table, tmp_path / "driver", url)

    def rules(fit: DateSynthesizer) -> list[tuple[str, int, float]]:
        return [(d.rule.to_text(), d.support, d.val_error) for d in fit.rules_.dgrs]

    assert rules(driver_fit) == rules(spark_fit)
    assert rules(spark_fit)
    assert len(spark_fit.arms_) > 0
    assert_frame_equal(
        _canonical(driver_fit.arms_, ["arm_id"]), _canonical(spark_fit.arms_, ["arm_id"])
    )
    rows = ["_date_arm", "_date_request"]
    gen_d, gen_s = driver_fit.generation_.rows, spark_fit.generation_.rows
    assert_frame_equal(_canonical(gen_d, rows), _canonical(gen_s, rows))
    assert driver_fit.selection_.selected == spark_fit.selection_.selected
    assert_frame_equal(driver_fit.selection_.rows, spark_fit.selection_.rows)


def _square_plus(offset: float, x: float) -> float:
    return x * x + offset


def test_parallel_map_returns_what_a_loop_returns_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [float(i) for i in range(11)]
    fn = functools.partial(_square_plus, 0.5)
    want = [fn(x) for x in items]
    assert parallel_map(fn, items, 3) == want  # three processes, items dealt round-robin
    assert parallel_map(fn, items, 1) == want
    assert parallel_map(fn, items[:1], 4) == want[:1]  # one item: no process started
    assert parallel_map(fn, [], 4) == []
    monkeypatch.setenv("DATE_SPARK_DRIVER_WORKERS", "3")
    assert driver_workers() == 3
    monkeypatch.setenv("DATE_SPARK_DRIVER_WORKERS", "0")
    assert driver_workers() == 1
    monkeypatch.setenv("DATE_SPARK_DRIVER_WORKERS", "two")
    with pytest.raises(ConfigError, match="DATE_SPARK_DRIVER_WORKERS='two' is not a whole number"):
        driver_workers()
    monkeypatch.delenv("DATE_SPARK_DRIVER_WORKERS")
    assert 1 <= driver_workers() <= MAX_DRIVER_WORKERS


def _worker_pids() -> set[int]:
    """This process's children that run loky's worker entry point (not its resource trackers)."""
    out = set()
    for d in Path("/proc").iterdir():
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"popen_loky" in cmd:
            out.add(int(d.name))
    return out


def test_worker_processes_start_ahead_and_serve_the_first_map(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # none left over from an earlier test
    assert not _worker_pids()
    monkeypatch.setenv("DATE_SPARK_DRIVER_WORKERS", "1")
    assert warm_workers() is None  # fits stay in this process: nothing to start
    monkeypatch.setenv("DATE_SPARK_DRIVER_WORKERS", "2")
    thread = warm_workers()
    assert thread is not None
    thread.join(timeout=120)
    started = _worker_pids()
    assert len(started) == 2
    fn = functools.partial(_square_plus, 1.0)
    assert parallel_map(fn, [1.0, 2.0, 3.0], 2) == [2.0, 5.0, 10.0]
    assert _worker_pids() == started  # the first map ran in the processes started ahead
