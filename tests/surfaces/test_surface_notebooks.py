"""Databricks notebooks (slow tier): both source notebooks in notebooks/ run top to bottom as
scripts (tests/surfaces/notebook_runner.py: a local session plus stand-ins for `dbutils` widgets
and secrets, `display` and `displayHTML`), against the stub, so they cannot rot.

The quickstart reads and writes catalog tables (created from Parquet in a local warehouse) and
takes the API key from the secret scope stand-in; the key reaches the executors as a cluster
environment variable would (`spark.executorEnv.*`). The key must reach the stub on every call and
appear nowhere else: not in the notebook's output, the run directory, the cache or the tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from date_spark.io.output import PROVENANCE_COLS, RUN_DATE_COL
from date_spark.testing.stub import StubServer

from .conftest import (
    LOCAL_SPARK_CONF,
    ROOT,
    SMALL_JOB,
    TARGET,
    Processes,
    base_env,
    last_json,
)

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ROOT / "notebooks"
SECRET = "sk-notebook-test-9fQ2xZ-not-a-real-key"  # a stand-in secret, checked for leaks
KEY_ENV = "OPENAI_API_KEY"  # llm.api_key_env's default: what the notebooks fill
SCOPE, SECRET_NAME = "date-spark-test", "llm-api-key"


def run_notebook(
    processes: Processes, tmp_path: Path, name: str, spec: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    spec_dir = tmp_path / "runner"  # holds the secret: never scanned for leaks
    spec_dir.mkdir(exist_ok=True)
    spec_path = spec_dir / f"{name}.json"
    spec_path.write_text(json.dumps({"notebook": str(NOTEBOOKS / name), **spec}))
    env = base_env()
    env.pop(KEY_ENV, None)
    code, printed = processes.run(
        [sys.executable, str(HERE / "notebook_runner.py"), str(spec_path)],
        tmp_path / f"{name}.log",
        env=env,
        timeout=1000,
        cwd=tmp_path,
    )
    assert code == 0, printed[-8000:]
    return last_json(printed), printed


def assert_no_leak(printed: str, *dirs: Path) -> None:
    assert SECRET not in printed
    needle = SECRET.encode()
    for d in dirs:
        files = [f for f in d.rglob("*") if f.is_file()]
        assert files, f"nothing was written under {d}: no file to check"
        for f in files:
            assert needle not in f.read_bytes(), f"the API key leaked into {f}"


def common_widgets(stub: StubServer, runs: Path) -> dict[str, str]:
    return {
        "target": TARGET,
        "endpoint": stub.base_url,
        "model": "stub",
        "secret_scope": SCOPE,
        "secret_key": SECRET_NAME,
        "runs_dir": str(runs),
        "overrides": "; ".join([*SMALL_JOB, "llm.structured_output=json_object"]),
    }


def notebook_spec(tmp_path: Path, widgets: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "widgets": widgets,
        "secrets": {f"{SCOPE}/{SECRET_NAME}": SECRET},
        "executor_env": {KEY_ENV: SECRET},  # the cluster's {{secrets/scope/key}} variable
        "spark_conf": {**LOCAL_SPARK_CONF, "spark.sql.session.timeZone": "UTC"},
        "warehouse": str(tmp_path / "warehouse"),
        **extra,
    }


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_quickstart_notebook(
    surface_table: Path, stub: StubServer, processes: Processes, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    widgets = {
        **common_widgets(stub, runs),
        "input_table": "planted_input",
        "output_table": "planted_augmented",
        "mode": "augmented",
        "run_date": "2026-11-22",
    }
    spec = notebook_spec(
        tmp_path,
        widgets,
        tables={"planted_input": str(surface_table)},
        inspect_tables=["planted_augmented"],
    )
    res, printed = run_notebook(processes, tmp_path, "01_quickstart.py", spec)

    input_cols = pq.read_schema(surface_table).names
    expected = [*input_cols, *PROVENANCE_COLS, RUN_DATE_COL]
    table = res["tables"]["planted_augmented"]
    assert table["columns"] == expected
    n_input = pq.read_metadata(surface_table).num_rows
    assert table["rows"] > n_input  # the input rows and the kept synthetic rows

    shown = res["displayed"]
    summary, by_rule, rows, report = shown[0], shown[1], shown[2], shown[-1]
    assert summary["kind"] == "pandas" and summary["rows"] >= 8
    assert by_rule["columns"] == ["_date_synthetic", "_date_rule", "count"]
    assert rows["columns"] == expected and rows["rows"] > 0
    assert report["kind"] == "html" and report["chars"] > 1000
    assert list(runs.glob("*/evaluation/*.html")), "the report was not saved with the run"
    assert "$OPENAI_API_KEY is set on the executors" in printed

    # the key came from the secret scope, reached the stub (a job this small sends its few
    # requests from the driver, a larger one from the executors) and nothing else
    assert stub.count > 0
    assert set(stub.auth_headers) == {f"Bearer {SECRET}"}
    assert_no_leak(printed, runs, tmp_path / "warehouse")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_explore_rules_and_arms_notebook(
    surface_table: Path, stub: StubServer, processes: Processes, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    widgets = {**common_widgets(stub, runs), "input_table": str(surface_table)}
    widgets["overrides"] += "; discovery.rho=0.2"
    res, printed = run_notebook(
        processes, tmp_path, "02_explore_rules_and_arms.py", notebook_spec(tmp_path, widgets)
    )
    shown = res["displayed"]
    rules, arms, per_rule, trace, kept = shown
    assert rules["columns"][:2] == ["rule_id", "rule"] and rules["rows"] > 0
    assert {"arm_id", "gain", "candidate", "selected"} <= set(arms["columns"])
    # one row per rule and thin segment, prompted or not
    assert arms["rows"] > 0 and per_rule["rows"] >= rules["rows"]
    assert "arm_id" in trace["columns"]
    input_cols = pq.read_schema(surface_table).names
    assert kept["columns"] == [*input_cols, *PROVENANCE_COLS, RUN_DATE_COL]
    assert "every kept row satisfies its rule" in printed
    assert not list(runs.glob("*/manifest.json")), "exploring must not start a run"
    assert stub.count > 0 and set(stub.auth_headers) == {f"Bearer {SECRET}"}
    assert_no_leak(printed, runs)
