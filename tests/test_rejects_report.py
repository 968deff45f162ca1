"""Issue 15: the per-column reject table reaches everything a user reads after a run: the CLI's
summary, the run summary in the manifest, the generation stage's manifest entry and saved rounds,
and MLflow (column names made into valid metric keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest

from date_spark.cli import main
from date_spark.testing.planted import planted_regimes
from date_spark.testing.stub import StubServer, default_rows, row_schema_of
from date_spark.tracking.mlflow_log import metric_key

FAR = 1e6  # past any margin of a column in [0, 1]


def broken_x7_and_an_extra_field(schema: dict[str, Any], body: dict[str, Any]) -> list[dict]:
    """Valid rows, except: x7 far out of range in the first two, an extra field in the third."""
    props, _ = row_schema_of(schema)
    if set(props) == {"rule"}:
        return []
    rows = default_rows(schema, body)
    for r in rows[:2]:
        r["x7"] = FAR
    if len(rows) > 2:
        rows[2]["id"] = 7
    return rows


@pytest.mark.usefixtures("spark")
def test_run_reports_rejects_per_column_everywhere(tmp_path: Path, capsys: Any) -> None:
    table = tmp_path / "planted.parquet"
    planted_regimes(1500, n_features=8, seed=11).drop(columns=["regime"]).to_parquet(
        table, index=False
    )
    sets = {
        "input.path": table,
        "input.target": "y",
        "output.path": tmp_path / "out",
        "output.runs_dir": tmp_path / "runs",
        "output.run_date": "2026-11-26",
        "llm.provider": "openai",
        "llm.api_key_env": "null",
        "llm.structured_output": "json_object",
        "llm.cache_path": tmp_path / "cache",
        "generation.iterations": 1,
        "generation.rows_per_request": 6,
        "generation.requests_per_rule": 1,
        "generation.rows_per_real_row": 0,
        "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    with StubServer(row_factory=broken_x7_and_an_extra_field) as url:
        sets["llm.base_url"] = url
        args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
        assert main(["run", *args]) == 0
    printed = capsys.readouterr().out

    (manifest_path,) = (tmp_path / "runs").glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    rounds = json.loads((manifest_path.parent / "generation" / "rounds.json").read_text())
    requests = sum(r["requests"] for r in rounds)
    assert manifest["stages"]["discovery"]["rules"] > 0 and requests > 0
    expected = {
        "x7": {"out_of_domain": 2 * requests},
        "(extra)": {"extra_field": requests},
    }
    # the saved rounds, the generation stage, the run summary
    assert rounds[0]["rejected_by_column"] == expected
    stage = manifest["stages"]["generation"]
    assert stage["rejected_by_column"] == expected
    assert stage["rejected"] == {"extra_field": requests, "out_of_domain": 2 * requests}
    assert manifest["summary"]["rejected_by_column"] == expected
    assert manifest["summary"]["valid_rows"] == 3 * requests

    # the CLI prints the table, the worst column first
    lines = printed.splitlines()
    head = lines.index("  rejects by column (a row counts under every column that failed):")
    assert lines[head + 1].split() == ["column", "extra_field", "out_of_domain"]
    assert lines[head + 2].split() == ["x7", "-", str(2 * requests)]
    assert lines[head + 3].split() == ["(extra)", str(requests), "-"]

    # MLflow: one metric per column and reason, keys MLflow accepts
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    metrics = mlflow.get_run(manifest["mlflow_run_id"]).data.metrics
    assert metrics["generation_rejected_out_of_domain"] == 2 * requests
    assert metrics["generation_rejected_by_column.x7.out_of_domain"] == 2 * requests
    assert metrics["generation_rejected_by_column._extra_.extra_field"] == requests
    assert metrics["generation_valid_rows"] == 3 * requests


def test_metric_keys_are_made_valid() -> None:
    assert metric_key("a.(reply).parse_error") == "a._reply_.parse_error"
    assert metric_key("rejected_by_column.prix €/m2.out") == "rejected_by_column.prix__/m2.out"
    assert len(metric_key("x" * 400)) == 250
