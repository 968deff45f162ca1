"""A fake API key set in the environment must reach the endpoint's auth header and nothing else:
no log line (driver or executor), no prompt, no output column, no cache file, no Spark closure, no
MLflow param, metric or artifact."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
import pytest
from pyspark import cloudpickle

from date_spark.config import Config
from date_spark.llm.engine import LlmRequest
from date_spark.llm.gateway import _partition_fn, plan_stage, run
from date_spark.testing.stub import StubServer

from .support import FAKE_KEY, FAKE_KEY_ENV, engine, make_cfg, make_schema, spark_requests


def _files_contain(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_key_never_leaks(
    spark: Any, stub: StubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The first two requests meet a misbehaving proxy that quotes the auth header in its error.
    stub.set(fault="echo_auth", fault_count=2)
    cfg = make_cfg(stub.base_url, tmp_path / "cache", api_key_env=FAKE_KEY_ENV)
    logs = tmp_path / "executor-logs"
    out = run(
        spark_requests(spark, 8, make_schema()),
        cfg,
        num_tasks=2,
        debug_log_dir=str(logs),
        check_endpoint=False,
    )

    # The key was really used: every request carried it (so the checks below are not vacuous).
    assert stub.count == 8
    assert stub.auth_headers == [f"Bearer {FAKE_KEY}"] * 8
    assert out.stats.ok == 6 and out.stats.failed == 2

    # Prompts and request bodies.
    assert FAKE_KEY not in json.dumps(stub.bodies)
    # Output columns, including the error text that quoted the header.
    errors = out.pandas["error"].dropna().tolist()
    assert len(errors) == 2 and all("Bearer ***" in e for e in errors)
    assert FAKE_KEY not in out.pandas.to_json()
    assert FAKE_KEY not in out.stats.to_json()
    # Executor logs at DEBUG (gateway, openai SDK, HTTP client) and driver logs.
    log_text = "".join(p.read_text() for p in logs.glob("*.log"))
    assert "openai" in log_text and "date_spark.llm" in log_text, "DEBUG logs were not captured"
    assert FAKE_KEY not in log_text
    assert not _files_contain(logs, FAKE_KEY)
    assert caplog.records, "no driver log record to check"
    assert FAKE_KEY not in caplog.text
    # Cache files.
    assert any(p.is_file() for p in (tmp_path / "cache").rglob("*")), "no cache file to check"
    assert not _files_contain(tmp_path / "cache", FAKE_KEY)

    # MLflow: the run's params (the whole resolved config), metrics and artifacts.
    tracking = tmp_path / "mlflow"
    tracking.mkdir()
    mlflow.set_tracking_uri(f"sqlite:///{tracking / 'mlflow.db'}")
    exp = mlflow.create_experiment("llm-secrets", artifact_location=str(tracking / "artifacts"))
    full = Config().with_overrides({"llm.provider": "openai", "llm.api_key_env": FAKE_KEY_ENV})
    with mlflow.start_run(experiment_id=exp):
        mlflow.log_params(full.flat())
        mlflow.log_metrics(out.stats.as_metrics())
        mlflow.log_text(out.stats.to_json(), "llm/stats.json")
        mlflow.log_text(out.pandas.to_json(orient="records"), "llm/results.json")
    run_data = mlflow.search_runs(experiment_ids=[exp]).to_json()
    assert FAKE_KEY_ENV in run_data  # the variable's name is logged...
    assert FAKE_KEY not in run_data  # ...never its value
    assert not _files_contain(tracking, FAKE_KEY)
    assert (tracking / "artifacts").exists()


def test_key_is_not_in_the_spark_closure(tmp_path: Path) -> None:
    cfg = make_cfg("http://127.0.0.1:1/v1", tmp_path, api_key_env=FAKE_KEY_ENV)
    plan = plan_stage(cfg, num_tasks=2)
    blob = cloudpickle.dumps(_partition_fn(plan, [], None, None))
    assert FAKE_KEY.encode() not in blob
    assert FAKE_KEY_ENV.encode() in blob  # executors get the name and read their own env


def test_in_process_debug_logs_hold_no_key(
    stub: StubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # the CLI quiets "openai" in-process; an earlier CLI test must not hide its records here
    caplog.set_level(logging.DEBUG, logger="openai")
    caplog.set_level(logging.DEBUG, logger="date_spark")  # and "date_spark" to INFO
    stub.set(fault="server_error", fault_count=1)
    cfg = make_cfg(stub.base_url, tmp_path, api_key_env=FAKE_KEY_ENV)
    e = engine(cfg)
    [res] = e.run([LlmRequest("a", [{"role": "user", "content": "x"}], make_schema())])
    assert res.status == "ok" and res.retries == 1
    assert any(r.name.startswith("openai") for r in caplog.records)
    assert any("retry 1" in r.getMessage() for r in caplog.records)
    assert FAKE_KEY not in caplog.text
    assert e.redact(f"token {FAKE_KEY} here") == "token *** here"
