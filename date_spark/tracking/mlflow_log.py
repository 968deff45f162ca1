"""MLflow tracking: one run per job with the flattened config (no secrets: config holds none), the
stage metrics and the artifacts. With no URI configured, a sqlite store under the runs directory;
with `tracking.enabled: false`, nothing is logged.

Artifacts of a local store live beside its database (`<runs_dir>/mlartifacts` by default), never in
`./mlruns` of whatever directory the job was started from: MLflow's default artifact root is
relative to the working directory, so the experiment is created with an explicit one."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from date_spark.config import Config
from date_spark.errors import Interrupted, interrupted_by
from date_spark.secrets import mask_url

__all__ = [
    "ARTIFACTS_DIR",
    "MLFLOW_KEY_MAX",
    "MLFLOW_PARAM_MAX",
    "Tracker",
    "artifact_location",
    "default_uri",
    "mark_dead_runs",
    "metric_key",
    "process_tags",
    "runs_in_store",
    "tracking_uri",
    "ui_command",
    "warm_store",
]


log = logging.getLogger(__name__)

MLFLOW_PARAM_MAX = 6000
MLFLOW_KEY_MAX = 250
_KEY_UNSAFE = re.compile(r"[^\w\-./ ]", re.ASCII)


def metric_key(name: str) -> str:
    """A name MLflow accepts as a metric key (letters, digits, `_-./` and spaces): input column
    names can hold anything, so every other character becomes `_`."""
    return _KEY_UNSAFE.sub("_", name.replace(" ", "_"))[:MLFLOW_KEY_MAX]


ARTIFACTS_DIR = "mlartifacts"


def default_uri(runs_dir: str) -> str:
    return "sqlite:///" + str(Path(runs_dir).resolve() / "mlflow.db")


def tracking_uri(cfg: Config) -> str:
    """The store this job logs to; a relative sqlite path made absolute (it is printed)."""
    uri = cfg.tracking.uri or default_uri(cfg.output.runs_dir)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    return uri


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a local sqlite store; None for any other store."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def warm_store(cfg: Config) -> threading.Thread | None:
    """Start loading MLflow in the background (its import alone took 2-7 s of a 300-row job)
    while the input is read, and open an existing store; `Tracker` waits for it. A store that
    does not exist yet is created by the `Tracker`, after the input is accepted, so a refused
    input leaves no file behind. A failure here is left to the `Tracker`, which reports it in
    the foreground."""
    if not cfg.tracking.enabled:
        return None

    def work() -> None:
        try:
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            from mlflow.tracking import MlflowClient

            uri = tracking_uri(cfg)
            db = _sqlite_file(uri)
            if db is not None and not db.exists():  # the Tracker creates it, once input is ok
                import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - loaded ahead

                return
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as exc:  # reported by the Tracker if it persists
            log.debug("opening the MLflow store ahead failed: %s", mask_url(str(exc))[:200])

    thread = threading.Thread(target=work, name="date-spark-mlflow-open", daemon=True)
    thread.start()
    return thread


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of a local sqlite store keeps artifacts: beside the database.
    None for servers and other stores, which decide themselves."""
    db = _sqlite_file(uri)
    return None if db is None else (db.resolve().parent / ARTIFACTS_DIR).as_uri()


def ui_command(cfg: Config) -> str:
    """How a person opens this job's runs."""
    uri = mask_url(tracking_uri(cfg))
    if uri.startswith(("http://", "https://", "databricks")):
        return uri
    return f"mlflow ui --backend-store-uri {uri}"


PID_TAG = "date_spark.pid"
HOST_TAG = "date_spark.host"
START_TAG = "date_spark.process_start"
ENDED_TAG = "date_spark.ended"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux: field 22 of /proc/PID/stat), so a reused pid is
    not taken for the process that logged the run; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    """Who logs this run: the host, the pid and the pid's start time."""
    import socket

    tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    start = _process_start(os.getpid())
    if start is not None:
        tags[START_TAG] = start
    return tags


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return True
    now = _process_start(pid)
    return start is None or now is None or now == start


def runs_in_store(
    cfg: Config, *, clean: bool
) -> tuple[str, list[str], list[tuple[str, str, bool]]] | None:
    """`date-spark runs`: (the store, masked; the runs marked KILLED, when `clean`, because their
    process died; the RUNNING runs of `tracking.experiment` left, as (MLflow run id, run name,
    whether its process died)). None when there is no store (a local one is not created)."""
    import socket

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri(cfg)
    db = _sqlite_file(uri)
    if db is not None and not db.is_file():
        return None
    import mlflow

    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return mask_url(uri), [], []
    marked = mark_dead_runs(exp.experiment_id) if clean else []
    running = mlflow.search_runs(
        experiment_ids=[exp.experiment_id],
        filter_string="attributes.status = 'RUNNING'",
        output_format="list",
    )
    host, out = socket.gethostname(), []
    for r in running:
        tags = r.data.tags
        pid = tags.get(PID_TAG) or ""
        dead = (
            tags.get(HOST_TAG) == host
            and pid.isdigit()
            and not _alive(int(pid), tags.get(START_TAG))
        )
        out.append((r.info.run_id, r.info.run_name or "", dead))
    return mask_url(uri), marked, out


def mark_dead_runs(experiment_id: str) -> list[str]:
    """Runs of this experiment still RUNNING whose process, on this host, is gone (`kill -9`, an
    out-of-memory kill, a lost machine's reboot): marked KILLED, with a tag saying so. Runs of
    other hosts are left alone: whether their process lives cannot be told from here."""
    import socket

    import mlflow
    from mlflow.tracking import MlflowClient

    host = socket.gethostname()
    try:
        running = mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string="attributes.status = 'RUNNING'",
            output_format="list",
        )
    except Exception as err:  # a store that cannot search: nothing to clean, never fatal
        log.debug("tracking: cannot search for abandoned runs (%s)", err)
        return []
    client = MlflowClient()
    marked = []
    for r in running:
        tags = r.data.tags
        pid = tags.get(PID_TAG) or ""
        if tags.get(HOST_TAG) != host or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or _alive(int(pid), tags.get(START_TAG)):
            continue
        client.set_tag(r.info.run_id, ENDED_TAG, "its process died without ending the run")
        client.set_terminated(r.info.run_id, status="KILLED")
        marked.append(r.info.run_id)
    if marked:
        log.warning(
            "MLflow: %d run(s) whose process died without ending them marked KILLED: %s",
            len(marked),
            ", ".join(marked),
        )
    return marked


class Tracker:
    """A thin context manager over one MLflow run; every call is a no-op when disabled."""

    def __init__(
        self,
        cfg: Config,
        run_id: str,
        stopped: Callable[[BaseException], bool] = interrupted_by,
        opening: threading.Thread | None = None,
    ) -> None:
        self.enabled = cfg.tracking.enabled
        self.opening = opening  # `warm_store`'s thread: joined before the store is used
        self.stopped = stopped  # True when the error came of a Ctrl-C: the run is KILLED
        self.cfg = cfg
        self.run_id = run_id
        self.mlflow_run_id: str | None = None

    def __enter__(self) -> Tracker:
        if not self.enabled:
            return self
        if self.opening is not None:
            self.opening.join()  # MLflow loaded ahead; the store is used from here on only
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        uri = tracking_uri(self.cfg)
        db = _sqlite_file(uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        name = self.cfg.tracking.experiment
        exp = mlflow.get_experiment_by_name(name)
        wanted = artifact_location(uri)
        if exp is None:
            exp_id = mlflow.create_experiment(name, artifact_location=wanted)
        else:
            exp_id = exp.experiment_id
            if wanted and exp.artifact_location.rstrip("/") != wanted.rstrip("/"):
                log.warning(
                    "MLflow experiment %r keeps its artifacts at %s (set when it was created); "
                    "set tracking.experiment to a new name to keep them under %s",
                    name,
                    exp.artifact_location,
                    wanted,
                )
        mlflow.set_experiment(experiment_id=exp_id)
        mark_dead_runs(exp_id)
        self.artifact_uri: str | None = None
        run = mlflow.start_run(
            run_name=self.run_id, tags={"date_spark.run_id": self.run_id, **process_tags()}
        )
        self.mlflow_run_id = run.info.run_id
        self.artifact_uri = run.info.artifact_uri
        params = {k: v[:MLFLOW_PARAM_MAX] for k, v in self.cfg.flat().items()}
        mlflow.log_params(params)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.enabled or self.mlflow_run_id is None:
            return
        import mlflow

        if exc_type is None:
            status = "FINISHED"
        elif isinstance(exc, Interrupted) or (exc is not None and self.stopped(exc)):
            status = "KILLED"
        else:
            status = "FAILED"
        mlflow.end_run(status=status)

    def metrics(self, values: Mapping[str, Any], prefix: str = "") -> None:
        if not self.enabled:
            return
        import mlflow

        clean = {}
        for k, v in values.items():
            if isinstance(v, bool):
                v = float(v)
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                clean[metric_key(prefix + k)] = float(v)
        if clean:
            mlflow.log_metrics(clean)

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        import mlflow

        p = Path(path)
        if p.is_dir():
            mlflow.log_artifacts(str(p), artifact_path)
        elif p.exists():
            mlflow.log_artifact(str(p), artifact_path)

    def tag(self, key: str, value: str) -> None:
        if self.enabled:
            import mlflow

            mlflow.set_tag(key, value)
