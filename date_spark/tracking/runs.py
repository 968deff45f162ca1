"""Run directories: each stage's result is saved under the run, so a run can be inspected and
resumed. Files are written atomically (`tracking.atomic`: temp file + rename): a crash never leaves
half a manifest.

A run remembers what it was made from: the resolved config and a fingerprint of the input (the
source, its schema, its row count, and its files' sizes and modification times, or a table's
version where the catalog keeps one). `--resume RUN_ID` alone restores the config; a resume is
refused, with what changed, when the input differs or when a changed key shapes a stage that
already finished (see `STAGE_KEYS`). Keys that only say how to reach the endpoint, how fast to
go, where to track, or how Spark runs (`NEUTRAL_KEYS`) may change freely, and so may keys of
stages still to run: a run stopped in generation by a too-small prompt budget resumes with a
larger one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from date_spark.config import NEUTRAL, flatten, keys_by_stage
from date_spark.errors import ConfigError, InputError
from date_spark.tracking.atomic import write_json_atomic

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from date_spark.config import Config

__all__ = [
    "NEUTRAL_KEYS",
    "STAGES",
    "STAGE_KEYS",
    "Run",
    "T",
    "check_resume_config",
    "check_resume_input",
    "config_changes",
    "fingerprint_changes",
    "input_fingerprint",
    "new_run_id",
    "open_run",
    "resume_config",
    "stage",
    "stage_of",
    "start_run",
]


log = logging.getLogger(__name__)
T = TypeVar("T")

STAGES = ("prepare", "discovery", "generation", "selection", "output", "evaluation")


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


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


def stage(
    run: Run | None,
    name: str,
    compute: Callable[[], T],
    load: Callable[[Path], T],
    save: Callable[[T, Path], object],
    summary: Callable[[T], Mapping[str, Any]],
) -> T:
    """One stage of a run: loaded from its directory when the manifest says it finished, else
    computed, saved and marked finished (`summary` goes in the manifest). No run: computed."""
    if run is None:
        return compute()
    directory = run.stage_dir(name)
    if run.is_done(name) and directory.exists():
        value = load(directory)
        log.info("stage %s: loaded from %s (finished earlier; not recomputed)", name, directory)
        return value
    value = compute()
    save(value, directory)
    run.finish_stage(name, dict(summary(value)))
    return value


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


# ----------------------------------------------------------------------------------------------
# What a run was made from
# ----------------------------------------------------------------------------------------------

# Config keys (prefixes) that shape each stage's result; a key shapes its stage and every later
# one. Keys that never change a result (`NEUTRAL_KEYS`): how to reach the endpoint and how fast,
# the response cache, tracking, the Spark session, and where runs live. Both derived from the
# config model (`stage` and `key_stages` on each section of config.py); a key the model does not
# know counts as shaping `prepare`.
_BY_STAGE = keys_by_stage()
if set(_BY_STAGE) - {*STAGES, NEUTRAL}:
    raise TypeError(f"config.py names no stage of {STAGES}: {set(_BY_STAGE) - {*STAGES, NEUTRAL}}")
STAGE_KEYS: Mapping[str, tuple[str, ...]] = {s: tuple(_BY_STAGE.get(s, ())) for s in STAGES}
NEUTRAL_KEYS: tuple[str, ...] = tuple(_BY_STAGE.get(NEUTRAL, ()))


def _matches(key: str, prefixes: Sequence[str]) -> bool:
    return any(
        key == p or (p.endswith(".") and key.startswith(p)) or key.startswith(p + ".")
        for p in prefixes
    )


def stage_of(key: str) -> str | None:
    """The first stage whose result `key` shapes; None for a neutral key."""
    if _matches(key, NEUTRAL_KEYS):
        return None
    for stage in STAGES:
        if _matches(key, STAGE_KEYS.get(stage, ())):
            return stage
    return "prepare"


def config_changes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, new value) for every leaf that differs."""
    a, b = flatten(dict(saved)), flatten(dict(now))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_resume_config(run: Run, cfg: Config) -> list[str]:
    """Refuse a resume whose config changes a finished stage's result; return the keys that did
    change (neutral ones, or ones of stages still to run)."""
    m = run.manifest()
    saved = m.get("config")
    if not isinstance(saved, dict):
        return []
    done = {s for s in STAGES if run.is_done(s)}
    blocking = []
    changed = []
    had = flatten(dict(saved))
    defaults = flatten(type(cfg)().redacted())
    for key, old, new in config_changes(saved, cfg.redacted()):
        stage = stage_of(key)
        changed.append(key)
        if key not in had and key in defaults and defaults[key] == new:
            continue  # a key newer than the run, left at its default: the upgrade is no change
        if stage is not None and _reached(stage, done):
            was, now = json.dumps(old, default=str), json.dumps(new, default=str)
            blocking.append(f"{key} {was} -> {now}")
    if blocking:
        raise ConfigError(
            f"run {run.run_id} cannot resume with a different config: {'; '.join(blocking)} "
            f"(these shape stages it already finished); drop those overrides to resume, or start "
            f"a new run without --resume"
        )
    return changed


def _reached(stage: str, done: set[str]) -> bool:
    """True when `stage` or a later one finished: its result already depends on the key."""
    later = STAGES[STAGES.index(stage) :]
    return any(s in done for s in later)


def resume_config(
    paths: Sequence[str | Path],
    overrides: Sequence[str],
    run_id: str,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The config of run `run_id` (under `output.runs_dir` as these layers resolve it), with what
    the user states again (files, environment, `--set`) on top."""
    from date_spark.config import load_config

    probe = load_config(paths, overrides, environ)
    run = open_run(probe.output.runs_dir, run_id)
    saved = run.manifest().get("config")
    if not isinstance(saved, dict):
        raise ConfigError(
            f"run {run_id!r} under {probe.output.runs_dir!r} has no saved config to resume from; "
            f"start a new run"
        )
    cfg = load_config(paths, overrides, environ, base=saved)
    from date_spark.secrets import has_mask

    for key, value in (("llm.base_url", cfg.llm.base_url), ("tracking.uri", cfg.tracking.uri)):
        if has_mask(value):
            raise ConfigError(
                f"run {run_id} saved {key} without its credentials ({value}); state it again "
                f"on this command line: --set {key}=URL (or better, keep credentials out of URLs)"
            )
    return cfg


def input_fingerprint(raw: DataFrame, source: Mapping[str, Any], rows: int) -> dict[str, Any]:
    """What identifies the input of a run: its source, schema, row count and, for file sources,
    its files (count, bytes, latest modification and a digest of every path, size and time). A
    Delta table's version is taken when the catalog has one."""
    fp: dict[str, Any] = {**source, "schema": raw.schema.simpleString(), "rows": int(rows)}
    files = _file_stats(raw)
    if files:
        fp["files"] = len(files)
        fp["bytes"] = sum(size for _, size, _ in files)
        fp["latest_modification"] = max(t for _, _, t in files)
        digest = hashlib.sha256()
        for path, size, mtime in sorted(files):
            digest.update(f"{path}|{size}|{mtime}\n".encode())
        fp["files_digest"] = digest.hexdigest()
    table = source.get("table")
    if table:
        version = _table_version(raw, str(table))
        if version is not None:
            fp["version"] = version
    return fp


def _file_stats(raw: DataFrame) -> list[tuple[str, int, str]]:
    """(path, bytes, modification time) of the files behind `raw`: from the file system when they
    are local (no Spark job), else from Spark's `_metadata` column (one pass, no data columns)."""
    try:
        paths = list(raw.inputFiles())
    except Exception:  # not a file source
        return []
    if not paths:
        return []
    local = [urlparse(p) for p in paths]
    if all(u.scheme in ("", "file") for u in local):
        out = []
        for p, u in zip(paths, local, strict=True):
            try:
                st = os.stat(u.path if u.scheme else p)
            except OSError:
                return []
            stamp = dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc).isoformat()
            out.append((p, int(st.st_size), stamp))
        return out
    try:
        from pyspark.sql import functions as F

        meta = (
            raw.select(
                F.col("_metadata.file_path").alias("p"),
                F.col("_metadata.file_size").alias("s"),
                F.col("_metadata.file_modification_time").alias("t"),
            )
            .distinct()
            .collect()
        )
    except Exception:  # a source without file metadata
        return []
    return [(str(r["p"]), int(r["s"]), str(r["t"])) for r in meta]


def _table_version(raw: DataFrame, table: str) -> int | None:
    try:
        row = raw.sparkSession.sql(f"DESCRIBE HISTORY {table} LIMIT 1").first()
    except Exception:  # not a versioned (Delta) table
        return None
    return int(row["version"]) if row is not None and "version" in row else None


def fingerprint_changes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words."""
    out = []
    names = {
        "path": "path",
        "table": "table",
        "format": "format",
        "rows": "row count",
        "files": "file count",
        "bytes": "size in bytes",
        "latest_modification": "latest file modification",
        "version": "table version",
    }
    for key, label in names.items():
        if key in saved and saved.get(key) != now.get(key):
            out.append(f"{label} {saved.get(key)} -> {now.get(key)}")
    if saved.get("schema") != now.get("schema"):
        out.append("schema changed")
    if not out and saved.get("files_digest") not in (None, now.get("files_digest")):
        out.append("files changed (same count, size and latest time)")
    return out


def check_resume_input(run: Run, now: Mapping[str, Any]) -> None:
    saved = run.manifest().get("input_fingerprint")
    if not isinstance(saved, dict):
        return
    changes = fingerprint_changes(saved, now)
    if changes:
        raise InputError(
            f"run {run.run_id} was made from a different input: {'; '.join(changes)}; restore "
            f"that input to resume, or start a new run without --resume"
        )
