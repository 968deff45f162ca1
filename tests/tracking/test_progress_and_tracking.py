"""The heartbeat that keeps a long stage talking, terminal log lines, and where MLflow keeps a
run's artifacts (beside its database under `output.runs_dir`, never `./mlruns`)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest

from date_spark import logs
from date_spark.config import load_config
from date_spark.tracking.mlflow_log import Tracker, tracking_uri, ui_command


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_heartbeat_speaks_when_a_stage_is_silent() -> None:
    root = logging.getLogger("date_spark")
    got, level = Collect(), root.level
    root.addHandler(got)
    root.setLevel(logging.INFO)
    try:
        with logs.Heartbeat("evaluation", interval=0.3):
            logging.getLogger("date_spark.evaluation").info("evaluation: fidelity of 5 rows")
            time.sleep(1.5)
    finally:
        root.removeHandler(got)
        root.setLevel(level)
    beats = [ln for ln in got.lines if "still running" in ln]
    assert len(beats) >= 2, got.lines
    assert beats[0].startswith("stage evaluation: still running after")
    assert "(evaluation: fidelity of 5 rows)" in beats[0]  # says what it is doing


def test_heartbeat_is_quiet_while_the_stage_talks() -> None:
    root = logging.getLogger("date_spark")
    got, level = Collect(), root.level
    root.addHandler(got)
    root.setLevel(logging.INFO)
    try:
        with logs.Heartbeat("generation", interval=0.5):
            for i in range(8):
                logging.getLogger("date_spark.generation").info("round %d", i)
                time.sleep(0.15)
    finally:
        root.removeHandler(got)
        root.setLevel(level)
    assert len(got.lines) == 8 and not any("still running" in ln for ln in got.lines)


def test_terminal_lines_are_short_and_py4j_noise_is_dropped(capsys: Any) -> None:
    logs.configure(verbose=False)
    logging.getLogger("date_spark.x").info("stage prepare: start")
    logging.getLogger("date_spark.x").warning("dropping 3 rows")
    logging.getLogger("py4j.clientserver").error("Error while sending or receiving")
    logging.getLogger().error("KeyboardInterrupt while sending command.")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0][8:] == " stage prepare: start" and err[0][2] == ":"
    assert err[1].endswith("warning: dropping 3 rows")


def _cfg(tmp_path: Path, *extra: str) -> Any:
    return load_config([], [f"output.runs_dir={tmp_path / 'runs'}", *extra])


def test_artifacts_live_under_runs_dir_not_mlruns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path, "tracking.experiment=first-hour")
    note = tmp_path / "note.txt"
    note.write_text("hello")
    with Tracker(cfg, "r1") as t:
        t.artifact(note, "notes")
    assert t.mlflow_run_id and t.artifact_uri
    runs = tmp_path / "runs"
    assert (runs / "mlflow.db").exists()
    stored = list((runs / "mlartifacts").rglob("note.txt"))
    assert len(stored) == 1 and stored[0].read_text() == "hello"
    assert not (tmp_path / "mlruns").exists()
    assert tracking_uri(cfg) == f"sqlite:///{runs.resolve() / 'mlflow.db'}"
    assert ui_command(cfg) == f"mlflow ui --backend-store-uri {tracking_uri(cfg)}"


def test_interrupted_run_is_killed_not_failed(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "tracking.experiment=interrupts")
    with pytest.raises(KeyboardInterrupt), Tracker(cfg, "r2") as t:
        raise KeyboardInterrupt
    mlflow.set_tracking_uri(tracking_uri(cfg))
    assert mlflow.get_run(t.mlflow_run_id).info.status == "KILLED"
    with pytest.raises(RuntimeError), Tracker(cfg, "r3") as t2:
        raise RuntimeError("x")
    assert mlflow.get_run(t2.mlflow_run_id).info.status == "FAILED"


def test_relative_sqlite_uri_keeps_artifacts_beside_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path, "tracking.uri=sqlite:///elsewhere/m.db", "tracking.experiment=rel")
    with Tracker(cfg, "r4") as t:
        pass
    assert t.artifact_uri is not None
    assert Path(t.artifact_uri.removeprefix("file://")).is_relative_to(
        (tmp_path / "elsewhere" / "mlartifacts").resolve()
    )
    assert os.path.exists(tmp_path / "elsewhere" / "m.db")


def test_mlflow_loads_ahead_and_a_refused_input_leaves_no_store_behind(tmp_path: Path) -> None:
    """`warm_store` loads MLflow while the input is read and opens a store that exists; a new
    store is created by the Tracker only (after the input is accepted), so nothing is written
    before. Off when tracking is off; a store that cannot open is left to the Tracker, whose
    error is the one the user sees."""
    from date_spark.tracking.mlflow_log import warm_store

    cfg = _cfg(tmp_path, "tracking.experiment=ahead")
    db = tmp_path / "runs" / "mlflow.db"
    opening = warm_store(cfg)
    assert opening is not None
    opening.join()
    assert not db.exists() and not db.parent.exists()  # nothing written ahead of the input
    with Tracker(cfg, "r5", opening=opening) as t:
        t.metrics({"rows_in": 3})
    assert db.exists()
    again = warm_store(cfg)  # the store exists now: opened ahead, and the run logs there
    assert again is not None
    with Tracker(cfg, "r6", opening=again) as t2:
        t2.metrics({"rows_in": 4})
    mlflow.set_tracking_uri(tracking_uri(cfg))
    assert mlflow.get_run(t.mlflow_run_id).data.metrics["rows_in"] == 3
    assert mlflow.get_run(t2.mlflow_run_id).data.metrics["rows_in"] == 4
    assert warm_store(_cfg(tmp_path, "tracking.enabled=false")) is None

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the store's folder should be")
    bad = _cfg(tmp_path, f"tracking.uri=sqlite:///{blocked}/m.db", "tracking.experiment=bad")
    failing = warm_store(bad)
    assert failing is not None
    failing.join()  # nothing raised in the thread; the Tracker raises it in the foreground
    with pytest.raises(Exception, match=r"not-a-dir|Not a directory|File exists"):
        Tracker(bad, "r7", opening=failing).__enter__()
