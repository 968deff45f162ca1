"""A new user's first run, as a real `date-spark run` process: the one-line form on their own CSV,
Ctrl-C (SIGINT to the process group, as a terminal sends it), the printed `--resume` line, and
what the terminal shows: our own short lines only (no Java, py4j or MLflow noise), a line at
least every 30 s, and at the end the output path, the report path and the MLflow run.

The run keeps nothing (`selection.keep_z: 50`), so it also shows the report written when nothing
was kept, saying why."""

from __future__ import annotations

import datetime as dt
import html
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest

from date_spark.testing.planted import demo_credit

OURS = re.compile(r"^(\d\d:\d\d:\d\d (warning: )?\S|date-spark: |to continue: )")


class Proc:
    """A CLI process in its own session; stderr lines are collected with arrival times."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(
            [sys.executable, "-m", "date_spark.cli", *argv],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.err: list[tuple[float, str]] = []
        self.out: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_err, daemon=True),
            threading.Thread(target=self._read_out, daemon=True),
        ]
        for r in self._readers:
            r.start()

    def _read_err(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.err.append((time.monotonic() - self.t0, line.rstrip("\n")))

    def _read_out(self) -> None:
        assert self.p.stdout is not None
        self.out.extend(self.p.stdout)

    def wait_for(self, text: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in ln for _, ln in self.err):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} on stderr: {self.lines()[-20:]}")

    def finish(self, timeout: float) -> tuple[int, str]:
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            raise
        for r in self._readers:
            r.join(timeout=10)
        return self.p.returncode, "".join(self.out)

    def lines(self) -> list[str]:
        return [ln for _, ln in self.err]


def assert_only_our_lines(lines: list[str]) -> None:
    noise = [ln for ln in lines if ln.strip() and not OURS.match(ln)]
    assert not noise, noise[:10]
    joined = "\n".join(lines)
    for word in ("Traceback", "py4j", "java.", "log4j", "WARN ", "INFO mlflow"):
        assert word not in joined, word


def max_gap(lines: list[str], started: dt.datetime) -> float:
    """The longest silence, from the process start through every timestamped line."""
    stamps = [started]
    for ln in lines:
        m = re.match(r"^(\d\d):(\d\d):(\d\d) ", ln)
        if m:
            t = started.replace(hour=int(m[1]), minute=int(m[2]), second=int(m[3]))
            while t < stamps[-1] - dt.timedelta(hours=12):  # past midnight
                t += dt.timedelta(days=1)
            stamps.append(t)
    return max((b - a).total_seconds() for a, b in itertools.pairwise(stamps))


@pytest.mark.slow
def test_ctrl_c_then_resume_as_a_new_user(tmp_path: Path) -> None:
    demo_credit(400).to_csv(tmp_path / "credit.csv", index=False)
    argv = [
        "run", "credit.csv", "--target", "default", "--out", "out",
        "--set", "generation.generator=interpolation", "--set", "generation.iterations=1",
        "--set", "selection.keep_z=50",
    ]  # fmt: skip

    # 1. Ctrl-C during discovery
    first = Proc(argv, tmp_path)
    first.wait_for("stage discovery: start", timeout=300)
    time.sleep(1.0)
    os.killpg(first.p.pid, signal.SIGINT)
    code, out = first.finish(timeout=180)
    lines = first.lines()
    assert code == 130, lines[-20:]
    assert_only_our_lines(lines)
    said = next(ln for ln in lines if ln.startswith("date-spark: interrupted"))
    rid = re.search(r"run (\S+) finished: prepare", said)
    assert rid, said
    run_id = rid[1]
    cont = next(ln for ln in lines if ln.startswith("to continue: "))
    words = shlex.split(cont.removeprefix("to continue: "))
    assert words[0] == "date-spark" and words[-2:] == ["--resume", run_id]
    assert words[1:-2] == argv
    assert not (tmp_path / "out").exists()

    # 2. the printed line finishes the run
    started = dt.datetime.now()
    second = Proc(words[1:], tmp_path)
    code, out = second.finish(timeout=900)
    lines = second.lines()
    assert code == 0, lines[-30:]
    assert_only_our_lines(lines)
    assert max_gap(lines, started.replace(microsecond=0)) <= 30, "\n".join(lines)
    assert any(ln.endswith("stage evaluation: start") for ln in lines)
    assert any("evaluation: test-split loss without partitions" in ln for ln in lines)

    printed = dict(
        re.match(r"^  (\w+):\s+(.*)$", ln).groups()  # type: ignore[union-attr]
        for ln in out.splitlines()
        if re.match(r"^  \w+:", ln)
    )
    assert any(ln.startswith(f"run {run_id} done: ") for ln in out.splitlines()), out
    assert {"output", "report", "mlflow"} <= set(printed), out
    assert printed["output"].endswith("-> out")
    report = Path(printed["report"])
    assert report.is_absolute() and report.is_file()
    page = report.read_text(encoding="utf-8")
    why = next(ln for ln in out.splitlines() if ln.startswith("kept 0 rows: "))
    why = why.removeprefix("kept 0 rows: ")
    assert "id='nothing-kept'" in page and html.escape(why[1:]) in page
    # the terminal says what the rows were worth and what the keep rule could have seen ...
    assert "rows: loss" in why and "cannot be seen" in why, out
    assert "<section id='keep'>" in page and "smallest visible gain" in page  # ... the page too

    # 3. MLflow: the database and the artifacts under output.runs_dir, nothing in ./mlruns
    runs_dir = tmp_path / "date_spark_runs"
    assert (runs_dir / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    mlflow_run = re.match(r"run (\w+) in experiment", printed["mlflow"])
    assert mlflow_run and "mlflow ui --backend-store-uri sqlite:///" in printed["mlflow"]
    stored = list((runs_dir / "mlartifacts" / mlflow_run[1]).rglob("evaluation_report.html"))
    assert len(stored) == 1
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs_dir / 'mlflow.db'}")
    both = client.search_runs(
        [client.get_experiment_by_name("date-spark").experiment_id],
        filter_string=f"tags.`date_spark.run_id` = '{run_id}'",
    )
    assert sorted(r.info.status for r in both) == ["FINISHED", "KILLED"]
