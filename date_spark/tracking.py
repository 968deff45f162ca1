"""MLflow tracking: one run per job with the flattened config (no secrets: config holds none), the
stage metrics and the artifacts. With no URI configured, a sqlite store under the runs directory;
with `tracking.enabled: false`, nothing is logged."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from date_spark.config import Config

log = logging.getLogger(__name__)

MLFLOW_PARAM_MAX = 6000
MLFLOW_KEY_MAX = 250
_KEY_UNSAFE = re.compile(r"[^\w\-./ ]", re.ASCII)


def metric_key(name: str) -> str:
    """A name MLflow accepts as a metric key (letters, digits, `_-./` and spaces): input column
    names can hold anything, so every other character becomes `_`."""
    return _KEY_UNSAFE.sub("_", name.replace(" ", "_"))[:MLFLOW_KEY_MAX]


def default_uri(runs_dir: str) -> str:
    return "sqlite:///" + str(Path(runs_dir).resolve() / "mlflow.db")


class Tracker:
    """A thin context manager over one MLflow run; every call is a no-op when disabled."""

    def __init__(self, cfg: Config, run_id: str) -> None:
        self.enabled = cfg.tracking.enabled
        self.cfg = cfg
        self.run_id = run_id
        self.mlflow_run_id: str | None = None

    def __enter__(self) -> Tracker:
        if not self.enabled:
            return self
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        uri = self.cfg.tracking.uri or default_uri(self.cfg.output.runs_dir)
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(self.cfg.tracking.experiment)
        run = mlflow.start_run(run_name=self.run_id, tags={"date_spark.run_id": self.run_id})
        self.mlflow_run_id = run.info.run_id
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

        mlflow.end_run(status="FAILED" if exc_type else "FINISHED")

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
