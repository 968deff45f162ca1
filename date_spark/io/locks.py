"""One writer per output: a run holds an exclusive lock on its output location from the moment
its input passed every check until it ends, so a second run into the same output is refused with
one line instead of both printing "committed" and one silently replacing the other's rows.

The lock is `fcntl.flock` on `<output.path>/_date_spark_writer.lock` (Spark's readers skip files
starting with `_`). The kernel drops it when the process dies, `kill -9` included, so a stale lock
can never block a later run; the file records who holds it, for the refusal's message. An
`output.table` is locked by its name (backticks dropped, case folded) in
`<output.runs_dir>/_writer_locks/`: runs sharing a runs directory never write one table at once
(a catalog has no lock primitive here). Remote output paths are not locked; that is stated in
the log. No pyspark import: the command line checks the lock before Spark starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from date_spark.errors import OutputError

__all__ = ["LOCK_NAME", "TABLE_LOCKS", "check_writer", "writer_lock"]

log = logging.getLogger(__name__)

LOCK_NAME = "_date_spark_writer.lock"


TABLE_LOCKS = "_writer_locks"


def _lock_path(
    path: str | None, table: str | None = None, runs_dir: str | None = None
) -> Path | None:
    from date_spark.io.preflight import local_path

    if table:
        root = local_path(runs_dir) if runs_dir else None
        if root is None:
            return None
        key = table.replace("`", "").strip().lower()
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return root / TABLE_LOCKS / f"{re.sub(r'[^a-z0-9_.-]', '_', key)[:80]}-{digest}.lock"
    if not path:
        return None
    p = local_path(path)
    return None if p is None else p / LOCK_NAME


def _what(path: str | None, table: str | None) -> str:
    return f"output.table {table!r}" if table else f"output.path {path!r}"


def _holder(lock: Path) -> str:
    try:
        info: dict[str, Any] = json.loads(lock.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another run"
    run = info.get("run")
    who = f"{f'run {run}' if run else 'another run'} (pid {info.get('pid', '?')}"
    if info.get("since"):
        who += f", since {info['since']}"
    return who + ")"


def _refusal(what: str, lock: Path) -> OutputError:
    other = "table (output.table)" if what.startswith("output.table") else "location (--out PATH)"
    return OutputError(
        f"{what} is being written by {_holder(lock)}; wait for it to finish, or write this "
        f"run to another {other}"
    )


def _try_lock(lock: Path) -> int | None:
    """An open descriptor holding the lock, or None when another process holds it."""
    import fcntl

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file as we opened it: take the new one


def check_writer(
    path: str | None, *, table: str | None = None, runs_dir: str | None = None
) -> None:
    """Refuse now when another run is writing `path` (or `table`, locked under `runs_dir`): the
    command line, before Spark starts. Creates nothing."""
    lock = _lock_path(path, table, runs_dir)
    if lock is None or not lock.exists():
        return
    fd = _try_lock(lock)
    if fd is None:
        raise _refusal(_what(path, table), lock)
    os.close(fd)


@contextlib.contextmanager
def writer_lock(
    path: str | None,
    run_id: str = "",
    *,
    table: str | None = None,
    runs_dir: str | None = None,
) -> Iterator[None]:
    """Hold the output's lock for the block; OutputError when another run holds it."""
    lock = _lock_path(path, table, runs_dir)
    if lock is None:
        if path or table:
            log.info(
                "output %s is not a local path: not locked against a concurrent run", path or table
            )
        yield
        return
    created = not lock.parent.exists()
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _try_lock(lock)
    if fd is None:
        raise _refusal(_what(path, table), lock)
    try:
        info = {
            "run": run_id or None,
            "pid": os.getpid(),
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                lock.parent.rmdir()  # nothing was written: leave no empty output behind
