"""Run directories: each stage's result is saved under the run, so a run can be inspected and
resumed. Files are written atomically (temp file + rename): a crash never leaves half a manifest."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from date_spark.errors import ConfigError

STAGES = ("prepare", "discovery", "generation", "selection", "output", "evaluation")


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Run:
    run_id: str
    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"run_id": self.run_id, "stages": {}}
        data: dict[str, Any] = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        return data

    def update(self, **fields: Any) -> None:
        m = self.manifest()
        m.update(fields)
        write_json_atomic(self.manifest_path, m)

    def finish_stage(self, stage: str, summary: dict[str, Any]) -> None:
        m = self.manifest()
        m.setdefault("stages", {})[stage] = {
            "status": "done",
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            **summary,
        }
        write_json_atomic(self.manifest_path, m)

    def is_done(self, stage: str) -> bool:
        return self.manifest().get("stages", {}).get(stage, {}).get("status") == "done"


def start_run(runs_dir: str | Path, run_id: str | None = None) -> Run:
    rid = run_id or new_run_id()
    root = Path(runs_dir) / rid
    root.mkdir(parents=True, exist_ok=True)
    return Run(rid, root)


def open_run(runs_dir: str | Path, run_id: str) -> Run:
    root = Path(runs_dir) / run_id
    if not (root / "manifest.json").exists():
        raise ConfigError(
            f"no run {run_id!r} under {str(runs_dir)!r} to resume; "
            f"check --resume and output.runs_dir"
        )
    return Run(run_id, root)
