"""`date-spark evaluate` end to end on Parquet files, and its bad-input exits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from date_spark.cli import main
from date_spark.evaluation.report import HTML_NAME, JSON_NAME


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
        (["--synthetic", "{missing}"], "does not exist; check --synthetic"),
        (["--real", "{missing}"], "does not exist; check --real"),
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
    assert "input.path" not in lines[0]  # the job's key means nothing to `evaluate`
    assert not out.exists(), "bad input must write no report"


def test_real_csv_against_synthetic_parquet(
    spark: Any, tmp_path: Path, credit: dict[str, pd.DataFrame], capsys: Any
) -> None:
    """Each table's format comes from its extension; before, one `--format` for both made this
    pair impossible (and a py4j trace)."""
    real = tmp_path / "real.csv"
    credit["train"].to_csv(real, index=False)
    syn = tmp_path / "syn.parquet"
    credit["fresh"].iloc[:100].to_parquet(syn, index=False)
    code = main(
        ["evaluate", "--real", str(real), "--synthetic", str(syn), "--out", str(tmp_path / "r")]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    data = json.loads((tmp_path / "r" / JSON_NAME).read_text(encoding="utf-8"))
    assert data["real_rows"] == 600 and data["synthetic_rows"] == 100
    # the CSV's inferred types are cast to the real schema: no column went missing
    assert data["validity"]["missing_columns"] == []


def test_augmented_output_counts_only_its_synthetic_rows(
    spark: Any, tmp_path: Path, credit: dict[str, pd.DataFrame], capsys: Any
) -> None:
    """An `augmented` output holds the input rows too (`_date_synthetic = false`); before, they
    counted as synthetic: "exact copies 2000 of 2002", fidelity 0.999."""
    real = tmp_path / "real.parquet"
    credit["train"].to_parquet(real, index=False)
    inp = credit["train"].assign(_date_synthetic=False, _date_rule=None)
    kept = credit["fresh"].iloc[:30].assign(_date_synthetic=True, _date_rule="age >= 18")
    out = tmp_path / "out"
    (out / "run_date=2026-11-20").mkdir(parents=True)
    pd.concat([inp, kept], ignore_index=True).to_parquet(
        out / "run_date=2026-11-20" / "part-0.parquet", index=False
    )
    code = main(
        ["evaluate", "--real", str(real), "--synthetic", str(out), "--out", str(tmp_path / "r")]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "exact copies 0 of 30" in printed
    data = json.loads((tmp_path / "r" / JSON_NAME).read_text(encoding="utf-8"))
    assert data["synthetic_rows"] == 30
    assert data["validity"]["rule_rows"] == 30
    assert "run_date" not in data["validity"]["extra_columns"]
