"""The embedded local model: clear errors without it, and (slow tier) real SmolLM2 rows through
Spark. The slow tests run whenever llama_cpp is installed; `make test` installs it."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from date_spark.config import LlmConfig, LocalModelConfig
from date_spark.errors import ConfigError, EndpointError
from date_spark.llm import local
from date_spark.llm.gateway import requests_frame, run
from date_spark.llm.local import LocalModelServer, find_model, llama_available
from date_spark.llm.rows import RowSchema
from date_spark.llm.validation import validate_rows
from date_spark.schema import ColumnSpec, Kind, TableSchema

needs_llama = pytest.mark.skipif(
    not llama_available(),
    reason="llama-cpp-python[server] is not installed (make test installs it)",
)


def test_missing_server_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_SERVER_DEPS", ("date_spark_no_such_module_xyz",))
    with pytest.raises(EndpointError) as info:
        LocalModelServer(LocalModelConfig()).start()
    msg = str(info.value)
    assert "date_spark_no_such_module_xyz" in msg
    assert "date-spark[local-llm]" in msg and "make run" in msg and "llm.base_url" in msg


def test_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model_path"):
        find_model(LocalModelConfig(model_path=str(tmp_path / "nope.gguf")))


def _listening(url: str) -> bool:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


@pytest.mark.slow
@needs_llama
def test_server_stops_when_the_block_fails() -> None:
    srv = LocalModelServer(LocalModelConfig())
    with pytest.raises(RuntimeError, match="boom"), srv as url:
        with urllib.request.urlopen(f"{url}/models", timeout=5) as r:
            assert json.load(r)["data"][0]["id"] == "smollm2"
        raise RuntimeError("boom")
    assert not srv.running and srv.proc is None
    assert not _listening(url)


@pytest.mark.slow
@needs_llama
def test_real_local_model_returns_valid_rows(spark: Any, tmp_path: Path) -> None:
    table = TableSchema(
        (
            ColumnSpec("age", Kind.NUMERIC, "bigint", True, True),
            ColumnSpec("city", Kind.CATEGORICAL, "string"),
            ColumnSpec("label", Kind.CATEGORICAL, "string"),
        ),
        target="label",
        task="classification",
        classes=("no", "yes"),
    )
    schema = RowSchema.from_table(
        table, "age >= 30", domains={"city": ["Paris", "Rome"]}, ranges={"age": (18, 90)}, n_rows=3
    )
    messages = [
        {
            "role": "system",
            "content": "You write realistic rows for a table of people. Columns: age (integer "
            "years from 30 to 90), city (Paris or Rome), label (yes or no).",
        },
        {"role": "user", "content": "Write 3 rows as JSON."},
    ]
    df = requests_frame(
        spark,
        [(f"q{i}", messages, schema) for i in range(3)],
        seed=[0, 1, 3],
        temperature=[0.7, 0.7, 0.7],
    )
    # One llama.cpp thread: with Spark and other jobs on a 2-core machine, two spinning threads
    # were measured 10-40x slower than one.
    cfg = LlmConfig(
        provider="local",
        cache_path=str(tmp_path / "cache"),
        max_tokens=300,
        local=LocalModelConfig(n_threads=1),
    )
    with LocalModelServer(cfg.local) as url:
        out = run(df, cfg, base_url=url)
        again = run(df, cfg, base_url=url)  # seeded and cached: identical, no calls
    st = out.stats
    assert st.ok == 3 and st.calls == 3 and st.failed == 0
    assert st.completion_tokens > 0
    assert st.n_valid >= 1, st.rejected
    rows = [r for text in out.pandas["rows"] for r in json.loads(text)]
    assert validate_rows(schema, rows).n_valid == len(rows) == st.n_valid
    assert all(r["age"] >= 30 and r["city"] in ("Paris", "Rome") for r in rows)
    assert again.stats.calls == 0 and again.stats.cache_hits == 3
    assert sorted(again.pandas["rows"]) == sorted(out.pandas["rows"])


KILLED_PARENT = """
import sys, time
from date_spark.config import LocalModelConfig
from date_spark.llm.local import LocalModelServer
srv = LocalModelServer(LocalModelConfig(n_threads=1))
srv.start()
print(srv.proc.pid, srv.base_url, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
@needs_llama
def test_server_dies_with_a_killed_driver(tmp_path: Path) -> None:
    """A driver killed hard (SIGKILL, or `timeout`'s SIGTERM: no atexit) must not leave the model
    server running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "driver.py"
    script.write_text(KILLED_PARENT)
    root = Path(__file__).resolve().parents[2]
    driver = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=root
    )
    try:
        assert driver.stdout is not None
        pid_text, url = driver.stdout.readline().split()
        server_pid = int(pid_text)
        assert _listening(url)
    finally:
        driver.kill()
        driver.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        # A reaped-or-zombie child of init disappears quickly; poll until it does.
        time.sleep(0.2)
    else:
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the model server outlived its killed driver")
    assert not _listening(url)


@pytest.mark.slow
@needs_llama
def test_starting_the_server_leaves_the_spark_connection_alone(
    spark: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Measured: a `preexec_fn` (Python run in the forked child before exec) reset the driver's
    py4j connection, and every `make run` printed a 'Connection reset by peer' traceback."""
    import logging

    caplog.set_level(logging.INFO)
    assert spark.range(5).count() == 5  # a py4j connection is open and pooled
    with LocalModelServer(LocalModelConfig(n_threads=1)):
        assert spark.range(7).count() == 7
    text = caplog.text
    assert "Connection reset" not in text and "Exception while sending command" not in text
