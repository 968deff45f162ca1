"""Shared parts of the "where users run it" tiers: a small planted-regime table, a stub LLM that
answers with correctly labelled rows, the settings that keep one job small, and a process helper
that stops everything it started (process groups, also on failure or timeout).

Every tier runs real processes against a real HTTP stub on 127.0.0.1; nothing is monkeypatched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as pads
import pytest

from date_spark.testing.planted import planted_regimes
from date_spark.testing.stub import StubServer, planted_rows

ROOT = Path(__file__).resolve().parents[2]
TARGET = "y"
TABLE_ROWS = 1000

# One job sized for a 2-core machine shared with other work: one generation round, few rules,
# no MLflow. The table's labels are noisy (20% flipped) and the stub answers with clean labels, so
# generated rows help and every surface writes synthetic rows.
LABEL_NOISE = 0.2
SMALL_JOB: tuple[str, ...] = (
    "discovery.min_rows=20",
    "discovery.max_candidates_per_level=12",
    "generation.iterations=1",
    "generation.max_rules=3",
    "generation.requests_per_rule=1",
    "generation.rows_per_request=60",
    "generation.tree_max_depth=2",
    "generation.example_blocks=2",
    "generation.example_rows=4",
    "selection.budget_rows=40",
    # Top-k keeps the best candidate arms unchecked (no confirmation test); whether the bandit
    # keeps an arm is the selection tests' business, not the surfaces'.
    "selection.rule=holm",  # the paper's search, so that top-k applies
    "selection.strategy=topk",
    "selection.top_k=2",
    "selection.confirm=false",
    "generation.rows_per_real_row=0",  # requests_per_rule above, not 3 rows per real row
    "selection.model=decision_tree",  # fits in 5 ms, the default boosting in 200 ms
    "tracking.enabled=false",
)
LOCAL_SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.ui.showConsoleProgress": "false",
}


def sets(items: Sequence[str]) -> list[str]:
    """`--set` arguments for the CLI / spark-submit."""
    out: list[str] = []
    for item in items:
        out += ["--set", item]
    return out


def stub_llm(url: str) -> list[str]:
    """Overrides that point the job at the stub (OpenAI protocol, no key)."""
    return [
        "llm.provider=openai",
        f"llm.base_url={url}",
        "llm.api_key_env=null",
        "llm.structured_output=json_object",
        "llm.max_retries=1",
        "llm.timeout_s=60",
    ]


# ------------------------------------------------------------------------------------------------
# The table and the stub
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def surface_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 rows of the planted-regime table (x0..x6, c0, y; 20% of labels flipped), Parquet."""
    path = tmp_path_factory.mktemp("surface-input") / "planted.parquet"
    df = planted_regimes(TABLE_ROWS, n_features=7, noise=LABEL_NOISE, seed=11)
    df = df.drop(columns=["regime"])
    df.to_parquet(path, index=False)
    return path


@pytest.fixture()
def stub() -> Iterator[StubServer]:
    """A real Chat Completions server on 127.0.0.1 in this process; Spark executors in other
    processes reach it over HTTP."""
    server = StubServer(row_factory=planted_rows(TARGET))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: the project's Python for Spark's Python workers."""
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONUNBUFFERED": "1",
        # the surfaces' tables are small: keep every per-group step on the executors, which is
        # what these tiers are here to exercise (`date_spark.runtime.placement`)
        "DATE_SPARK_DRIVER_MAX_CELLS": "0",
    }
    env.pop("SPARK_HOME", None)  # always the Spark that ships in the pyspark package
    env.update(extra)
    return env


class Processes:
    """Starts processes in their own process group, remembers them, stops them all (TERM, then
    KILL) on `stop_all()`; a process group also holds what the process started (executors,
    Python workers)."""

    def __init__(self) -> None:
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(
        self, cmd: Sequence[str], log: Path, *, env: dict[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                list(cmd),
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(cwd or ROOT),
                start_new_session=True,
            )
        self.procs.append((proc, log))
        return proc

    def run(
        self,
        cmd: Sequence[str],
        log: Path,
        *,
        env: dict[str, str],
        timeout: float,
        cwd: Path | None = None,
    ) -> tuple[int, str]:
        """Run to completion; (exit code, output). A timeout stops the process group and fails."""
        proc = self.start(cmd, log, env=env, cwd=cwd)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            pytest.fail(f"{cmd[0]} did not finish in {timeout:.0f}s:\n{tail(log)}")
        self.stop(proc)  # anything it left behind in its group
        return code, log.read_text(errors="replace")

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace_s)
                # the leader is gone; make sure the rest of its group is too
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for proc, _ in reversed(self.procs):
            self.stop(proc)

    def alive(self) -> list[int]:
        return [p.pid for p, _ in self.procs if p.poll() is None]


@pytest.fixture()
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return f"(no log at {path})"


def wait_for_line(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) before {needle!r}:\n{tail(path)}")
        time.sleep(0.5)
    pytest.fail(f"no {needle!r} after {timeout:.0f}s:\n{tail(path)}")


def last_json(output: str, marker: str = "RESULT ") -> dict[str, Any]:
    lines = [ln for ln in output.splitlines() if ln.startswith(marker)]
    assert lines, f"no {marker.strip()} line in the output:\n{output[-4000:]}"
    return dict(json.loads(lines[-1][len(marker) :]))


# ------------------------------------------------------------------------------------------------
# The built distribution
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def built_dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """sdist + wheel built as a user would (`python -m build`, isolated build environment; the
    wheel is built from the sdist, so the sdist is complete too)."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = sorted(out.glob("*.whl"))
    sdists = sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0], "dir": out}


# ------------------------------------------------------------------------------------------------
# Reading outputs without Spark
# ------------------------------------------------------------------------------------------------


def read_output(path: Path) -> pd.DataFrame:
    """A date-partitioned Parquet output (run_date=YYYY-MM-DD/...), read with pyarrow."""
    ds = pads.dataset(str(path), format="parquet", partitioning="hive")
    df = ds.to_table().to_pandas()
    if "run_date" in df:
        df["run_date"] = df["run_date"].astype(str)
    return df


def output_columns(path: Path) -> list[str]:
    return list(pads.dataset(str(path), format="parquet", partitioning="hive").schema.names)
