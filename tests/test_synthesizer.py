"""The whole job through the facade and the CLI, against a real stub LLM server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from date_spark.cli import main
from date_spark.config import Config
from date_spark.io.output import output_schema
from date_spark.rules import parse_rule
from date_spark.testing.planted import planted_regimes, planted_truth
from date_spark.testing.stub import StubServer, planted_rows

HARMFUL_REGIMES = frozenset({3, 4})  # the stub flips labels there


def mislabelled(rows: pd.DataFrame) -> pd.Series:
    """Rows whose label disagrees with the planted (noise-free) relation."""
    return rows["y"].astype(int) != planted_truth(rows)["label"]


@pytest.fixture(scope="module")
def table(tmp_path_factory: Any) -> Path:
    p = tmp_path_factory.mktemp("in") / "planted.parquet"
    planted_regimes(6000, n_features=8, seed=11).drop(columns=["regime"]).to_parquet(p, index=False)
    return p


def job_args(table: Path, tmp: Path, url: str, *extra: str) -> list[str]:
    return [
        "--set",
        f"input.path={table}",
        "--set",
        "input.target=y",
        "--set",
        f"output.path={tmp / 'out'}",
        "--set",
        f"output.runs_dir={tmp / 'runs'}",
        "--set",
        "output.mode=augmented",
        "--set",
        "output.run_date=2026-11-26",
        "--set",
        "llm.provider=openai",
        "--set",
        f"llm.base_url={url}",
        "--set",
        "llm.api_key_env=null",
        "--set",
        "llm.structured_output=json_object",
        "--set",
        f"llm.cache_path={tmp / 'cache'}",
        "--set",
        "generation.iterations=1",
        "--set",
        "generation.rows_per_request=40",
        "--set",
        "generation.requests_per_rule=2",
        "--set",
        "generation.rows_per_real_row=0",
        "--set",
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        *extra,
    ]


@pytest.mark.usefixtures("spark")
def test_job_end_to_end_then_resume_rewrites_the_same_rows(
    table: Path, tmp_path: Path, spark: Any, capsys: Any
) -> None:
    """The job's plumbing under the paper's acceptance rule (`selection.rule: paper`: any
    improvement, no confirmation) and the request sizing it was written with, so that rows are
    kept and every check on them is about something; the default rule's effect is tested in
    tests/selection/test_keep_rule.py."""
    paper = ("--set", "selection.rule=paper", "--set", "generation.rows_per_real_row=0")
    with StubServer(row_factory=planted_rows(harmful_regimes=HARMFUL_REGIMES)) as url:
        assert main(["run", *job_args(table, tmp_path, url, *paper)]) == 0
        printed = capsys.readouterr().out
        assert "mlflow:" in printed and str(tmp_path / "out") in printed
        runs = sorted((tmp_path / "runs").glob("2*/manifest.json"))
        manifest = json.loads(runs[0].read_text())
        assert {"prepare", "discovery", "generation", "selection", "output"} <= set(
            manifest["stages"]
        )

        out = spark.read.parquet(str(tmp_path / "out"))
        inp = spark.read.parquet(str(table))
        assert out.columns == output_schema(inp.schema)
        allrows = out.toPandas()
        assert (~allrows["_date_synthetic"]).sum() == inp.count()  # augmented: every input row
        rows = allrows[allrows["_date_synthetic"]]
        assert 0 < len(rows) <= Config().selection.budget_rows
        for rule_text, g in rows.groupby("_date_rule"):
            assert parse_rule(rule_text).mask(g).all(), rule_text
        # harmful (label-flipped) rows were generated; the label check set many of them apart
        # and the screen kept the rest out (their arms lower the screening score)
        run_dir = runs[0].parent
        trace = pd.read_parquet(run_dir / "selection" / "trace.parquet")
        gen_rows = pd.read_parquet(run_dir / "generation" / "rows.parquet")
        flipped = mislabelled(gen_rows)
        assert flipped.sum() > 50
        set_apart = gen_rows["_date_arm"].str.endswith(".rejected")
        # the check sets flipped rows apart far more often than right ones
        assert set_apart[flipped].mean() > max(0.4, 3 * set_apart[~flipped].mean())
        assert not mislabelled(rows).any()
        tried = trace[trace["arm_id"].map(flipped.groupby(gen_rows["_date_arm"]).mean() > 0.5)
                      .fillna(False).astype(bool)]  # fmt: skip
        assert not tried["accepted"].any()

        # MLflow: params without secrets, metrics, artifacts
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
        run = mlflow.get_run(manifest["mlflow_run_id"])
        assert run.data.params["discovery.rho"]
        assert run.data.metrics["rows_out"] == len(allrows)
        assert run.data.metrics["synthetic_rows_out"] == len(rows)
        assert "selection_selected_arms" in run.data.metrics
        arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
        assert {"discovery", "generation", "selection"} <= arts

    # resume a run stopped after generation: zero LLM calls (fresh cache, a server that counts)
    rid = runs[0].parent.name
    m = json.loads(runs[0].read_text())
    for stage in ("selection", "output", "evaluation"):
        m["stages"].pop(stage, None)
    runs[0].write_text(json.dumps(m))
    with StubServer(row_factory=planted_rows(harmful_regimes=HARMFUL_REGIMES)) as url2:
        code = main(
            [
                "run",
                *job_args(
                    table, tmp_path, url2, *paper, "--set", f"llm.cache_path={tmp_path / 'cache2'}"
                ),
                "--resume",
                rid,
            ]
        )
        assert code == 0
    assert not (tmp_path / "cache2").exists() or not any((tmp_path / "cache2").rglob("*.json"))
    resumed = json.loads(runs[0].read_text())
    assert "output" in resumed["stages"]
    # the resumed run rewrote the same date: the same rows, not twice (a full rerun of a date is
    # tests/surfaces/test_surface_nightly.py's)
    again = spark.read.parquet(str(tmp_path / "out")).toPandas()
    again = again[again["_date_synthetic"]]
    cols = list(inp.columns)
    key = lambda df: df[cols].round(12).sort_values(cols).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(key(again), key(rows))


@pytest.mark.usefixtures("spark")
def test_dead_endpoint_exits_3_and_says_what_finished(
    table: Path, tmp_path: Path, capsys: Any
) -> None:
    code = main(
        [
            "run",
            *job_args(
                table,
                tmp_path,
                "http://127.0.0.1:9/v1",
                "--set",
                "llm.max_retries=0",
                "--set",
                "llm.timeout_s=2",
            ),
        ]
    )
    err = capsys.readouterr().err
    assert code == 3, err
    line = next(ln for ln in err.splitlines() if ln.startswith("date-spark: error:"))
    assert "127.0.0.1:9" in line and "--resume" in line and "discovery" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("spark")
def test_job_evaluates_and_reports(tmp_path: Path) -> None:
    """No-LLM generator on a small table (thin partitions) with the top-k strategy and no
    confirmation (the paper's protocol), so rows are kept and evaluated."""
    table = tmp_path / "small.parquet"
    planted_regimes(1500, n_features=8, seed=5).drop(columns=["regime"]).to_parquet(
        table, index=False
    )
    args = [
        "--set", f"input.path={table}", "--set", "input.target=y",
        "--set", f"output.path={tmp_path / 'out'}", "--set", f"output.runs_dir={tmp_path / 'runs'}",
        "--set", "generation.generator=interpolation", "--set", "generation.iterations=1",
        "--set", "selection.strategy=topk", "--set", "selection.confirm=false",
        "--set", "selection.rule=holm", "--set", "generation.rows_per_real_row=0",
        "--set", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]  # fmt: skip
    assert main(["run", *args]) == 0
    manifest = json.loads(next((tmp_path / "runs").glob("2*/manifest.json")).read_text())
    ev = manifest["stages"]["evaluation"]
    util = ev["utility"]
    assert util["synthetic_rows"] > 0 and ev["fidelity"] is not None
    assert util["model"] == "hist_gradient_boosting" and util["loss"] == "brier"
    for key in ("no_partition", "partition_only", "date", "global_synthetic"):
        assert 0 <= util["losses"][key] <= 2 and 0 <= util["errors"][key] <= 1
    gains = {g["name"]: g for g in util["gains"]}
    assert set(gains) == {"partition gain", "synthetic gain (partitioned)",
                          "synthetic gain (global)"}  # fmt: skip
    for g in gains.values():
        assert g["low"] <= g["gain"] <= g["high"] and g["rows"] == util["test_rows"]
    assert util["headline"].startswith(f"utility on {util['test_rows']} test rows")
    report = Path(ev["html"])
    assert report.exists() and "<img" in report.read_text()
    beside = tmp_path / "out_report" / manifest["config"]["output"]["run_date"]
    assert (beside / report.name).exists()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = mlflow.get_run(manifest["mlflow_run_id"])
    assert "utility.loss.date" in run.data.metrics
    assert "fidelity.overall" in run.data.metrics
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert "evaluation" in arts


def test_select_reruns_stage_3_with_other_options_and_no_new_generation(spark: Any) -> None:
    from date_spark.errors import DateSparkError
    from date_spark.synthesizer import DateSynthesizer

    cfg = Config().with_overrides(
        {
            "input.target": "y",
            "generation.generator": "interpolation",
            "generation.iterations": 1,
            "generation.rows_per_real_row": 0,
            # fitted under the paper's search, whose candidates need every group's gain
            "selection.rule": "holm",
            "tracking.enabled": False,
        }
    )
    df = spark.createDataFrame(planted_regimes(1500, n_features=8, seed=5).drop(columns="regime"))
    synth = DateSynthesizer(cfg, spark)
    with pytest.raises(DateSparkError, match="fit"):
        synth.select(strategy="forward")
    synth.fit(df)
    fitted = synth.selection_
    rows_before = len(synth.generation_.rows)
    topk = synth.select(rule="holm", strategy="topk", top_k=2, confirm=False)
    forward = synth.select(rule="paper", strategy="forward")
    candidates = int(synth.arms_["candidate"].sum())
    assert candidates > 0
    assert topk.strategy == "topk" and len(topk.selected) == min(2, candidates)
    assert forward.strategy == "forward"
    gain = synth.select(rule="gain", keep_z=0.5)  # the default rule on the same rows
    assert gain.strategy == "gain" and gain.gain is not None and gain.gain.partitions
    assert synth.selection_ is fitted and fitted.strategy == "bandit"
    assert len(synth.generation_.rows) == rows_before
    with pytest.raises(DateSparkError, match="strategy"):
        synth.select(strategy="best")


def test_a_saved_synthesizer_loads_and_samples_the_same_rows(spark: Any, tmp_path: Path) -> None:
    """`save` keeps each stage the way a run does; `load` samples and explains the same without
    an LLM call and without reading the input."""
    from chispa import assert_df_equality

    from date_spark.errors import ConfigError, OutputError
    from date_spark.synthesizer import DateSynthesizer

    cfg = Config().with_overrides(
        {
            "input.target": "y",
            "generation.generator": "interpolation",
            "generation.iterations": 1,
            "selection.rule": "holm",
            "tracking.enabled": False,
        }
    )
    df = spark.createDataFrame(planted_regimes(1500, n_features=8, seed=5).drop(columns="regime"))
    synth = DateSynthesizer(cfg, spark).fit(df)
    # a selection that keeps rows, so the comparison below compares some
    synth.selection_ = synth.select(rule="holm", strategy="topk", top_k=2, confirm=False)
    assert synth.selection_.n_rows > 0
    saved = synth.save(tmp_path / "synth")
    assert sorted(p.name for p in saved.iterdir()) == [
        "config.json", "discovery", "generation", "input_schema.json", "selection"
    ]  # fmt: skip

    loaded = DateSynthesizer.load(saved, spark)
    assert not hasattr(loaded, "data_")  # the input was not read
    assert_df_equality(loaded.sample(), synth.sample(), ignore_row_order=True)
    assert loaded.kept_text() == synth.kept_text()
    assert [d.rule.to_text() for d in loaded.rules_.dgrs] == [
        d.rule.to_text() for d in synth.rules_.dgrs
    ]
    with pytest.raises(ConfigError, match="no saved synthesizer"):
        DateSynthesizer.load(tmp_path / "nothing-here", spark)
    before = sorted(str(p) for p in saved.rglob("*"))
    with pytest.raises(OutputError, match="not empty"):
        synth.save(saved)  # another fit's files would mix with these
    assert sorted(str(p) for p in saved.rglob("*")) == before


def test_an_error_raised_while_handling_ctrl_c_counts_as_the_interruption() -> None:
    """pyspark's cleanup after Ctrl-C (closing a half-read Arrow stream) raises a Java broken
    pipe in place of the KeyboardInterrupt; a plain error is still a crash."""
    from date_spark.errors import interrupted_by

    def cleanup_fails_after_ctrl_c() -> None:
        try:
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("Broken pipe")

    with pytest.raises(RuntimeError) as after:
        cleanup_fails_after_ctrl_c()
    assert interrupted_by(after.value)
    assert not interrupted_by(RuntimeError("Broken pipe"))
    assert not interrupted_by(ValueError("x"))


def test_reading_learned_state_before_fit_names_the_fix() -> None:
    """No Spark needed: the facade refuses before it touches anything, with one line, and the
    error is an AttributeError as scikit-learn's NotFittedError is."""
    from date_spark.errors import NotFittedError
    from date_spark.synthesizer import DateSynthesizer

    synth = DateSynthesizer(Config())
    calls = {
        "select()": synth.select,
        "utility()": synth.utility,
        "sample()": synth.sample,
        "kept_text()": synth.kept_text,
    }
    for what, call in calls.items():
        with pytest.raises(NotFittedError, match=r"call fit\(\) first") as err:
            call()
        assert str(err.value).startswith(what) and "\n" not in str(err.value)
        assert isinstance(err.value, AttributeError) and err.value.exit_code == 1
    assert synth.spark is None  # nothing was started
    assert not hasattr(synth, "selection_")
