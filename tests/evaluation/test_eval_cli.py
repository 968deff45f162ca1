"""`date-spark evaluate` end to end on Parquet files, and its bad-input exits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from date_spark.cli import main
from date_spark.report import HTML_NAME, JSON_NAME


@pytest.fixture
def files(tmp_path: Path, credit: dict[str, pd.DataFrame]) -> dict[str, Path]:
    out = {}
    near = credit["train"].iloc[:200].copy()
    near["utilization"] = near["utilization"] + 0.0005  # near copies of training rows
    for name, df in (("train", credit["train"]), ("holdout", credit["holdout"]), ("syn", near)):
        out[name] = tmp_path / f"{name}.parquet"
        df.to_parquet(out[name], index=False)
    return out


def test_evaluate_end_to_end(
    spark: Any, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Near copies of training rows (one column nudged), no --out: the report lands beside the
    synthetic table and the privacy flag is raised by distance alone."""
    code = main(
        [
            "evaluate",
            "--real", str(files["train"]),
            "--synthetic", str(files["syn"]),
            "--target", "default",
            "--holdout", str(files["holdout"]),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    out = files["syn"].parent / "syn.parquet_evaluation"
    assert "privacy TOO CLOSE: exact copies 0 of 200" in printed
    assert f"report: {out / HTML_NAME}" in printed
    data = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))
    assert data["synthetic_rows"] == 200 and data["real_rows"] == 600
    assert data["task"] == "classification"
    p = data["privacy"]
    assert p["too_close"] is True and p["exact_copies"] == 0
    assert "within the holdout's 5th-percentile distance" in p["reason"]
    assert p["synthetic_share_within_p05"] > 0.9
    assert 0.5 < data["fidelity"]["overall"] < 1.0
    shapes = {s["column"]: s["score"] for s in data["fidelity"]["column_shapes"]}
    assert shapes["utilization"] < shapes["age"]  # the nudged column moved, the rest did not


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--synthetic", "{missing}"], "--synthetic: input path"),
        (["--target", "nope"], "target column 'nope' is not in the real table"),
        (["--synthetic", "{other}"], "shares no column with the real table"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    spark: Any,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    other = tmp_path / "other.parquet"
    pd.DataFrame({"zzz": [1, 2, 3]}).to_parquet(other, index=False)
    subs = {"{missing}": str(tmp_path / "nope.parquet"), "{other}": str(other)}
    argv = ["evaluate", "--real", str(files["train"]), "--synthetic", str(files["syn"])]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        value = subs.get(value, value)
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    out = tmp_path / "report"
    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("date-spark: error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert not out.exists(), "bad input must write no report"
