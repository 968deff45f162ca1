"""The input contract through the command line: each bad input is exit code 2, one line on stderr
naming the problem and the fix, nothing written, the input untouched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from date_spark.cli import main
from date_spark.testing.planted import demo_credit

ROOT = Path(__file__).resolve().parents[1]


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def good_table(tmp_path: Path) -> Path:
    p = tmp_path / "in.parquet"
    demo_credit(400).to_parquet(p, index=False)
    return p


def run_cli(
    tmp_path: Path, input_path: Path, capsys: Any, *extra: str, target: str = "default"
) -> tuple[int, str]:
    out = tmp_path / "out"
    runs = tmp_path / "runs"
    before = digest(input_path)
    code = main(
        [
            "run",
            "--set",
            f"input.path={input_path}",
            "--set",
            f"input.target={target}",
            "--set",
            f"output.path={out}",
            "--set",
            f"output.runs_dir={runs}",
            # the contract is what these tests check: no LLM, no tracking, one round
            "--set",
            "generation.generator=interpolation",
            "--set",
            "generation.iterations=1",
            "--set",
            "tracking.enabled=false",
            *extra,
        ]
    )
    err = capsys.readouterr().err.strip()
    if code != 0:
        assert not out.exists(), "bad input must write no output"
        assert not runs.exists(), "bad input must leave no run directory"
    assert digest(input_path) == before, "the input must be untouched"
    return code, err


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("date-spark: error:")]
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]


@pytest.mark.usefixtures("spark")
class TestBadInput:
    def test_missing_file(self, tmp_path: Path, capsys: Any) -> None:
        missing = tmp_path / "nope.parquet"
        code = main(
            [
                "run",
                "--set",
                f"input.path={missing}",
                "--set",
                "input.target=y",
                "--set",
                f"output.path={tmp_path / 'o'}",
                "--set",
                f"output.runs_dir={tmp_path / 'r'}",
            ]
        )
        assert_one_line_error(code, capsys.readouterr().err, "does not exist")
        assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()

    def test_missing_table(self, tmp_path: Path, capsys: Any) -> None:
        code = main(
            [
                "run",
                "--set",
                "input.table=nodb.nosuchtable",
                "--set",
                "input.target=y",
                "--set",
                f"output.path={tmp_path / 'o'}",
                "--set",
                f"output.runs_dir={tmp_path / 'r'}",
            ]
        )
        assert_one_line_error(code, capsys.readouterr().err, "'nodb.nosuchtable' was not found")

    def test_missing_target(self, tmp_path: Path, good_table: Path, capsys: Any) -> None:
        code, err = run_cli(tmp_path, good_table, capsys, target="defaulted")
        assert_one_line_error(code, err, "target column 'defaulted' is not in the input")

    def test_target_all_null(self, tmp_path: Path, capsys: Any) -> None:
        p = tmp_path / "t.parquet"
        df = demo_credit(100)
        df["default"] = pd.array([None] * len(df), dtype="Int64")
        df.to_parquet(p, index=False)
        code, err = run_cli(tmp_path, p, capsys)
        assert_one_line_error(code, err, "is null in every row")

    def test_single_class(self, tmp_path: Path, capsys: Any) -> None:
        p = tmp_path / "t.parquet"
        df = demo_credit(100)
        df["default"] = 1
        df.to_parquet(p, index=False)
        code, err = run_cli(tmp_path, p, capsys)
        assert_one_line_error(code, err, "single class")

    def test_empty_table(self, tmp_path: Path, capsys: Any) -> None:
        p = tmp_path / "t.parquet"
        demo_credit(10).iloc[:0].to_parquet(p, index=False)
        code, err = run_cli(tmp_path, p, capsys)
        assert_one_line_error(code, err, "no rows")

    def test_too_few_rows(self, tmp_path: Path, capsys: Any) -> None:
        p = tmp_path / "t.parquet"
        demo_credit(400).iloc[:12].to_parquet(p, index=False)
        code, err = run_cli(tmp_path, p, capsys)
        assert_one_line_error(code, err, "needs at least 40")

    @pytest.mark.parametrize(
        ("arrow_type", "value", "typename"),
        [
            (pa.list_(pa.string()), ["a"], "array<string>"),
            (pa.map_(pa.string(), pa.int64()), [("k", 1)], "map<string,bigint>"),
            (pa.struct([("a", pa.int64())]), {"a": 1}, "struct<a:bigint>"),
        ],
    )
    def test_unsupported_types(
        self, tmp_path: Path, capsys: Any, arrow_type: Any, value: Any, typename: str
    ) -> None:
        p = tmp_path / "t.parquet"
        t = pa.Table.from_pandas(demo_credit(100), preserve_index=False)
        t = t.append_column("tags", pa.array([value] * t.num_rows, type=arrow_type))
        pq.write_table(t, p)
        code, err = run_cli(tmp_path, p, capsys)
        assert_one_line_error(code, err, f"column 'tags' has unsupported type {typename}")
        assert "input.exclude: [tags]" in err
        # and the advice works
        code, _ = run_cli(tmp_path, p, capsys, "--set", "input.exclude=[tags]")
        assert code == 0

    def test_duplicate_column_names(self, tmp_path: Path, capsys: Any) -> None:
        p = tmp_path / "t.parquet"
        t = pa.Table.from_pandas(demo_credit(100), preserve_index=False)
        t = t.append_column("Age", t.column("age"))
        pq.write_table(t, p)
        code, err = run_cli(tmp_path, p, capsys)
        assert_one_line_error(code, err, "duplicate column")

    def test_duplicate_column_names_in_csv(self, tmp_path: Path, capsys: Any) -> None:
        """Spark's CSV reader renames `age`, `Age` to `age0`, `Age8` instead of failing; before,
        the run went on with the renamed columns."""
        p = tmp_path / "t.csv"
        df = demo_credit(100)
        df["Age"] = df["age"]
        df.to_csv(p, index=False)
        code, err = run_cli(tmp_path, p, capsys, "--set", "input.format=csv")
        assert_one_line_error(code, err, "duplicate column name 'Age' (also 'age')")

    @pytest.mark.parametrize("fmt", ["parquet", "csv"])
    def test_infinite_target(self, tmp_path: Path, capsys: Any, fmt: str) -> None:
        """Before: Parquet gave an ARITHMETIC_OVERFLOW traceback; CSV (where `inf` makes the
        column text) gave task advice that contradicted itself."""
        df = demo_credit(200)
        df["y"] = np.linspace(0.0, 1.0, len(df))
        df.loc[df.index[:3], "y"] = np.inf
        df.loc[df.index[3], "y"] = -np.inf
        p = tmp_path / f"t.{fmt}"
        df.to_parquet(p, index=False) if fmt == "parquet" else df.to_csv(p, index=False)
        code, err = run_cli(tmp_path, p, capsys, "--set", f"input.format={fmt}", target="y")
        assert_one_line_error(code, err, "target column 'y' has 4 non-finite values")
        assert "classification" not in err and "regression" not in err

    def test_constant_regression_target(self, tmp_path: Path, capsys: Any) -> None:
        p = tmp_path / "t.parquet"
        demo_credit(100).assign(y=2.5).to_parquet(p, index=False)
        code, err = run_cli(tmp_path, p, capsys, target="y")
        assert_one_line_error(code, err, "target 'y' is constant (2.5)")

    def test_runs_dir_inside_the_input(self, tmp_path: Path, capsys: Any) -> None:
        src = tmp_path / "data"
        src.mkdir()
        demo_credit(100).to_parquet(src / "part-0.parquet", index=False)
        before = digest(src)
        code = main(
            [
                "run",
                "--set", f"input.path={src}", "--set", "input.target=default",
                "--set", f"output.path={tmp_path / 'out'}",
                "--set", f"output.runs_dir={src / 'runs'}",
            ]
        )  # fmt: skip
        assert_one_line_error(code, capsys.readouterr().err, "output.runs_dir")
        assert digest(src) == before and not (src / "runs").exists()
        assert not (tmp_path / "out").exists()

    def test_reserved_prefix(self, tmp_path: Path, capsys: Any) -> None:
        p = tmp_path / "t.parquet"
        df = demo_credit(100)
        df["_date_arm"] = 1
        df.to_parquet(p, index=False)
        code, err = run_cli(tmp_path, p, capsys)
        assert_one_line_error(code, err, "reserved prefix '_date_'")

    def test_output_onto_input(self, tmp_path: Path, good_table: Path, capsys: Any) -> None:
        before = digest(good_table)
        code = main(
            [
                "run",
                "--set",
                f"input.path={good_table}",
                "--set",
                "input.target=default",
                "--set",
                f"output.path={good_table}",
                "--set",
                f"output.runs_dir={tmp_path / 'r'}",
            ]
        )
        assert_one_line_error(code, capsys.readouterr().err, "overlaps the input")
        assert digest(good_table) == before and not (tmp_path / "r").exists()

    def test_unknown_column_in_exclude(self, tmp_path: Path, good_table: Path, capsys: Any) -> None:
        code, err = run_cli(tmp_path, good_table, capsys, "--set", "input.exclude=[nosuch]")
        assert_one_line_error(code, err, "input.exclude names 'nosuch'")

    def test_malformed_yaml(self, tmp_path: Path, capsys: Any) -> None:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text("input:\n  target: [unclosed\n")
        code = main(["run", "--config", str(cfg)])
        assert_one_line_error(code, capsys.readouterr().err, "malformed YAML")

    def test_unknown_config_key(self, tmp_path: Path, capsys: Any) -> None:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text("discovery:\n  rhoo: 0.1\n")
        code = main(["run", "--config", str(cfg)])
        assert_one_line_error(code, capsys.readouterr().err, "unknown config key 'discovery.rhoo'")


@pytest.mark.usefixtures("spark")
def test_good_run_writes_manifest(tmp_path: Path, good_table: Path, capsys: Any) -> None:
    code, _ = run_cli(tmp_path, good_table, capsys)
    assert code == 0
    manifests = list((tmp_path / "runs").glob("*/manifest.json"))
    assert len(manifests) == 1
    import json

    m = json.loads(manifests[0].read_text())
    assert m["stages"]["prepare"]["status"] == "done"
    assert m["stages"]["prepare"]["profile"]["rows"] == 400
    assert m["config"]["llm"]["api_key_env"] == "OPENAI_API_KEY"


def test_validate_config_subprocess(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it: no Spark needed to check a config."""
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "date_spark.cli",
            "validate-config",
            "--config",
            str(ROOT / "conf/demo.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "target: default" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("llm:\n  api_key: sk-live-XYZ\n")
    res = subprocess.run(
        [sys.executable, "-m", "date_spark.cli", "validate-config", "--config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2
    assert "secrets are not accepted" in res.stderr and "sk-live-XYZ" not in res.stderr


def test_discover_writes_the_rules_fit_would_find(
    tmp_path: Path, good_table: Path, capsys: Any
) -> None:
    """`date-spark discover` goes through the facade's public `discover()`: the training split
    only, as `fit` runs it, so the rules it prints are the ones a run would generate for."""
    import json

    from date_spark.config import Config
    from date_spark.synthesizer import DateSynthesizer

    out = tmp_path / "rules-out"
    sets = ["input.path=" + str(good_table), "input.target=default", "tracking.enabled=false"]
    before = digest(good_table)
    code = main(["discover", *[a for s in sets for a in ("--set", s)], "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and digest(good_table) == before
    saved = json.loads((out / "rules.json").read_text())
    assert saved["dgrs"], "the demo table has rules to find"
    assert list((out / "rules").glob("*.parquet"))
    synth = DateSynthesizer(Config().with_overrides(dict(s.split("=", 1) for s in sets)))
    found = synth.discover()
    assert found is synth.rules_
    assert [d.rule.to_text() for d in found.dgrs] == [
        line.split("\t")[-1] for line in printed.splitlines() if "\tsupport=" in line
    ]
