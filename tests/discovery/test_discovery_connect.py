"""Discovery on Spark Connect (slow tier): DataFrame API only, no sparkContext, no .rdd.
Runs in a subprocess because this process already holds a classic session. Skips when the Spark
Connect client is not installed (under `make test` that is a failure, not a skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.connect import needs_connect, run_script

SCRIPT = """
import json, tempfile
import numpy as np
from pyspark.sql import SparkSession
from date_spark.config import DiscoveryConfig
from date_spark.testing.planted import planted_regimes
from date_spark.discovery import Discovery, discover
from tests.discovery.test_discovery import planted_schema

spark = SparkSession.builder.remote("local[2]").getOrCreate()
pdf = planted_regimes(6000, seed=4)
df = spark.createDataFrame(pdf.drop(columns=["regime"]))
d = discover(df, planted_schema(pdf), DiscoveryConfig(), seed=42)
routed = d.route()(df).groupBy("_date_rule_id").count().toPandas()
pred = d.predict("p")(df).select("y", "p").toPandas()
with tempfile.TemporaryDirectory() as tmp:
    back = Discovery.load(d.save(tmp + "/d.json"))
    again = back.predict("p")(df).select("p").toPandas()
masks_ok = all(
    df.filter(g.rule.to_column()).count() == int(g.rule.mask(pdf).sum()) for g in d.dgrs
)
print("RESULT " + json.dumps({
    "session": type(spark).__module__, "dgrs": len(d.dgrs), "coverage": d.coverage,
    "routed": int(routed["count"].sum()), "n": len(pdf),
    "err": float((pred["p"] != pred["y"]).mean()),
    "same_after_load": bool((again["p"].to_numpy() == pred["p"].to_numpy()).all()),
    "masks_ok": masks_ok, "frame": d.rules_frame(spark).count(),
    "scans": [s.scans for s in d.levels],
}))
spark.stop()
"""


@pytest.mark.slow
@needs_connect
def test_discovery_on_spark_connect(tmp_path: Path) -> None:
    res = run_script(tmp_path, SCRIPT, timeout=900)
    assert res["session"] == "pyspark.sql.connect.session"
    assert res["dgrs"] >= 4 and res["coverage"] > 0.9
    assert res["routed"] == res["n"] and res["frame"] == res["dgrs"]
    assert res["err"] < 0.12 and res["same_after_load"] and res["masks_ok"]
    # This Connect client reports observed metrics, so the scans are measured here too.
    assert len(res["scans"]) >= 2 and res["scans"] == [2.0] * len(res["scans"])
