"""The scans discovery logs agree with Spark's own input metrics (slow tier).

A classic session with the status REST API on (a subprocess: the test session runs without the
UI) discovers rules on a Parquet table; the rows each level's stages read from the files, divided
by the table's rows, must equal the level's measured `scans` (the library's observed counter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.connect import run_script

SCRIPT = """
import json, logging, os, time
from pyspark.sql import SparkSession
from benchmarks.spark_rest import UI_CONF, SparkRest
from date_spark.config import DiscoveryConfig
from date_spark.testing.planted import planted_regimes
from date_spark.discovery import discover
from tests.discovery.test_discovery import planted_schema

b = SparkSession.builder.master("local[2]").config("spark.sql.shuffle.partitions", "2")
for k, v in UI_CONF.items():
    b = b.config(k, v)
spark = b.getOrCreate()
pdf = planted_regimes(6000, seed=4)
path = os.path.join(@TMP@, "t.parquet")
pdf.drop(columns=["regime"]).to_parquet(path)

marks = []
class Clock(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("discovery level"):
            marks.append(record.created)
log = logging.getLogger("date_spark.discovery")
log.setLevel(logging.INFO)
log.addHandler(Clock(logging.INFO))
start = time.time()
d = discover(spark.read.parquet(path), planted_schema(pdf), DiscoveryConfig(), seed=42)
phases = SparkRest(spark).phases(marks, after=start - 0.001)
print("RESULT " + json.dumps({
    "observed": [s.scans for s in d.levels],
    "input": [records / len(pdf) for _, records in phases],
    "jobs": [len(jobs) for jobs, _ in phases],
    "accepted": [s.accepted for s in d.levels],
}))
spark.stop()
"""


@pytest.mark.slow
def test_logged_scans_equal_spark_input_records(tmp_path: Path) -> None:
    res = run_script(tmp_path, SCRIPT.replace("@TMP@", repr(str(tmp_path))), timeout=900)
    assert len(res["observed"]) >= 3 and all(j > 0 for j in res["jobs"])
    assert res["observed"] == [2.0] * len(res["observed"])
    assert [round(x, 3) for x in res["input"]] == res["observed"], res
