"""Run the job, unchanged, on Spark Connect: `python connect_job.py [date-spark run arguments]`.

Started in a subprocess by test_surface_connect.py (the pytest process already holds a classic
session, and a process has one kind of session). Builds `SparkSession.builder.remote("local[2]")`
(a local Spark Connect server plus this client), runs `date-spark run` through the CLI entry point,
which picks up the active Connect session, reads the output back through Connect and prints one
`RESULT {json}` line. Exit code: the job's."""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
        os.environ.setdefault(name, sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.remote("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        from date_spark.cli import main as date_spark_main
        from date_spark.runtime.spark import session

        used = session()  # what the job will use: the active session, not a new classic one
        code = date_spark_main(["run", *argv])
        result: dict[str, object] = {
            "code": code,
            "session": type(spark).__module__,
            "job_session": type(used).__module__,
            "same_session": used is spark,
        }
        if code == 0:
            out = next(a.split("=", 1)[1] for a in argv if a.startswith("output.path="))
            df = spark.read.parquet(out)
            result["columns"] = df.columns
            result["rows"] = df.count()
            result["synthetic_rows"] = df.where("_date_synthetic").count()
        print("RESULT " + json.dumps(result), flush=True)
        return code
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
