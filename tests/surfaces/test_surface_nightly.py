"""Nightly runs: conf/nightly.example.yaml, the cron wrapper (deploy/cron) and the Databricks job
(deploy/databricks). The wrapper runs for real, twice for the same date (slow tier): the rerun
replaces that date's partition only and, thanks to the LLM response cache, sends no LLM call. The
job definition is checked as data and its arguments are run through the real CLI."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from date_spark.config import load_config
from date_spark.testing.stub import StubServer

from .conftest import (
    LOCAL_SPARK_CONF,
    ROOT,
    SMALL_JOB,
    TARGET,
    Processes,
    base_env,
    read_output,
    sets,
    tail,
)

NIGHTLY = ROOT / "conf" / "nightly.example.yaml"
WRAPPER = ROOT / "deploy" / "cron" / "date-spark-nightly.sh"
BUNDLE = ROOT / "deploy" / "databricks"
TOKEN = "nightly-test-token"  # stand-in for the gateway key, from the wrapper's env file


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "date_spark.cli", *args],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_nightly_config_defaults_run_date_to_today() -> None:
    proc = cli("validate-config", "--config", str(NIGHTLY))
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["output"]["run_date"] == dt.date.today().isoformat()
    assert "run_date" not in yaml.safe_load(NIGHTLY.read_text())["output"]


def test_databricks_job_definition() -> None:
    root = yaml.safe_load((BUNDLE / "databricks.yml").read_text())
    job_files = sorted(BUNDLE.glob(root["include"][0]))
    assert [p.name for p in job_files] == ["date_spark_nightly.job.yml"]
    job_file = job_files[0]
    assert (BUNDLE / root["artifacts"]["date_spark"]["path"] / "pyproject.toml").exists()
    assert root["sync"]["paths"]
    for p in root["sync"]["paths"]:
        assert (BUNDLE / p).is_dir(), p

    job = yaml.safe_load(job_file.read_text())["resources"]["jobs"]["date_spark_nightly"]
    assert job["max_concurrent_runs"] == 1
    assert job["schedule"]["quartz_cron_expression"]
    assert {"name": "run_date", "default": "{{job.start_time.iso_date}}"} in job["parameters"]
    (task,) = job["tasks"]
    assert (job_file.parent / task["spark_python_task"]["python_file"]).resolve() == (
        ROOT / "jobs" / "augment.py"
    )
    assert task["libraries"][0]["whl"].endswith("dist/*.whl")

    # the key: a secret reference in the variable the config names, never a literal
    config = load_config([NIGHTLY])
    (cluster,) = job["job_clusters"]
    env_vars = cluster["new_cluster"]["spark_env_vars"]
    assert list(env_vars) == [config.llm.api_key_env]
    assert re.fullmatch(r"\{\{secrets/[^/]+/[^/]+\}\}", env_vars[config.llm.api_key_env])

    # the task's arguments, run through the real CLI (workspace paths mapped to this checkout)
    params = [
        p.replace("${workspace.file_path}", str(ROOT))
        .replace("{{job.parameters.run_date}}", "2026-11-20")
        .replace("${var.input_path}", "/Volumes/main/risk/raw/credit_applications")
        .replace("${var.output_path}", "/Volumes/main/risk/date_spark/nightly")
        .replace("${var.runs_dir}", "/Volumes/main/risk/date_spark/runs")
        for p in task["spark_python_task"]["parameters"]
    ]
    assert not [p for p in params if "${" in p or "{{" in p], params
    proc = cli("validate-config", *params)
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["output"]["run_date"] == "2026-11-20"
    assert resolved["spark"]["master"] is None
    assert resolved["llm"]["cache_path"].startswith("/Volumes/")


def test_crontab_line_calls_the_wrapper() -> None:
    lines = [
        ln for ln in (ROOT / "deploy" / "cron" / "crontab.example").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#") and "=" not in ln.split()[0]
    ]  # fmt: skip
    (line,) = lines
    fields = line.split()
    assert len(fields[:5]) == 5 and all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5])
    assert fields[-1].endswith("deploy/cron/date-spark-nightly.sh")
    assert WRAPPER.stat().st_mode & 0o111, "the wrapper must be executable"
    assert subprocess.run(["bash", "-n", str(WRAPPER)], timeout=30).returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cron_wrapper_rerun_replaces_only_that_date_and_costs_no_calls(
    surface_table: Path, stub: StubServer, processes: Processes, tmp_path: Path
) -> None:
    out, logs = tmp_path / "out", tmp_path / "logs"
    env_file = tmp_path / "date-spark.env"
    env_file.write_text(f"export LLM_GATEWAY_TOKEN={TOKEN}\n")
    env_file.chmod(0o600)
    env = base_env(
        DATE_SPARK_CONFIG=str(NIGHTLY),
        DATE_SPARK_PYTHON=sys.executable,
        DATE_SPARK_LOG_DIR=str(logs),
        DATE_SPARK_ENV_FILE=str(env_file),
        DATE_SPARK__INPUT__PATH=str(surface_table),
        DATE_SPARK__INPUT__TARGET=TARGET,
        DATE_SPARK__OUTPUT__PATH=str(out),
        DATE_SPARK__OUTPUT__RUNS_DIR=str(tmp_path / "runs"),
        DATE_SPARK__LLM__CACHE_PATH=str(tmp_path / "llm_cache"),
        DATE_SPARK__LLM__BASE_URL=stub.base_url,
        DATE_SPARK__LLM__STRUCTURED_OUTPUT="json_object",
    )
    env.pop("LLM_GATEWAY_TOKEN", None)
    extra = sets([*SMALL_JOB, f"spark.conf={LOCAL_SPARK_CONF}"])
    today = dt.date.today().isoformat()

    def nightly(*args: str) -> None:
        code, printed = processes.run(
            [str(WRAPPER), *args], logs / "wrapper.out", env=env, timeout=900
        )
        assert code == 0, printed + tail(logs / f"nightly-{today}.log", 6000)

    nightly(*extra)  # no date: today
    assert (logs / f"nightly-{today}.log").exists()
    first = read_output(out)
    assert set(first["run_date"]) == {today}
    assert len(first) > 0 and first["_date_synthetic"].all()
    assert list(first.columns[: len(pq.read_schema(surface_table).names)]) == (
        pq.read_schema(surface_table).names
    )
    calls = stub.count
    assert calls > 0
    assert set(stub.auth_headers) == {f"Bearer {TOKEN}"}  # the key came from the env file

    # an earlier night's partition, which the rerun must leave alone
    earlier = out / "run_date=2026-11-01"
    shutil.copytree(out / f"run_date={today}", earlier)
    before = {p.name: p.read_bytes() for p in earlier.iterdir()}

    nightly(today, *extra)  # the rerun of the same date
    assert stub.count == calls, "a rerun of the same date must not call the LLM again"
    after = read_output(out)
    again = after[after["run_date"] == today]
    cols = pq.read_schema(surface_table).names
    key = lambda df: df[cols].sort_values(cols).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(key(again), key(first))  # the same rows, not twice
    assert again["_date_run_id"].nunique() == 1
    assert set(again["_date_run_id"]) != set(first["_date_run_id"])  # written by the rerun
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before
    assert set(after["run_date"]) == {today, "2026-11-01"}
