"""Run a script on Spark Connect (`SparkSession.builder.remote("local[2]")`) in a subprocess:
this process already holds a classic session, and one process cannot hold both."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONNECT_DEPS = ("grpc", "grpc_status", "google.rpc", "zstandard")


def have_connect() -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in CONNECT_DEPS)
    except ModuleNotFoundError:
        return False


needs_connect = pytest.mark.skipif(
    not have_connect(),
    reason="Spark Connect client (pyspark[connect]) not installed; pip install -e '.[dev]'",
)


@contextmanager
def connect_port() -> Iterator[None]:
    """Hold the local Connect port. A local Connect server always listens on 15002 (the client
    finds another port only under SPARK_TESTING, which changes the Python workers' behaviour),
    so the pytest-xdist workers of this machine take turns."""
    with open(Path(tempfile.gettempdir()) / "date-spark-connect-15002.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_script(tmp_path: Path, source: str, timeout: float) -> dict[str, Any]:
    """Run `source`; it prints one line `RESULT <json>`, which is returned."""
    script = tmp_path / "connect_script.py"
    script.write_text(source)
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        # small tables: keep the per-group steps in Spark, which Connect is here to exercise
        "DATE_SPARK_DRIVER_MAX_CELLS": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
    }
    with connect_port():
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result
