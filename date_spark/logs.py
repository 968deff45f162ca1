"""What a person sees on the terminal: short log lines, a heartbeat while a stage runs, and no Java
or py4j noise unless `--verbose`.

- `configure(verbose, quiet)`: one handler on the root logger. Lines read `13:02:07 stage
  discovery: ...`; warnings carry `warning:`. py4j's own log records (and the one it sends to the
  root logger on Ctrl-C) are dropped unless verbose.
- `spark_stderr()`: a local SparkSession this package starts writes Spark's log4j output and the
  JVM's own warnings to a file instead of the terminal. The JVM inherits the process's stderr when
  pyspark launches it, so the descriptor is pointed at the file for the launch only; the JVM keeps
  the file for its lifetime, the terminal gets it back at once.
- `Heartbeat`: while a stage runs, a line at least every `interval` seconds saying what it is
  doing (the last thing it logged) and for how long, so a long Spark job never looks hung.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "HEARTBEAT_S",
    "STATE",
    "Heartbeat",
    "configure",
    "log_dir",
    "spark_log_path",
    "spark_stderr",
]


# Loggers that speak for libraries, not for the job: warnings only (errors only for py4j, whose
# connection chatter is never actionable for a user).
_NOISY = ("urllib3", "httpx", "httpx2", "openai", "mlflow", "alembic", "matplotlib", "PIL")
_HANDLER_NAME = "date-spark-console"
HEARTBEAT_S = 20.0


class _State:
    verbose = False
    configured = False
    spark_log: Path | None = None
    handler: logging.StreamHandler[Any] | None = None


STATE = _State()


class _Format(logging.Formatter):
    """`HH:MM:SS message`, `HH:MM:SS warning: message` (full logger names only when verbose)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        msg = record.getMessage()
        if STATE.verbose:
            text = f"{stamp} {record.levelname} {record.name}: {msg}"
        elif record.levelno >= logging.WARNING:
            text = f"{stamp} {record.levelname.lower()}: {msg}"
        else:
            text = f"{stamp} {msg}"
        if record.exc_info and STATE.verbose:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _DropPy4j(logging.Filter):
    """py4j logs a traceback on the root logger when Ctrl-C lands inside a JVM call."""

    def filter(self, record: logging.LogRecord) -> bool:
        if STATE.verbose:
            return True
        if record.name.startswith("py4j"):
            return False
        return not ("py4j" in record.pathname or "KeyboardInterrupt while sending" in record.msg)


def configure(*, verbose: bool = False, quiet: bool = False) -> None:
    """Set up terminal logging for the command line (idempotent: tests call `main` repeatedly)."""
    STATE.verbose = verbose
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_Format())
    handler.addFilter(_DropPy4j())
    root.addHandler(handler)
    STATE.handler = handler
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    root.setLevel(logging.INFO if not quiet else logging.WARNING)
    logging.getLogger("date_spark").setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:  # mlflow sets its own level when it is imported, from this variable
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("py4j").setLevel(logging.INFO if verbose else logging.CRITICAL)
    if not verbose:  # pyspark's note that Arrow failed always precedes the error itself
        warnings.filterwarnings(
            "ignore", message="toPandas attempted Arrow optimization", category=UserWarning
        )
    STATE.configured = True


def log_dir() -> Path:
    """`$TMPDIR/date-spark-logs-<user>`: one per user (mode 700), so on a shared machine one
    user's directory never blocks another's run; a fresh private directory when even that one
    cannot be written (made by someone else, or read-only)."""
    try:
        user = str(os.getuid())  # type: ignore[attr-defined,unused-ignore]
    except AttributeError:  # not POSIX
        import getpass

        user = getpass.getuser()
    base = Path(tempfile.gettempdir()) / f"date-spark-logs-{user}"
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.access(base, os.W_OK | os.X_OK):
            return base
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="date-spark-logs-"))


def spark_log_path() -> Path:
    base = log_dir()
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    return base / f"spark-{stamp}-{os.getpid()}.log"


@contextlib.contextmanager
def spark_stderr() -> Iterator[Path | None]:
    """Around the start of a local JVM: its stderr goes to a log file unless verbose (or when the
    command line did not ask for quiet output: a library user keeps Spark's default behaviour)."""
    launched = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started the JVM already
    remote = bool(os.environ.get("SPARK_REMOTE") or os.environ.get("SPARK_CONNECT_MODE_ENABLED"))
    if STATE.verbose or not STATE.configured or launched or remote:
        yield None
        return
    path = spark_log_path()
    sys.stderr.flush()
    saved = os.dup(2)
    # our own lines (the heartbeat while Spark starts) keep going to the terminal
    terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    previous = None
    handler = STATE.handler
    with contextlib.suppress(AttributeError, OSError, ValueError):
        if handler is not None and handler.stream.fileno() == 2:
            previous = handler.setStream(terminal)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(fd, 2)
        STATE.spark_log = path
        yield path
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        if handler is not None and previous is not None:
            handler.setStream(previous)
        terminal.close()


class _LastLine(logging.Handler):
    """Remembers the last date_spark message and when it came."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.text = ""
        self.at = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        self.text = record.getMessage()
        self.at = time.monotonic()


class Heartbeat:
    """`with Heartbeat("evaluation"):` logs `stage evaluation: still running after 40 s (last:
    ...)` whenever the stage has been silent for `interval` seconds."""

    def __init__(self, stage: str, interval: float | None = None, what: str | None = None) -> None:
        self.stage = stage
        self.what = what or f"stage {stage}"
        self.interval = interval or HEARTBEAT_S
        self._stop = threading.Event()
        self._last = _LastLine()
        self._thread: threading.Thread | None = None
        self._log = logging.getLogger("date_spark.progress")

    def __enter__(self) -> Heartbeat:
        self._t0 = time.monotonic()
        logging.getLogger("date_spark").addHandler(self._last)
        self._thread = threading.Thread(
            target=self._beat, name=f"date-spark-heartbeat-{self.stage}", daemon=True
        )
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval)):
            now = time.monotonic()
            if now - self._last.at < self.interval:
                continue
            last = self._last.text
            doing = f" ({last})" if last and not last.startswith(f"{self.what}:") else ""
            self._log.info("%s: still running after %.0f s%s", self.what, now - self._t0, doing)
            # the heartbeat line itself counts as output, but keep the last real message
            self._last.text = last

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        logging.getLogger("date_spark").removeHandler(self._last)
