"""Refuse fast: what `date-spark run` can check before a SparkSession starts, and the one-line
form `date-spark run data.csv --target y --out out/`.

Every refusal here must happen without Spark: `session` is replaced by a function that fails the
test if anything asks for a SparkSession."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from date_spark import cli
from date_spark.cli import build_parser, main
from date_spark.config import load_config
from date_spark.io import preflight
from date_spark.testing.planted import demo_credit


@pytest.fixture(autouse=True)
def no_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a SparkSession was requested before the input was refused")

    import date_spark.synthesizer as synth

    monkeypatch.setattr(synth, "session", refuse)
    monkeypatch.delenv("DATE_SPARK_TEST_UNSET_KEY", raising=False)


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    p = tmp_path / "credit.parquet"
    demo_credit(100).to_parquet(p, index=False)
    return p


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    p = tmp_path / "credit.csv"
    demo_credit(100).to_csv(p, index=False)
    return p


def refuse(capsys: Any, *argv: str, code: int = 2) -> str:
    """Run the CLI; it must exit with `code` and print exactly one line, on stderr."""
    got = main(["run", *argv])
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert got == code, captured.err
    assert len(lines) == 1 and lines[0].startswith("date-spark: error: "), captured.err
    return lines[0]


def test_missing_file(tmp_path: Path, capsys: Any) -> None:
    line = refuse(capsys, str(tmp_path / "nope.parquet"), "--target", "y", "--out", "o")
    assert "does not exist" in line and "nope.parquet" in line
    assert not Path("o").exists()


def test_glob_matching_nothing(tmp_path: Path, capsys: Any) -> None:
    line = refuse(
        capsys, str(tmp_path / "part-*.parquet"), "--target", "y", "--out", str(tmp_path / "o")
    )
    assert "matches no file" in line


def test_missing_target_named_with_the_columns_csv(
    csv_file: Path, tmp_path: Path, capsys: Any
) -> None:
    line = refuse(capsys, str(csv_file), "--target", "defaulted", "--out", str(tmp_path / "o"))
    assert "target column 'defaulted' is not in the input" in line
    assert "columns are: age, region, income" in line


def test_no_target_lists_the_columns(parquet: Path, tmp_path: Path, capsys: Any) -> None:
    line = refuse(capsys, str(parquet), "--out", str(tmp_path / "o"))
    assert "pass --target COLUMN" in line and "default" in line


def test_no_output_says_out(parquet: Path, capsys: Any) -> None:
    line = refuse(capsys, str(parquet), "--target", "default")
    assert "pass --out PATH" in line


def test_format_not_guessable(tmp_path: Path, capsys: Any) -> None:
    p = tmp_path / "data.txt"
    p.write_text("a,b\n1,2\n")
    line = refuse(capsys, str(p), "--target", "b", "--out", str(tmp_path / "o"))
    assert "--format parquet or --format csv" in line


def test_case_insensitive_duplicate_csv_header(tmp_path: Path, capsys: Any) -> None:
    """Spark's CSV reader would rename these to age0 / Age6; the header check refuses them."""
    p = tmp_path / "dup.csv"
    df = demo_credit(60)
    df["Age"] = df["age"]
    df.to_csv(p, index=False)
    line = refuse(capsys, str(p), "--target", "default", "--out", str(tmp_path / "o"))
    assert "duplicate column name 'Age' (also 'age')" in line


def test_reserved_prefix(tmp_path: Path, capsys: Any) -> None:
    p = tmp_path / "t.parquet"
    df = demo_credit(60)
    df["_date_arm"] = 1
    df.to_parquet(p, index=False)
    line = refuse(capsys, str(p), "--target", "default", "--out", str(tmp_path / "o"))
    assert "reserved prefix '_date_'" in line


@pytest.mark.parametrize(
    ("arrow_type", "value", "typename"),
    [
        (pa.list_(pa.string()), ["a"], "array<string>"),
        (pa.map_(pa.string(), pa.int64()), [("k", 1)], "map<string,bigint>"),
        (pa.struct([("a", pa.int64())]), {"a": 1}, "struct<a:bigint>"),
        (pa.binary(), b"\x00", "binary"),
    ],
)
def test_unsupported_type_and_the_advice_works(
    tmp_path: Path, capsys: Any, arrow_type: Any, value: Any, typename: str
) -> None:
    p = tmp_path / "t.parquet"
    t = pa.Table.from_pandas(demo_credit(60), preserve_index=False)
    pq.write_table(t.append_column("tags", pa.array([value] * t.num_rows, type=arrow_type)), p)
    line = refuse(capsys, str(p), "--target", "default", "--out", str(tmp_path / "o"))
    assert f"column 'tags' has unsupported type {typename}" in line
    assert "input.exclude: [tags]" in line
    cfg = load_config(
        [], [f"input.path={p}", "input.target=default", "input.exclude=[tags]", "output.path=o"]
    )
    preflight.check_input(cfg.input)  # the advice passes the check


def test_empty_and_too_small_parquet(tmp_path: Path, capsys: Any) -> None:
    empty, small = tmp_path / "empty.parquet", tmp_path / "small.parquet"
    demo_credit(10).iloc[:0].to_parquet(empty, index=False)
    demo_credit(12).to_parquet(small, index=False)
    assert "no rows" in refuse(capsys, str(empty), "--target", "default", "--out", "o1")
    assert "needs at least 40" in refuse(capsys, str(small), "--target", "default", "--out", "o2")


def test_output_overlapping_input(parquet: Path, capsys: Any) -> None:
    line = refuse(capsys, str(parquet), "--target", "default", "--out", str(parquet / "sub"))
    assert "overlaps the input" in line


def test_unset_key_variable_refused_before_spark(
    parquet: Path, tmp_path: Path, capsys: Any
) -> None:
    line = refuse(
        capsys,
        str(parquet), "--target", "default", "--out", str(tmp_path / "o"),
        "--set", "llm.provider=openai", "--set", "llm.base_url=http://127.0.0.1:9/v1",
        "--set", "llm.api_key_env=DATE_SPARK_TEST_UNSET_KEY",
    )  # fmt: skip
    assert "DATE_SPARK_TEST_UNSET_KEY" in line and "not set" in line
    assert not (tmp_path / "o").exists()


def test_missing_local_model_refused_before_spark(
    parquet: Path, tmp_path: Path, capsys: Any
) -> None:
    line = refuse(
        capsys,
        str(parquet), "--target", "default", "--out", str(tmp_path / "o"),
        "--set", f"llm.local.model_path={tmp_path / 'nope.gguf'}",
    )  # fmt: skip
    assert "llm.local.model_path" in line and "nope.gguf" in line


def test_the_library_run_refuses_a_missing_key_before_writing_anything(
    parquet: Path, tmp_path: Path
) -> None:
    """`DateSynthesizer.run()` (notebooks, the nightly job) checks the endpoint's
    prerequisites before it creates a run directory, as `date-spark run` does."""
    from date_spark.errors import DateSparkError
    from date_spark.synthesizer import DateSynthesizer

    cfg = load_config(
        [],
        [
            f"input.path={parquet}", "input.target=default", f"output.path={tmp_path / 'o'}",
            f"output.runs_dir={tmp_path / 'runs'}", "llm.provider=openai",
            "llm.base_url=http://127.0.0.1:9/v1", "llm.api_key_env=DATE_SPARK_TEST_UNSET_KEY",
        ],
    )  # fmt: skip
    with pytest.raises(DateSparkError, match="DATE_SPARK_TEST_UNSET_KEY"):
        DateSynthesizer(cfg).run()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "o").exists()


def test_interpolation_needs_no_key(parquet: Path, tmp_path: Path) -> None:
    cfg = load_config(
        [],
        [
            f"input.path={parquet}", "input.target=default", f"output.path={tmp_path / 'o'}",
            "llm.provider=openai", "llm.api_key_env=DATE_SPARK_TEST_UNSET_KEY",
            "generation.generator=interpolation",
        ],
    )  # fmt: skip
    preflight.check_run(cfg)


def test_one_line_form_sets_input_format_target_and_output(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["run", "data.csv", "--target", "y", "--out", "out/", "--set", "input.target=z"]
    )
    cfg = cli._config(args)
    assert cfg.input.path == "data.csv" and cfg.input.format == "csv"
    assert cfg.input.target == "y"  # the flags win over --set
    assert cfg.output.path == "out/"
    assert cfg.generation.generator == "llm" and cfg.llm.provider == "local"  # the defaults
    odd = build_parser().parse_args(["run", "it's data.parquet", "--target", "1"])
    cfg = cli._config(odd)
    assert cfg.input.path == "it's data.parquet" and cfg.input.format == "parquet"
    assert cfg.input.target == "1"


def test_format_of(tmp_path: Path) -> None:
    assert preflight.format_of("a/b.csv") == "csv"
    assert preflight.format_of("a/b.CSV.gz") == "csv"
    assert preflight.format_of("s3://bucket/t.parquet") == "parquet"
    assert preflight.format_of("a/b.json") is None
    spark_dir = tmp_path / "written"
    spark_dir.mkdir()
    (spark_dir / "_SUCCESS").write_text("")
    (spark_dir / ".part-0.crc").write_text("")
    pd.DataFrame({"a": [1]}).to_parquet(spark_dir / "part-0.snappy.parquet")
    assert preflight.format_of(str(spark_dir)) == "parquet"


def test_unexpected_error_is_one_line_with_a_traceback_file(
    parquet: Path, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(_cfg: Any) -> None:
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(preflight, "check_run", boom)
    code = main(["run", str(parquet), "--target", "default", "--out", str(tmp_path / "o")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1, lines
    assert "unexpected error: RuntimeError: something nobody planned for" in lines[0]
    crash = Path(lines[0].split("traceback in ", 1)[1].split(";", 1)[0])
    assert "Traceback" in crash.read_text() and "boom" in crash.read_text()
    crash.unlink()
