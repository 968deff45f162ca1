"""Spark Connect (slow tier): the whole job runs unchanged on `SparkSession.builder.remote(...)`,
the session type of serverless compute and shared clusters, where `sparkContext`, `.rdd` and JVM
internals are unavailable. Runs in a subprocess (tests/surfaces/connect_job.py) because this
process already holds a classic session. Needs pyspark's `connect` extra (grpcio, grpcio-status,
googleapis-common-protos, zstandard): part of the `dev` extra, so it never skips."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from date_spark.io.output import PROVENANCE_COLS, RUN_DATE_COL
from date_spark.testing.stub import StubServer
from tests.connect import connect_port

from .conftest import (
    SMALL_JOB,
    TARGET,
    Processes,
    base_env,
    last_json,
    read_output,
    sets,
    stub_llm,
)

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_job_runs_unchanged_on_spark_connect(
    surface_table: Path, stub: StubServer, processes: Processes, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = sets(
        [
            f"input.path={surface_table}",
            f"input.target={TARGET}",
            f"output.path={out}",
            "output.mode=augmented",
            "output.run_date=2026-11-21",
            f"output.runs_dir={tmp_path / 'runs'}",
            f"llm.cache_path={tmp_path / 'llm_cache'}",
            "spark.master=null",
            *SMALL_JOB,
            *stub_llm(stub.base_url),
        ]
    )
    with connect_port():
        code, printed = processes.run(
            [sys.executable, str(HERE / "connect_job.py"), *args],
            tmp_path / "connect.log",
            env=base_env(),
            timeout=1000,
            cwd=tmp_path,
        )
    assert code == 0, printed[-8000:]
    res = last_json(printed)
    assert res["session"] == "pyspark.sql.connect.session", res
    assert res["job_session"] == "pyspark.sql.connect.session", res
    assert res["same_session"] is True

    input_cols = pq.read_schema(surface_table).names
    expected = [*input_cols, *PROVENANCE_COLS, RUN_DATE_COL]
    assert res["columns"] == expected
    assert res["rows"] == pq.read_metadata(surface_table).num_rows + res["synthetic_rows"]
    assert res["synthetic_rows"] > 0
    assert stub.count > 0

    written = read_output(out)  # and the files themselves, read without Spark
    assert list(written.columns) == expected
    assert len(written) == res["rows"]
