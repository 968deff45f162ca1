"""Benchmark results kept as data: every benchmark writes `benchmarks/results/<name>.json`.

Each file holds where and when it was measured (git commit, date, cores, memory, Spark master and
version, Python, the command line), the parameters and the figures. The benchmark table in
benchmarks/README.md is rendered from these files (`benchmarks/readme_table.py`), so a figure
there always has a file behind it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
META_KEYS = ("name", "git_commit", "git_dirty", "date", "cores", "memory_gb", "spark_master")


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _load() -> float | None:
    """The machine's 1-minute load average: other work on a shared box slows every figure."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _clean(obj: Any) -> Any:
    """JSON without NaN/inf (strict parsers reject them): missing figures are null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _clean(obj.item())
    return obj


def environment(spark: Any | None = None) -> dict[str, Any]:
    """Where and when: commit, date, machine, Spark ("none" when the benchmark uses no Spark)."""
    master: str | None = "none"
    version = None
    if spark is not None:
        try:
            master = spark.conf.get("spark.master")
        except Exception:
            master = None
        version = getattr(spark, "version", None)
    return {
        "git_commit": _git("rev-parse", "HEAD") or None,
        # results files are outputs, not code: a run after another benchmark is still clean
        "git_dirty": bool(
            _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")
        ),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "load_avg_1m_at_start": _load(),
        "spark_master": master,
        "spark_version": version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def write_result(
    name: str,
    parameters: dict[str, Any],
    figures: dict[str, Any],
    env: dict[str, Any],
    out_dir: Path | None = None,
) -> Path:
    """Write `<out_dir>/<name>.json` atomically (a partial file never replaces a good one)."""
    out = (out_dir or RESULTS) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = _clean(
        {
            "name": name,
            **env,
            "load_avg_1m_at_end": _load(),
            "parameters": parameters,
            "figures": figures,
        }
    )
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n")
    tmp.replace(out)
    print(f"\nresults -> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return out


def load_results(out_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every results file by name."""
    d = out_dir or RESULTS
    return {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}
