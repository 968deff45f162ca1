"""Warehouse tables as they are, and nothing silent (issues 23 and 24): a table of hostile cases
a new user meets, each with the exit code and the first line expected.

The first table holds the cases refused before Spark starts (the `no_spark` fixture fails the
test if anything asks for a SparkSession): each was an exit 1 (a Java trace, a PermissionError)
or a silent misread before. The Spark cases below run the whole job with the interpolation
generator, or the stub endpoint on 127.0.0.1."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from date_spark.cli import main
from date_spark.config import load_config

PASTED_KEY = "sk-proj-Zx81Qq0LmNp4Rt7Uv2Wy5Ab9Cd3Ef6Gh"
BARE_KEY = "a81f0c3e9b7d4e2fa0b1c2d3e4f5a6b7"  # a key without a dash
PASSWORD = "s3cr3t-Pa55"


def table(n: int = 600, seed: int = 3) -> pd.DataFrame:
    """The probe's table: age, income, region, signup date, y."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    income = np.round(rng.gamma(4.0, 3000.0, n), 2)
    region = rng.choice(["north", "south", "east", "west"], n)
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")
    y = ((age > 45) ^ (income > 12000) ^ (rng.random(n) < 0.1)).astype(int)
    return pd.DataFrame(
        {"age": age, "income": income, "region": region, "signup": signup.date, "y": y}
    )


def refuse(capsys: Any, argv: list[str], code: int = 2) -> str:
    """Run the CLI: it exits with `code` and prints exactly one line, on stderr."""
    got = main(argv)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert got == code, captured.err
    assert len(lines) == 1 and lines[0].startswith("date-spark: error: "), captured.err
    return lines[0]


def run_args(path: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        "run", str(path), "--target", "y", "--out", str(tmp / "out"),
        "--set", f"output.runs_dir={tmp / 'runs'}", "--set", "generation.generator=interpolation",
        "--set", "tracking.enabled=false", *extra,
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Refused before Spark starts
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def no_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_session(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a SparkSession was requested before the input was refused")

    import date_spark.synthesizer as synth

    monkeypatch.setattr(synth, "session", refuse_session)


def mixed_types(root: Path) -> Path:
    """One file `income` double, another string (before: Py4JJavaError ... collectToPython)."""
    d = root / "parts"
    d.mkdir()
    df = table()
    df.iloc[:300].to_parquet(d / "part-0.parquet", index=False)
    late = df.iloc[300:].copy()
    late["income"] = late["income"].astype(str)
    late.to_parquet(d / "part-1.parquet", index=False)
    return d


def damaged(root: Path) -> Path:
    d = root / "parts"
    d.mkdir()
    table().to_parquet(d / "part-0.parquet", index=False)
    good = (d / "part-0.parquet").read_bytes()
    (d / "part-1.parquet").write_bytes(good[: len(good) // 2])  # a copy cut short
    return d


def narrowed(root: Path) -> Path:
    """`bonus` in one file of two (before: dropped without a word)."""
    d = root / "parts"
    d.mkdir()
    df = table()
    df.iloc[:300].to_parquet(d / "part-0.parquet", index=False)
    df.iloc[300:].assign(bonus=1.5).to_parquet(d / "part-1.parquet", index=False)
    return d


def hadoop_crc(f: Path, chunk: int = 512) -> None:
    """The hidden checksum file Hadoop's local file system writes beside `f` (as Spark does)."""
    data = f.read_bytes()
    sums = [zlib.crc32(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    body = b"crc\x00" + struct.pack(">i", chunk) + b"".join(struct.pack(">I", c) for c in sums)
    f.with_name(f".{f.name}.crc").write_bytes(body)


def stale_checksum(root: Path) -> Path:
    """A directory written with checksums whose first file was rewritten afterwards (by pandas):
    before, Hadoop's ChecksumException as exit 1 and a Java stack trace in a crash file."""
    d = root / "parts"
    d.mkdir()
    df = table()
    for i, part in enumerate((df.iloc[:300], df.iloc[300:])):
        part.to_parquet(d / f"part-{i}.parquet", index=False)
        hadoop_crc(d / f"part-{i}.parquet")
    df.iloc[:250].to_parquet(d / "part-0.parquet", index=False)  # the .crc stays behind
    (d / "_SUCCESS").touch()
    return d


def stale_checksum_csv(root: Path) -> Path:
    d = root / "parts"
    d.mkdir()
    table().to_csv(d / "part-0.csv", index=False)
    hadoop_crc(d / "part-0.csv")
    with (d / "part-0.csv").open("a") as fh:
        fh.write("40,1000.5,north,2024-01-01,1\n")  # an appended row: same first chunk
    return d


def pandas_nanos(d: Path) -> Path:
    """pandas' default: timestamp[ns, tz] (before: Spark's raw PARQUET_TYPE_ILLEGAL)."""
    p = d / "t.parquet"
    df = table()
    df["seen"] = pd.Timestamp("2024-01-01", tz="Europe/Paris") + pd.to_timedelta(
        np.arange(len(df)), unit="min"
    )
    df.to_parquet(p, index=False)
    return p


def semicolons(d: Path) -> Path:
    p = d / "t.csv"
    table().to_csv(p, index=False, sep=";")
    return p


def tabs(d: Path) -> Path:
    p = d / "t.csv"
    table().to_csv(p, index=False, sep="\t")
    return p


def pipes(d: Path) -> Path:
    p = d / "t.csv"
    table().to_csv(p, index=False, sep="|")
    return p


def quoted_newlines(d: Path) -> Path:
    """A comment column with line breaks inside quotes (before: 600 rows became 686, `age` a
    string, exit 0)."""
    p = d / "t.csv"
    df = table()
    df["note"] = np.where(np.arange(len(df)) % 7 == 0, "line one\nline two", "ok")
    df.to_csv(p, index=False)
    return p


def plain(d: Path) -> Path:
    p = d / "t.parquet"
    table().to_parquet(p, index=False)
    return p


Case = tuple[str, Callable[[Path], Path], list[str], str]
CASES: list[Case] = [
    ("mixed-type parquet dir", mixed_types, [],
     "column 'income' has type double in "),
    ("damaged parquet file", damaged, [], "part-1.parquet' is not a readable Parquet file"),
    ("column in one file only", narrowed, [],
     "column 'bonus' is in 1 of the 2 files"),
    ("pandas nanosecond tz timestamps", pandas_nanos, [],
     "column 'seen' of "),
    ("parquet file changed after its checksum", stale_checksum, [],
     "part-0.parquet' does not match its checksum file '.part-0.parquet.crc'"),
    ("csv file changed after its checksum", stale_checksum_csv, [],
     "part-0.csv' does not match its checksum file"),
    ("semicolon csv", semicolons, [], "set input.csv_options.sep=';'"),
    # before: no hint unless the target was one of the split header's names
    ("semicolon csv, target mistyped", semicolons, ["--target", "label"],
     "set input.csv_options.sep=';'"),
    ("tab-separated csv", tabs, [], "set input.csv_options.sep='\\t'"),
    ("pipe-separated csv, target mistyped", pipes, ["--target", "Y"],
     "set input.csv_options.sep='|'"),
    ("csv with quoted newlines", quoted_newlines, [],
     "set input.csv_options.multiLine=true"),
    ("key pasted into llm.api_key_env", plain,
     ["--set", "llm.provider=openai", "--set", f"llm.api_key_env={PASTED_KEY}"],
     "looks like a key itself"),
    ("key without a dash pasted", plain,
     ["--set", "llm.provider=openai", "--set", f"llm.api_key_env={BARE_KEY}"],
     "looks like a key itself"),
]  # fmt: skip


@pytest.mark.usefixtures("no_spark")
@pytest.mark.parametrize(("name", "build", "extra", "first"), CASES, ids=[c[0] for c in CASES])
def test_refused_before_spark_with_one_line(
    tmp_path: Path,
    capsys: Any,
    name: str,
    build: Callable[[Path], Path],
    extra: list[str],
    first: str,
) -> None:
    path = build(tmp_path)
    before = {p: p.read_bytes() for p in ([path] if path.is_file() else path.rglob("*"))}
    line = refuse(capsys, [*run_args(path, tmp_path), "--set", "generation.generator=llm", *extra])
    assert first in line, line
    assert PASTED_KEY not in line and BARE_KEY not in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
    assert {p: p.read_bytes() for p in before} == before  # the input untouched


def test_checksums_that_match_pass_and_a_java_checksum_error_is_one_line(tmp_path: Path) -> None:
    """Spark's own directories carry .crc files: matching ones pass the check. A stale one on a
    file system the check cannot see surfaces from Spark as a ChecksumException: one line."""
    from date_spark.io.preflight import check_checksums, data_files
    from date_spark.io.read import read_failure

    d = tmp_path / "parts"
    d.mkdir()
    for i in range(2):
        table().iloc[i * 300 : (i + 1) * 300].to_parquet(d / f"part-{i}.parquet", index=False)
        hadoop_crc(d / f"part-{i}.parquet")
    files = data_files(d)
    assert len(files) == 2 and all(f.with_name(f".{f.name}.crc").exists() for f in files)
    check_checksums(files)  # no error
    err = RuntimeError(
        "An error occurred while calling o46.load.\n: org.apache.hadoop.fs.ChecksumException: "
        "Checksum error: file:/data/parts/part-0.parquet at 7168 exp: 1 got: 2\n\tat org..."
    )
    failure = read_failure(err, "/data/parts")
    assert failure is not None and "\n" not in str(failure)
    assert "'file:/data/parts/part-0.parquet' does not match its hidden .crc" in str(failure)


def test_mixed_types_name_both_files_and_nanos_say_how_to_rewrite(
    tmp_path: Path, capsys: Any, no_spark: None
) -> None:
    line = refuse(capsys, run_args(mixed_types(tmp_path), tmp_path))
    assert "part-0.parquet' but string in" in line and "part-1.parquet'" in line
    line = refuse(capsys, run_args(pandas_nanos(tmp_path), tmp_path))
    assert "nanosecond timestamps" in line and "coerce_timestamps='us'" in line


def test_separator_hint_without_a_target_and_the_hint_works(
    tmp_path: Path, capsys: Any, no_spark: None
) -> None:
    """The hint also when no target is given (before: none); and the option it suggests for a
    tab reads the header (before: the preflight split on a backslash)."""
    from date_spark.io.preflight import check_input

    src = tabs(tmp_path)
    argv = [a for a in run_args(src, tmp_path) if a not in ("--target", "y")]
    line = refuse(capsys, argv)
    assert line.startswith("date-spark: error: no target") and "sep='\\t'" in line, line
    check_input(load_config([], [f"input.path={src}", "input.format=csv", "input.target=y",
                                 "input.csv_options.sep='\\t'"]).input)  # fmt: skip


def test_csv_options_take_what_a_user_types() -> None:
    """Before: `multiLine=true` was refused ("Input should be a valid string")."""
    cfg = load_config([], ["input.csv_options.multiLine=true", "input.csv_options.samplingRatio=1"])
    assert cfg.input.csv_options["multiLine"] == "true"
    assert cfg.input.csv_options["samplingRatio"] == "1"
    assert cfg.input.csv_options["header"] == "true"  # the defaults stay


def test_the_pasted_key_is_never_printed(tmp_path: Path, capsys: Any, no_spark: None) -> None:
    for key in (PASTED_KEY, BARE_KEY):
        for argv in (
            ["validate-config", "--set", f"llm.api_key_env={key}"],
            [*run_args(plain(tmp_path), tmp_path), "--set", f"llm.api_key_env={key}"],
        ):
            code = main(argv)
            out = capsys.readouterr()
            assert code == 2
            assert key not in out.err + out.out and key[5:20] not in out.err + out.out
            assert "characters" in out.err  # says what it saw, without it


def test_url_credentials_never_shown(capsys: Any) -> None:
    cfg = load_config(
        [],
        [
            f"llm.base_url=http://user:{PASSWORD}@127.0.0.1:9/v1",
            f"tracking.uri=https://ml:{PASSWORD}@mlflow.example/",
        ],
    )
    assert cfg.llm.base_url is not None and PASSWORD in cfg.llm.base_url  # requests use it
    shown = json.dumps(cfg.redacted()) + json.dumps(cfg.flat())
    assert PASSWORD not in shown and "http://user:***@127.0.0.1:9/v1" in shown
    assert main(["validate-config", "--set", f"llm.base_url=http://u:{PASSWORD}@h/v1"]) == 0
    assert PASSWORD not in capsys.readouterr().out


# -- places: unwritable output, runs directory, $TMPDIR ----------------------------------------


@contextlib.contextmanager
def unwritable(d: Path) -> Iterator[Path]:
    """A directory this process cannot write: mode 555, and immutable when we are root (root
    ignores permission bits)."""
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a directory unwritable")
        subprocess.run(["chattr", "+i", str(d)], check=True)
    try:
        yield d
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(d)], check=True)
        d.chmod(0o755)


@pytest.mark.usefixtures("no_spark")
@pytest.mark.parametrize("where", ["output", "runs_dir", "TMPDIR"])
def test_unwritable_places_refused_before_spark(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Before: `Py4JJavaError ... o1022.parquet` after 44 s of work, or a PermissionError."""
    src = plain(tmp_path)
    with unwritable(tmp_path / "ro") as ro:
        argv = run_args(src, tmp_path)
        if where == "output":
            argv[argv.index("--out") + 1] = str(ro / "out")
            expected = f"output.path '{ro / 'out'}' cannot be written: '{ro}' is not writable"
        elif where == "runs_dir":
            argv += ["--set", f"output.runs_dir={ro / 'runs'}"]
            expected = "output.runs_dir"
        else:
            monkeypatch.setenv("TMPDIR", str(ro))
            expected = f"TMPDIR='{ro}' is not a directory this user can write"
        line = refuse(capsys, argv)
    assert expected in line, line


def _log_path_as(uid: int | None) -> tuple[int, str]:
    """`logs.spark_log_path()` in a forked child running as `uid` (None: as we are); (exit
    status, the path or the error)."""
    from date_spark import logs

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec (the venv's python may be unreadable to another user)
        os.close(r)
        code = 0
        try:
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            p = logs.spark_log_path()
            p.write_text("x")
            text = str(p)
        except BaseException as err:
            code, text = 1, f"{type(err).__name__}: {err}"
        os.write(w, text.encode())
        os._exit(code)
    os.close(w)
    with os.fdopen(r) as fh:
        text = fh.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def test_a_second_user_on_the_same_tmpdir_gets_their_own_log_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the first user's run made `$TMPDIR/date-spark-logs` (755) and every later user's
    run died in 3 s with a PermissionError. Two real users here: root, then `nobody`."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as a second user")
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    tmp_path.chmod(0o755)
    monkeypatch.setenv("TMPDIR", str(shared))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again
    (shared / "date-spark-logs").mkdir(mode=0o755)  # the old shared name, made by root
    code, first = _log_path_as(None)
    assert code == 0, first
    code, second = _log_path_as(65534)
    assert code == 0, second
    a, b = Path(first), Path(second)
    assert a.parent != b.parent and b.read_text() == "x"
    assert b.parent.stat().st_uid == 65534 and (b.parent.stat().st_mode & 0o777) == 0o700


# -- one writer per output -------------------------------------------------------------------


def test_a_second_run_into_an_output_being_written_is_refused(
    tmp_path: Path, capsys: Any, no_spark: None
) -> None:
    """Before: both runs printed "committed", and the later one's rows silently won."""
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from date_spark.io.locks import writer_lock
            with writer_lock({str(out)!r}, "20261207T000000Z-aaaaaa"):
                print("held", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        line = refuse(capsys, run_args(plain(tmp_path), tmp_path))
        assert f"output.path '{out}' is being written by run 20261207T000000Z-aaaaaa" in line
        assert "committed" not in line
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    from date_spark.io.locks import check_writer

    check_writer(str(out))  # a killed holder blocks nobody (the kernel dropped its lock)


# ----------------------------------------------------------------------------------------------
# Whole runs: a decimal money column and names a warehouse allows, end to end
# ----------------------------------------------------------------------------------------------

NAMES = {"age": "crl.tot", "region": "re`gion", "signup": "sign up é"}
BIG = 2**60


def warehouse_dir(root: Path) -> Path:
    """Two files a warehouse wrote: `income` decimal(10,2), dotted / backticked / spaced /
    unicode names, a bigint near 2**60, and `bonus` only in the second file."""
    d = root / "wh"
    d.mkdir()
    df = table().rename(columns=NAMES)
    rng = np.random.default_rng(1)
    df["big"] = (BIG + rng.integers(0, 10**6, len(df)) * 7919).astype("int64")
    t = pa.Table.from_pandas(df, preserve_index=False)
    i = t.schema.get_field_index("income")
    dec = pa.array([Decimal(f"{v:.2f}") for v in df["income"]], pa.decimal128(10, 2))
    t = t.set_column(i, pa.field("income", pa.decimal128(10, 2)), dec)
    pq.write_table(t.slice(0, 300), d / "part-0.parquet")
    late = t.slice(300)
    late = late.append_column("bonus", pa.array(np.full(late.num_rows, 1.5)))
    pq.write_table(late, d / "part-1.parquet")
    return d


def check_written(spark: Any, out: Path, src: Path) -> pd.DataFrame:
    back = spark.read.parquet(str(out))
    real = spark.read.option("mergeSchema", "true").parquet(str(src))
    kept = [f for f in back.schema.fields if not f.name.startswith("_date_")]
    assert [(f.name, f.dataType) for f in kept[: len(real.schema)]] == [
        (f.name, f.dataType) for f in real.schema.fields
    ]  # the input's exact names and types, `bonus` (merged) included
    rows = back.where("_date_synthetic").toPandas()
    assert len(rows) > 0
    assert all(isinstance(v, Decimal) and v.as_tuple().exponent == -2 for v in rows["income"])
    big = rows["big"].dropna().map(int)
    assert len(big) and all(v >= BIG for v in big)
    assert any(v % 256 for v in big)  # no float64 detour (which made them multiples of 256)
    return rows


@pytest.mark.usefixtures("spark")
def test_decimal_and_any_name_end_to_end_with_interpolation(tmp_path: Path, spark: Any) -> None:
    """Before: a decimal column crashed building the synthetic rows (`DecimalType(10,2) can not
    accept object 11788.03`), a dotted name crashed discovery (`UNRESOLVED_COLUMN crl`.`tot``),
    a backtick `INVALID_ATTRIBUTE_NAME_SYNTAX`, a bigint came back a multiple of 256, and a
    column in one file of two vanished."""
    src = warehouse_dir(tmp_path)
    argv = run_args(
        src, tmp_path, "--format", "parquet", "--set", "input.merge_schema=true",
        "--set", "selection.strategy=topk", "--set", "selection.confirm=false",
        "--set", "selection.rule=holm", "--set", "generation.rows_per_real_row=0",
        "--set", "generation.iterations=1",
    )  # fmt: skip
    assert main(argv) == 0
    rows = check_written(spark, tmp_path / "out", src)
    for rule_text in rows["_date_rule"].unique():  # rules name the real columns
        assert "_date_col" not in rule_text
    assert not (tmp_path / "out" / "_date_spark_writer.lock").exists()  # released


@pytest.mark.usefixtures("spark")
def test_decimal_and_dotted_name_with_the_stub_endpoint_and_no_password_kept(
    tmp_path: Path, spark: Any, capsys: Any
) -> None:
    """The same table through the LLM path (stub on 127.0.0.1), the endpoint URL carrying a
    password: it reaches no file under the runs directory and no MLflow param (before: the
    param `llm.base_url` and manifest.json held it in clear)."""
    import mlflow

    from date_spark.testing.stub import StubServer

    src = warehouse_dir(tmp_path)
    with StubServer() as url:
        secret_url = url.replace("http://", f"http://user:{PASSWORD}@")
        argv = run_args(
            src, tmp_path, "--format", "parquet", "--set", "input.merge_schema=true",
            "--set", "generation.generator=llm", "--set", "llm.provider=openai",
            "--set", f"llm.base_url={secret_url}", "--set", "llm.api_key_env=null",
            "--set", "llm.structured_output=json_object",
            "--set", f"llm.cache_path={tmp_path / 'cache'}",
            "--set", "generation.iterations=1", "--set", "generation.rows_per_request=20",
            "--set", "selection.strategy=topk", "--set", "selection.confirm=false",
            "--set", "selection.rule=holm", "--set", "generation.rows_per_real_row=0",
            "--set", "selection.model=decision_tree",
            "--set", "tracking.enabled=true",
            "--set", f"tracking.uri=sqlite:///{tmp_path / 'runs' / 'mlflow.db'}",
        )  # fmt: skip
        assert main(argv) == 0
    printed = capsys.readouterr()
    assert PASSWORD not in printed.out + printed.err
    check_written(spark, tmp_path / "out", src)
    for f in (tmp_path / "runs").rglob("*"):
        if f.is_file() and f.suffix != ".db":
            assert PASSWORD.encode() not in f.read_bytes(), f
    manifest = json.loads(next((tmp_path / "runs").glob("2*/manifest.json")).read_text())
    assert manifest["config"]["llm"]["base_url"].startswith("http://user:***@127.0.0.1")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    params = mlflow.get_run(manifest["mlflow_run_id"]).data.params
    assert params["llm.base_url"].startswith("http://user:***@")
    assert PASSWORD not in json.dumps(params)


@pytest.mark.usefixtures("spark")
def test_near_duplicate_labels_are_warned(spark: Any, caplog: Any) -> None:
    """Before: "Yes", "yes " and "YES" became three classes without a word."""
    from date_spark.config import InputConfig
    from date_spark.io.read import validate_and_profile
    from date_spark.schema import column_specs

    df = table(200)
    df["y"] = np.where(df["y"] == 1, "no", np.array(["Yes", "yes ", "YES", "Yes"] * 50))
    sdf = spark.createDataFrame(df.drop(columns=["signup"]))
    with caplog.at_level("WARNING", logger="date_spark"):
        validate_and_profile(sdf, column_specs(sdf.schema), InputConfig(target="y"))
    said = [r.getMessage() for r in caplog.records if "differ only in case" in r.getMessage()]
    assert len(said) == 1 and "'YES'" in said[0] and "'yes '" in said[0], said


# ----------------------------------------------------------------------------------------------
# Nothing silent: a loss too small to compare, runs killed with kill -9, evaluate's schema
# ----------------------------------------------------------------------------------------------


def test_a_near_zero_loss_gets_no_headline_verdict() -> None:
    """Before: `Brier -68.5% (5.1e-08 -> 1.6e-08), CI [-200.4%, -0.9%]: better`."""
    from date_spark.evaluation.utility import Gain

    g = Gain("synthetic gain (global)", 120, 5.1e-08, 1.6e-08, 1e-9, 6e-08, 0.0, 0.0)
    assert g.significant == 0 and g.negligible
    text = g.text("Brier score")
    assert "too small to compare" in text and "better" not in text and "%" not in text
    real = Gain("synthetic gain (global)", 120, 0.2, 0.15, 0.01, 0.09, 0.3, 0.2)
    assert real.significant == 1 and "better" in real.text("Brier score")


def test_a_run_killed_with_kill_9_is_marked_on_the_next_start(tmp_path: Path) -> None:
    """Before: a run whose process died stayed RUNNING in MLflow forever."""
    import mlflow

    from date_spark.tracking.mlflow_log import mark_dead_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time, mlflow
            from date_spark.tracking.mlflow_log import process_tags
            mlflow.set_tracking_uri({uri!r})
            mlflow.set_experiment("date-spark")
            run = mlflow.start_run(tags=process_tags())
            print(run.info.run_id, flush=True)
            time.sleep(300)
        """)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )  # fmt: skip
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name("date-spark")
    assert exp is not None
    assert mark_dead_runs(exp.experiment_id) == []  # alive: left alone
    child.kill()  # SIGKILL: no chance to end the run
    child.wait()
    assert mlflow.get_run(run_id).info.status == "RUNNING"
    assert mark_dead_runs(exp.experiment_id) == [run_id]
    run = mlflow.get_run(run_id)
    assert run.info.status == "KILLED" and "died" in run.data.tags["date_spark.ended"]


@pytest.mark.usefixtures("spark")
def test_evaluate_prints_schema_problems_on_the_terminal(tmp_path: Path, capsys: Any) -> None:
    """Before: a missing, uncastable or differently-cased column showed only inside the
    report; the terminal printed a fidelity score as if nothing were wrong."""
    real = tmp_path / "real.parquet"
    table().to_parquet(real, index=False)
    syn = table(200, seed=9).rename(columns={"region": "REGION"}).drop(columns=["signup"])
    syn["age"] = syn["age"].astype(str)
    syn.loc[:9, "age"] = "old"
    syn.to_parquet(tmp_path / "syn.parquet", index=False)
    code = main(
        ["evaluate", "--real", str(real), "--synthetic", str(tmp_path / "syn.parquet"),
         "--target", "y", "--out", str(tmp_path / "rep")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0
    assert "has 'REGION' where the real one has 'region'" in err
    assert "lacks column 'signup'" in err
    assert "column 'age': 10 synthetic value(s) do not fit" in err


@pytest.mark.usefixtures("spark")
@pytest.mark.parametrize("empty", ["--synthetic", "--real"])
def test_evaluate_on_an_empty_file_written_by_pandas(
    tmp_path: Path, capsys: Any, empty: str
) -> None:
    """Before: `df.iloc[:0].to_parquet()` types the object columns `null` (read as int) and the
    evaluation died casting them (`cannot cast "INT" to "DATE"`), a Java trace and exit 1."""
    full, hollow = tmp_path / "full.parquet", tmp_path / "empty.parquet"
    table().to_parquet(full, index=False)
    table().iloc[:0].to_parquet(hollow, index=False)
    real, syn = (full, hollow) if empty == "--synthetic" else (hollow, full)
    line = refuse(
        capsys,
        ["evaluate", "--real", str(real), "--synthetic", str(syn), "--target", "y",
         "--out", str(tmp_path / "rep")],
    )  # fmt: skip
    assert f"the {empty[2:]} table has no rows" in line, line
    assert not (tmp_path / "rep").exists()


# -- names and types a warehouse allows, end to end (issue 23) --------------------------------

LONG = "a_very_long_column_name_" + "x" * 176  # 200 characters
TYPED = {"age": "select", "region": "from", "income": LONG}
EPOCH_1700 = pd.Timestamp("1700-01-01")


def typed_table(root: Path, n: int = 600) -> Path:
    """SQL keywords and a 200-character name; a unicode name on a float32 column, an int64
    past 2**53, dates before 1900 and time-zone-aware timestamps (microseconds, as Spark reads
    them)."""
    rng = np.random.default_rng(5)
    df = table(n).drop(columns=["signup"]).rename(columns=TYPED)
    df["größe €"] = rng.normal(170.0, 9.0, n).astype("float32")
    df["id64"] = (2**53 + rng.integers(0, 10**6, n) * 2 + 1).astype("int64")  # odd: not a double
    df["born"] = (EPOCH_1700 + pd.to_timedelta(rng.integers(0, 70_000, n), unit="D")).date
    df["seen"] = pd.Timestamp("2024-03-01", tz="America/New_York") + pd.to_timedelta(
        rng.integers(0, 10**7, n), unit="s"
    )
    p = root / "typed.parquet"
    df.to_parquet(p, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
    return p


@pytest.mark.usefixtures("spark")
def test_keywords_long_and_unicode_names_and_edge_types_round_trip(
    tmp_path: Path, spark: Any
) -> None:
    """Read, generated, validated against the input's domain and written back in the input's
    exact names and types; the input rows of an `augmented` output equal the input (chispa)."""
    from chispa import assert_df_equality
    from pyspark.sql import functions as F

    src = typed_table(tmp_path)
    argv = run_args(
        src, tmp_path, "--set", "output.mode=augmented", "--set", "selection.rule=holm",
        "--set", "selection.strategy=topk", "--set", "selection.confirm=false",
        "--set", "generation.iterations=1",
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert main(argv) == 0
    # before: pandas' "Discarding nonzero nanoseconds" once per interpolated timestamp
    assert not [w for w in said if "nanoseconds" in str(w.message)]
    real = spark.read.parquet(str(src))
    back = spark.read.parquet(str(tmp_path / "out"))
    data = [f for f in back.schema.fields if f.name in real.columns]
    assert [(f.name, f.dataType) for f in data] == [(f.name, f.dataType) for f in real.schema]
    assert [str(t) for t in (f.dataType for f in data)][-4:] == [
        "FloatType()", "LongType()", "DateType()", "TimestampType()"
    ]  # fmt: skip
    cols = [f"`{c}`" for c in real.columns]
    kept_real = back.where(~F.col("_date_synthetic")).select(*cols)
    assert_df_equality(kept_real, real, ignore_row_order=True)
    syn = back.where("_date_synthetic").select(*cols).toPandas()
    assert len(syn) > 0
    lo = real.agg(*[F.min(f"`{c}`").alias(c) for c in real.columns]).first()
    hi = real.agg(*[F.max(f"`{c}`").alias(c) for c in real.columns]).first()
    assert lo is not None and hi is not None
    for c in ["select", LONG, "größe €", "id64", "born", "seen"]:
        values = syn[c].dropna()
        assert len(values) and all(lo[c] <= v <= hi[c] for v in values), c  # the domain
    assert set(syn["from"].dropna()) <= {"north", "south", "east", "west"}
    assert syn["id64"].dropna().map(int).min() > 2**53
    assert any(int(v) % 2 for v in syn["id64"].dropna())  # no float64 detour (even values)
    assert min(syn["born"].dropna()) < dt.date(1900, 1, 1)
    assert {type(v) for v in syn["born"].dropna()} == {dt.date}


# -- a decimal value past its precision is rejected at generation (issue 23) -------------------


def test_a_value_past_a_decimal_precision_is_out_of_domain() -> None:
    """Rounded half up to the scale, as the output writes it: 999.994 fits a decimal(5,2),
    999.996 (1000.00) does not, though both lie inside the range's margin."""
    from date_spark.llm.rows import RowSchema
    from date_spark.llm.validation import validate_rows
    from date_spark.schema import ColumnSpec, Kind, TableSchema

    schema = TableSchema(
        (ColumnSpec("income", Kind.NUMERIC, "double"), ColumnSpec("y", Kind.NUMERIC, "bigint",
         integral=True)),
        "y", "classification", (0, 1),
    )  # fmt: skip
    rows = [{"income": v, "y": 1} for v in (999.994, 999.996, -999.996, 500.0)]
    ranges = {"income": (-999.99, 999.99)}
    strict = validate_rows(
        RowSchema.from_table(schema, ranges=ranges, margin=0.1, decimals={"income": (5, 2)}), rows
    )
    assert [r["income"] for r in strict.rows] == [999.994, 500.0]
    assert strict.by_column_json() == {"income": {"out_of_domain": 2}}
    clip = validate_rows(
        RowSchema.from_table(
            schema, ranges=ranges, margin=0.1, decimals={"income": (5, 2)}, out_of_range="clip"
        ),
        rows,
    )
    assert [r["income"] for r in clip.rows] == [999.994, 999.99, -999.99, 500.0]
    assert clip.clipped == {"income": 2}
    plain_double = validate_rows(RowSchema.from_table(schema, ranges=ranges, margin=0.1), rows)
    assert plain_double.n_valid == 4  # no decimal: the margin decides


@pytest.mark.usefixtures("spark")
def test_decimal_overflow_counted_in_generation_rejects_not_dropped_at_output(
    tmp_path: Path, caplog: Any
) -> None:
    """Before: a generated 999.996 in a decimal(5,2) passed generation (inside the margin) and
    was dropped at output with only a log line, after selection had counted it."""
    import threading

    from date_spark.synthesizer import DateSynthesizer
    from date_spark.testing.stub import StubServer, default_rows

    df = table()
    df["income"] = np.round(np.clip(df["income"] / 20.0, 100.0, 999.99), 2)
    df.loc[0, "income"] = 999.99
    t = pa.Table.from_pandas(df, preserve_index=False)
    i = t.schema.get_field_index("income")
    dec = pa.array([Decimal(f"{v:.2f}") for v in df["income"]], pa.decimal128(5, 2))
    src = tmp_path / "money.parquet"
    pq.write_table(t.set_column(i, pa.field("income", pa.decimal128(5, 2)), dec), src)
    served, lock = [0], threading.Lock()

    def rows_past_precision(schema: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
        out = default_rows(schema, body)
        for r in out[::2]:
            r["income"] = 999.996  # 1000.00 once rounded: one digit too many
        with lock:
            served[0] += len(out[::2])
        return out

    with StubServer(row_factory=rows_past_precision) as url:
        cfg = load_config(
            [],
            [
                f"input.path={src}", "input.format=parquet", "input.target=y",
                f"output.path={tmp_path / 'out'}", f"output.runs_dir={tmp_path / 'runs'}",
                "tracking.enabled=false", "generation.generator=llm", "llm.provider=openai",
                f"llm.base_url={url}", "llm.api_key_env=null", "llm.structured_output=json_object",
                f"llm.cache_path={tmp_path / 'cache'}", "generation.iterations=1",
                "generation.rows_per_request=20", "selection.rule=holm",
                "selection.strategy=topk", "selection.confirm=false",
            ],
        )  # fmt: skip
        with caplog.at_level("WARNING", logger="date_spark"):
            result = DateSynthesizer(cfg).run()
    assert served[0] > 0
    rejected = result.summary["rejected_by_column"]
    assert rejected.get("income", {}).get("out_of_domain") == served[0], rejected
    assert not [r for r in caplog.records if "does not fit its decimal" in r.getMessage()]
    assert result.output["synthetic_rows"] > 0


# -- a quiet run on time-zone timestamps in a CSV (issue 23) ----------------------------------


def cli(*argv: str, timeout: float = 900) -> subprocess.Popen[str]:
    """A real `date-spark` process (`python -m date_spark.cli`), output piped."""
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[1]),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "date_spark.cli", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_time_zone_timestamps_in_a_csv_run_quietly(tmp_path: Path) -> None:
    """Before: the run succeeded but printed about 3000 lines on the terminal, a pandas
    `UserWarning: Discarding nonzero nanoseconds` (and its source line) per interpolated
    timestamp."""
    src = tmp_path / "tz.csv"
    df = table()
    df["seen"] = pd.Timestamp("2024-01-01", tz="Europe/Paris") + pd.to_timedelta(
        np.arange(len(df)) * 37, unit="min"
    )
    df.to_csv(src, index=False)  # `2024-01-01 00:00:00+01:00`
    proc = cli(*run_args(src, tmp_path, "--set", "generation.iterations=1"))
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-2000:]
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert not [ln for ln in lines if "Warning" in ln], "\n".join(lines)
    assert len(lines) < 60, f"{len(lines)} lines:\n" + "\n".join(lines)


# -- date-spark runs --clean; one writer per output table (issue 24) -------------------------


def test_runs_clean_marks_a_killed_run_and_lists_the_rest(tmp_path: Path, capsys: Any) -> None:
    """Before: there was no `date-spark runs` (argparse: invalid choice); a run killed with
    kill -9 stayed RUNNING until the next `date-spark run` started."""
    import mlflow

    runs = tmp_path / "runs"
    over = ["--set", f"output.runs_dir={runs}"]
    assert main(["runs", "--clean", *over]) == 0  # no store yet: none created
    assert "no MLflow store at sqlite:///" in capsys.readouterr().out
    assert not runs.exists()
    runs.mkdir()
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("date-spark")  # the store migrated once, before two processes use it
    script = textwrap.dedent(f"""
        import time, mlflow
        from date_spark.tracking.mlflow_log import process_tags
        mlflow.set_tracking_uri({uri!r})
        mlflow.set_experiment("date-spark")
        print(mlflow.start_run(tags=process_tags()).info.run_id, flush=True)
        time.sleep(300)
    """)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )
        for _ in range(2)
    ]
    try:
        ids = [c.stdout.readline().strip() for c in children if c.stdout is not None]
        children[0].kill()  # SIGKILL: no chance to end its run
        children[0].wait()
        assert main(["runs", *over]) == 0  # listing changes nothing
        listed = capsys.readouterr().out
        assert f"RUNNING {ids[0]}" in listed and "its process died" in listed
        assert f"RUNNING {ids[1]}" in listed and "2 run(s) RUNNING" in listed
        mlflow.set_tracking_uri(uri)
        assert mlflow.get_run(ids[0]).info.status == "RUNNING"
        assert main(["runs", "--clean", *over]) == 0
        out = capsys.readouterr().out
        assert f"marked KILLED: {ids[0]}" in out
        assert "1 run(s) marked KILLED, 1 still RUNNING" in out
        assert mlflow.get_run(ids[0]).info.status == "KILLED"
        assert mlflow.get_run(ids[1]).info.status == "RUNNING"  # alive: left alone
    finally:
        for c in children:
            c.kill()
            c.wait()


def test_a_second_run_into_an_output_table_being_written_is_refused(
    tmp_path: Path, capsys: Any, no_spark: None
) -> None:
    """Before: only output paths were locked; two runs into one `output.table` both wrote."""
    runs = tmp_path / "runs"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from date_spark.io.locks import writer_lock
            with writer_lock(None, "20261207T000000Z-bbbbbb", table="Sales.`Synth`",
                             runs_dir={str(runs)!r}):
                print("held", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        argv = [a for a in run_args(plain(tmp_path), tmp_path) if a not in ("--out",)]
        argv.remove(str(tmp_path / "out"))
        line = refuse(capsys, [*argv, "--set", "output.table=sales.synth"])
        assert "output.table 'sales.synth' is being written by run 20261207T000000Z-bbbbbb" in line
        assert "another table (output.table)" in line
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    from date_spark.io.locks import check_writer, writer_lock

    check_writer(None, table="sales.synth", runs_dir=str(runs))  # a killed holder blocks nobody
    with writer_lock(None, table="sales.synth", runs_dir=str(runs)):
        with pytest.raises(Exception, match="is being written"):  # noqa: SIM117
            with writer_lock(None, table="SALES.SYNTH", runs_dir=str(runs)):
                pass
        with writer_lock(None, table="sales.other", runs_dir=str(runs)):
            pass  # another table: its own lock


def test_two_real_runs_into_one_output_at_once(tmp_path: Path, spark: Any) -> None:
    """Two `date-spark run` processes started together on the same output: the lock decides
    once both have read their input; exactly one commits, the other exits 2 with one error
    line and never says "committed" (before: both printed it, the later rows silently won)."""
    src = plain(tmp_path)
    # rows kept, so the winner's write says "committed"
    argv = run_args(
        src, tmp_path, "--set", "generation.iterations=1", "--set", "selection.rule=holm",
        "--set", "selection.strategy=topk", "--set", "selection.confirm=false",
    )  # fmt: skip
    procs = [cli(*argv), cli(*argv)]
    done = [p.communicate(timeout=1500) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], [(c, e[-3000:]) for c, (_, e) in zip(codes, done, strict=True)]
    (win_out, win_err), (lose_out, lose_err) = done if codes[0] == 0 else (done[1], done[0])
    assert "committed" in win_out + win_err
    assert "committed" not in lose_out + lose_err and "Traceback" not in lose_err
    errors = [ln for ln in lose_err.splitlines() if ln.startswith("date-spark:")]
    assert len(errors) == 1 and errors[0] == lose_err.strip().splitlines()[-1], lose_err
    assert errors[0].startswith(
        f"date-spark: error: output.path '{tmp_path / 'out'}' is being written by "
    ), errors[0]
    assert lose_out.strip() == ""
    written = spark.read.parquet(str(tmp_path / "out"))
    run_ids = {r[0] for r in written.select("_date_run_id").distinct().collect()}
    winner = next(ln.split()[1] for ln in win_out.splitlines() if ln.startswith("run "))
    assert run_ids == {winner}  # only the winner's rows
    assert [d.name for d in (tmp_path / "runs").iterdir() if d.name.startswith("2")] == [winner]
    assert not (tmp_path / "out" / "_date_spark_writer.lock").exists()
