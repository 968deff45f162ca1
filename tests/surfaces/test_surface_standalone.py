"""A real Spark standalone cluster (slow tier): a master and two one-core workers on 127.0.0.1,
started from the scripts that ship in the pyspark package; `jobs/augment.py` is submitted with
`spark-submit --master spark://...` and the package shipped with `--py-files` (the built wheel,
under a .zip name: Spark puts only .zip/.egg/.jar py-files on the executors' Python path). The LLM
is the stub in this process; the executors call it over HTTP. Every process is stopped at the end,
also when the test fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pyspark
import pytest
import yaml

from date_spark import __version__
from date_spark.io.output import PROVENANCE_COLS, RUN_DATE_COL
from date_spark.rules import parse_rule
from date_spark.testing.stub import StubServer

from .conftest import (
    LOCAL_SPARK_CONF,
    ROOT,
    SMALL_JOB,
    TARGET,
    Processes,
    base_env,
    free_port,
    read_output,
    sets,
    stub_llm,
    tail,
    wait_for_line,
)

SPARK_HOME = Path(pyspark.__file__).resolve().parent
RUN_DATE = "2026-11-20"


@dataclass
class Cluster:
    url: str
    work_dirs: list[Path]
    master: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


@pytest.fixture()
def standalone_cluster(processes: Processes, tmp_path: Path) -> Cluster:
    env = base_env(SPARK_HOME=str(SPARK_HOME))
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    master = processes.start(
        [spark_class, "org.apache.spark.deploy.master.Master",
         "--host", "127.0.0.1", "--port", str(port), "--webui-port", "0"],
        logs / "master.log", env=env, cwd=tmp_path,
    )  # fmt: skip
    wait_for_line(logs / "master.log", "I have been elected leader", master, timeout=180)
    workers, work_dirs = [], []
    for i in (1, 2):
        work = tmp_path / f"worker{i}"
        work.mkdir()
        work_dirs.append(work)
        worker = processes.start(
            [spark_class, "org.apache.spark.deploy.worker.Worker", url,
             "--host", "127.0.0.1", "--cores", "1", "--memory", "2g",
             "--webui-port", "0", "--work-dir", str(work)],
            logs / f"worker{i}.log", env=env, cwd=tmp_path,
        )  # fmt: skip
        workers.append(worker)
    for i, w in enumerate(workers, start=1):
        wait_for_line(logs / f"worker{i}.log", "Successfully registered with master", w, 180)
    return Cluster(url, work_dirs, master, workers)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_spark_submit_on_a_standalone_cluster(
    standalone_cluster: Cluster,
    built_dist: dict[str, Path],
    surface_table: Path,
    stub: StubServer,
    processes: Processes,
    tmp_path: Path,
) -> None:
    package = tmp_path / f"date_spark-{__version__}.zip"
    shutil.copyfile(built_dist["wheel"], package)  # a wheel is a zip of the package
    out = tmp_path / "out"
    config = tmp_path / "standalone.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "input": {"path": str(surface_table), "format": "parquet", "target": TARGET},
                "output": {
                    "path": str(out),
                    "mode": "augmented",
                    "runs_dir": str(tmp_path / "runs"),
                },
                # executors write the response cache: an absolute path every process can reach
                "llm": {"cache_path": str(tmp_path / "llm_cache")},
                "spark": {"master": None},  # spark-submit's --master decides
            }
        )
    )
    cmd = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--master", standalone_cluster.url,
        "--name", "date-spark-standalone-test",
        "--conf", "spark.executor.memory=1g",
        "--conf", "spark.executor.cores=1",
        "--conf", "spark.driver.host=127.0.0.1",
        "--conf", f"spark.pyspark.python={sys.executable}",
        *[a for k, v in LOCAL_SPARK_CONF.items() for a in ("--conf", f"{k}={v}")],
        "--py-files", str(package),
        str(ROOT / "jobs" / "augment.py"),
        "--config", str(config),
        *sets([*SMALL_JOB, *stub_llm(stub.base_url), f"output.run_date={RUN_DATE}"]),
    ]  # fmt: skip
    log = tmp_path / "logs" / "spark-submit.log"
    code, printed = processes.run(
        cmd, log, env=base_env(SPARK_HOME=str(SPARK_HOME)), timeout=1000, cwd=tmp_path
    )
    assert code == 0, printed[-6000:]
    assert "done:" in printed and str(out) in printed

    # the executors, not the driver, called the stub
    assert stub.count > 0
    # both workers ran an executor for the application, and each fetched the shipped package
    for work in standalone_cluster.work_dirs:
        shipped = list(work.glob(f"app-*/*/{package.name}"))
        assert shipped, f"no executor of {work.name} fetched {package.name}"

    # output: the input's columns, then provenance, partitioned by run_date
    input_cols = pq.read_schema(surface_table).names
    written = read_output(out)
    assert list(written.columns) == [*input_cols, *PROVENANCE_COLS, RUN_DATE_COL]
    assert set(written[RUN_DATE_COL]) == {RUN_DATE}
    assert written["_date_run_id"].nunique() == 1
    real = written[~written["_date_synthetic"]]
    synthetic = written[written["_date_synthetic"]]
    source = pd.read_parquet(surface_table)
    assert len(real) == len(source)
    pd.testing.assert_frame_equal(
        real[input_cols].sort_values(input_cols).reset_index(drop=True),
        source.sort_values(input_cols).reset_index(drop=True),
        check_dtype=False,
    )
    assert len(synthetic) > 0, tail(log)
    for rule_text, rows in synthetic.groupby("_date_rule"):
        assert parse_rule(str(rule_text)).mask(rows).all(), rule_text

    # nothing the test started outlives it
    processes.stop_all()
    assert processes.alive() == []
