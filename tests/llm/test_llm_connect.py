"""The gateway on Spark Connect (slow tier): DataFrame API only, no sparkContext, no .rdd.
Runs in a subprocess because this process already holds a classic session. Skips when the Spark
Connect client dependencies (grpcio, grpcio-status, googleapis-common-protos, zstandard) are not
installed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONNECT_DEPS = ("grpc", "grpc_status", "google.rpc", "zstandard")


def _have_connect() -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in CONNECT_DEPS)
    except ModuleNotFoundError:
        return False


SCRIPT = """
import json, os, sys, tempfile
from pyspark.sql import SparkSession
from date_spark.llm.gateway import requests_frame, run
from date_spark.llm.stub import StubServer
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
@pytest.mark.skipif(not _have_connect(), reason="Spark Connect client dependencies not installed")
def test_gateway_on_spark_connect(tmp_path: Path) -> None:
    script = tmp_path / "connect_gateway.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
    }
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT ") :])
    assert res["session"] == "pyspark.sql.connect.session"
    assert res == {**res, "ok": 4, "n_valid": 20, "calls": 4, "again_calls": 0}
