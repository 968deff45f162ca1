"""`--resume` remembers the run: its saved config and input fingerprint. Before (issue 12), every
`--set` had to be repeated, and a run resumed on another input failed inside a Python worker."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from date_spark.cli import main
from date_spark.testing.planted import planted_regimes


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def first_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("date-spark: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.usefixtures("spark")
def test_resume_restores_the_run_and_refuses_what_changed(tmp_path: Path, capsys: Any) -> None:
    table, runs, out = tmp_path / "in.parquet", tmp_path / "runs", tmp_path / "out"
    planted_regimes(1500, n_features=8, seed=5).drop(columns=["regime"]).to_parquet(
        table, index=False
    )
    args = [
        "run",
        "--set", f"input.path={table}", "--set", "input.target=y",
        "--set", f"output.path={out}", "--set", f"output.runs_dir={runs}",
        "--set", "output.run_date=2026-11-20",
        "--set", "generation.generator=interpolation", "--set", "generation.iterations=1",
        "--set", "tracking.enabled=false",
    ]  # fmt: skip
    assert main(args) == 0
    manifest_path = next(runs.glob("2*/manifest.json"))
    rid = manifest_path.parent.name
    manifest = json.loads(manifest_path.read_text())
    fp = manifest["input_fingerprint"]
    assert fp["rows"] == 1500 and fp["files"] == 1 and fp["path"] == str(table)
    assert manifest["config"]["generation"]["generator"] == "interpolation"

    # the run stopped after discovery; its output never happened
    for stage in ("generation", "selection", "output", "evaluation"):
        manifest["stages"].pop(stage)
    manifest_path.write_text(json.dumps(manifest))
    for f in sorted(out.rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    out.rmdir()
    capsys.readouterr()
    alone = ["run", "--set", f"output.runs_dir={runs}", "--resume", rid]

    # a key that shaped a finished stage: refused by name, before anything runs
    assert main([*alone, "--set", "discovery.rho=0.1"]) == 2
    line = first_line(capsys.readouterr().err)
    assert "discovery.rho 0.25 -> 0.1" in line and "without --resume" in line
    assert not out.exists()

    # another input under the same path: refused with what changed, nothing written
    moved = tmp_path / "original.parquet"
    table.rename(moved)  # a rename keeps the file's modification time
    planted_regimes(1400, n_features=8, seed=6).drop(columns=["regime"]).to_parquet(
        table, index=False
    )
    before = digest(runs)
    assert main(alone) == 2
    line = first_line(capsys.readouterr().err)
    assert f"run {rid} was made from a different input" in line
    assert "row count 1500 -> 1400" in line
    assert digest(runs) == before and not out.exists()
    table.unlink()
    moved.rename(table)

    # the run id alone (plus neutral keys, and a key of a stage still to run) finishes the run
    # with its own config: the input, the interpolation generator, the output path and date
    assert main([*alone, "--set", "llm.timeout_s=30", "--set", "selection.max_steps=50"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed
    assert (out / "run_date=2026-11-20").is_dir()
    resumed = json.loads(manifest_path.read_text())
    assert {"generation", "selection", "output"} <= set(resumed["stages"])
    assert resumed["stages"]["generation"]["generator"] == "interpolation"
    assert resumed["resumes"][-1]["changed"] == ["llm.timeout_s", "selection.max_steps"]
    assert resumed["config"]["selection"]["max_steps"] == 50


def test_stage_of_config_keys() -> None:
    from date_spark.tracking.runs import stage_of

    assert stage_of("seed") == "prepare" and stage_of("input.exclude") == "prepare"
    assert stage_of("discovery.rho") == "discovery"
    assert stage_of("generation.prompt_token_budget") == "generation"
    assert stage_of("llm.model") == "generation" and stage_of("llm.seed") == "generation"
    assert stage_of("selection.min_z") == "selection"
    assert stage_of("output.run_date") == "output"
    for neutral in (
        "llm.base_url",
        "llm.concurrency_per_task",
        "llm.timeout_s",
        "llm.prices.gpt.prompt_per_1k",
        "tracking.uri",
        "spark.conf.spark.sql.shuffle.partitions",
        "output.runs_dir",
    ):
        assert stage_of(neutral) is None, neutral


def test_a_key_newer_than_the_run_at_its_default_does_not_block_the_resume(tmp_path: Path) -> None:
    """A run saved before a key existed (here `discovery.sample_cells`) resumes after the upgrade
    while the key keeps its default; set to anything else, it is a change like any other."""
    from date_spark.config import Config, load_config
    from date_spark.errors import ConfigError
    from date_spark.tracking.runs import check_resume_config, start_run

    run = start_run(tmp_path / "runs")
    saved = Config().redacted()
    del saved["discovery"]["sample_cells"]
    run.update(config=saved)
    run.finish_stage("prepare", {})
    run.finish_stage("discovery", {})

    assert check_resume_config(run, Config()) == ["discovery.sample_cells"]
    smaller = load_config([], ["discovery.sample_cells=100000"])
    with pytest.raises(ConfigError, match=r"discovery.sample_cells null -> 100000"):
        check_resume_config(run, smaller)
