"""Ctrl-C during a run: remember that it arrived, so the run can tell an interruption (save what
finished, say how to resume) from a crash, while Spark's own handler still cancels running jobs."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["rewatch_sigint", "watch_sigint"]


@contextlib.contextmanager
def watch_sigint(synth: Any) -> Iterator[None]:
    """Remember that Ctrl-C arrived (then interrupt as Python does), so the run can tell an
    interruption from a crash; only on the main thread, where signals are delivered."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:  # started with Ctrl-C ignored (nohup, some schedulers)
        yield
        return
    _chain_sigint(synth, previous)
    synth.sigint_watched_ = True
    try:
        yield
    finally:
        synth.sigint_watched_ = False
        signal.signal(signal.SIGINT, previous)


def _chain_sigint(synth: Any, inner: Any) -> None:
    """Flag the interruption, then hand the signal on (to Spark's handler once a SparkContext
    has replaced ours: it cancels the running jobs before raising KeyboardInterrupt)."""

    def handler(signum: int, frame: Any) -> None:
        synth.sigint_ = True
        (inner if callable(inner) else signal.default_int_handler)(signum, frame)

    handler.date_spark = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, handler)


def rewatch_sigint(synth: Any) -> None:
    """Starting Spark installs its own SIGINT handler over ours: put ours back in front."""
    if not getattr(synth, "sigint_watched_", False):
        return
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGINT)
    if not getattr(current, "date_spark", False):
        _chain_sigint(synth, current)
