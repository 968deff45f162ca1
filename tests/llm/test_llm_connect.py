"""The gateway on Spark Connect (slow tier): DataFrame API only, no sparkContext, no .rdd.
Runs in a subprocess because this process already holds a classic session. Skips when the Spark
Connect client dependencies (grpcio, grpcio-status, googleapis-common-protos, zstandard) are not
installed (under `make test` that is a failure, not a skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.connect import needs_connect, run_script

SCRIPT = """
import json, os, sys, tempfile
from pyspark.sql import SparkSession
from date_spark.llm.gateway import requests_frame, run
from date_spark.testing.stub import StubServer
from tests.llm.support import make_cfg, make_schema

spark = SparkSession.builder.remote("local[2]").getOrCreate()
with StubServer() as url, tempfile.TemporaryDirectory() as d:
    schema = make_schema()
    items = [(f"r{i}", [{"role": "user", "content": str(i)}], schema) for i in range(4)]
    df = requests_frame(spark, items)
    out = run(df, make_cfg(url, d), num_tasks=2)
    again = run(df, make_cfg(url, d), num_tasks=2)
    print("RESULT " + json.dumps({
        "session": type(spark).__module__, "ok": out.stats.ok, "n_valid": out.stats.n_valid,
        "calls": out.stats.calls, "again_calls": again.stats.calls,
    }))
spark.stop()
"""


@pytest.mark.slow
@needs_connect
def test_gateway_on_spark_connect(tmp_path: Path) -> None:
    res = run_script(tmp_path, SCRIPT, timeout=600)
    assert res["session"] == "pyspark.sql.connect.session"
    assert res == {**res, "ok": 4, "n_valid": 20, "calls": 4, "again_calls": 0}
