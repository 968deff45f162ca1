"""Benchmark figures in benchmarks/README.md come from benchmarks/results/*.json, and every
benchmark has a results file saying where, when and with what it was measured."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from readme_table import BEGIN, END, README, render, splice  # noqa: E402
from recording import META_KEYS, RESULTS, load_results  # noqa: E402

# Benchmark scripts: the ones that write a results file (recording.py defines the writer).
SCRIPTS = sorted(
    p
    for p in (ROOT / "benchmarks").glob("*.py")
    if p.name != "recording.py" and "write_result(" in p.read_text()
)


def default_name(script: Path) -> str:
    m = re.search(r'"--name", default="([^"]+)"', script.read_text())
    assert m, f"{script.name} has no --name default"
    return m.group(1)


def test_every_benchmark_has_a_results_file() -> None:
    assert len(SCRIPTS) >= 5, [p.name for p in SCRIPTS]
    results = load_results()
    for script in SCRIPTS:
        name = default_name(script)
        assert name in results, f"no benchmarks/results/{name}.json: run {script.name}"


def test_results_files_say_where_when_and_what() -> None:
    results = load_results()
    assert results, f"no results in {RESULTS}"
    for name, r in results.items():
        missing = [k for k in META_KEYS if k not in r]
        assert not missing, f"{name}.json lacks {missing}"
        assert r["name"] == name and re.fullmatch(r"[0-9a-f]{40}", r["git_commit"] or "")
        assert r["cores"] and r["memory_gb"] and r["spark_master"]
        assert r["parameters"] and r["figures"], f"{name}.json holds no figures"


def test_readme_block_is_rendered_from_the_results() -> None:
    readme = README.read_text()
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1
    block = render(load_results())
    assert "not measured yet" not in block, "a benchmark in the README has no results file"
    assert splice(readme, block) == readme, (
        "benchmarks/README.md's benchmark block differs from benchmarks/results: a figure "
        "there has no result behind it (run `make bench-readme` after a benchmark)"
    )


def test_a_hand_edited_figure_is_caught() -> None:
    readme = README.read_text()
    start, end = readme.index(BEGIN), readme.index(END)
    digits = [m.start() for m in re.finditer(r"\d", readme[start:end])]
    assert digits, "the rendered block holds no figure"
    i = start + digits[len(digits) // 2]
    edited = readme[:i] + str((int(readme[i]) + 1) % 10) + readme[i + 1 :]
    assert splice(edited, render(load_results())) != edited


def test_the_benchmark_section_quotes_no_figure_outside_the_block() -> None:
    """Prose around the block may explain, but numbers come from the rendered block."""
    readme = README.read_text()
    section = readme[readme.index("# Benchmarks") :]
    outside = section[: section.index(BEGIN)] + section[section.index(END) + len(END) :]
    prose = re.sub(r"```.*?```", "", outside, flags=re.S)  # command blocks
    prose = re.sub(r"`[^`]*`", "", prose)  # commands and file names
    assert not re.findall(r"\d", prose), re.findall(r"[^\n]*\d[^\n]*", prose)
