"""tools/check_structure.py: the three house rules (module size, function size, underscore names
across modules), each with its boundary, on small package trees; and a run on the real tree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "check_structure.py"
SUMMARY = re.compile(
    r"^structure: \d+ modules, \d+ over \d+ lines, \d+ functions over \d+ lines, "
    r"\d+ underscore imports across modules$"
)


def make_tree(root: Path, files: dict[str, str]) -> None:
    """A package `date_spark` under `root` with the given modules (and every `__init__.py`)."""
    package = root / "date_spark"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        init = path.parent / "__init__.py"
        if not init.exists():
            init.write_text("")
        path.write_text(text)


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines_of(count: int) -> str:
    return "".join(f"x{i} = {i}\n" for i in range(count))


def function_of(count: int, name: str = "f") -> str:
    """A function whose `def` line to last line spans `count` lines (one decorator above it)."""
    body = "".join("    pass\n" for _ in range(count - 1))
    return f"@staticmethod\ndef {name}() -> None:\n{body}"


def test_module_over_the_limit_is_reported(tmp_path: Path) -> None:
    make_tree(tmp_path, {"big.py": lines_of(801), "ok.py": lines_of(800)})
    result = run(tmp_path, "date_spark")
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines() == [
        "date_spark/big.py:1: module-size: 801 lines (limit 800); split it",
        "structure: 3 modules, 1 over 800 lines, 0 functions over 80 lines, "
        "0 underscore imports across modules",
    ]


def test_function_over_the_limit_is_reported(tmp_path: Path) -> None:
    method = "".join("    " + line + "\n" for line in function_of(81, "g").splitlines())
    make_tree(
        tmp_path,
        {
            "funcs.py": function_of(81) + function_of(80, "fine") + "class C:\n" + method,
        },
    )
    result = run(tmp_path, "date_spark")
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines() == [
        "date_spark/funcs.py:2: function-size: f is 81 lines (limit 80)",
        "date_spark/funcs.py:166: function-size: C.g is 81 lines (limit 80)",
        "structure: 2 modules, 0 over 800 lines, 2 functions over 80 lines, "
        "0 underscore imports across modules",
    ]


def test_underscore_name_imported_from_another_module_is_reported(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "b.py": "_x = 1\n",
            "a.py": "from date_spark.b import _x\n",
            "pkg/c.py": "from ..b import _x as y\n",
        },
    )
    result = run(tmp_path, "date_spark")
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines() == [
        "date_spark/a.py:1: underscore-import: _x from date_spark.b "
        "(make it public in its module's __all__)",
        "date_spark/pkg/c.py:1: underscore-import: _x from date_spark.b "
        "(make it public in its module's __all__)",
        "structure: 5 modules, 0 over 800 lines, 0 functions over 80 lines, "
        "2 underscore imports across modules",
    ]


def test_underscore_attribute_of_an_imported_module_is_reported(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "b.py": "_x = 1\n",
            "pkg/d.py": "_y = 2\n",
            "a.py": (
                "from date_spark import b\n"
                "import date_spark.pkg.d as dd\n"
                "import date_spark.pkg.d\n"
                "\n"
                "print(b._x, dd._y, date_spark.pkg.d._y)\n"
            ),
        },
    )
    result = run(tmp_path, "date_spark")
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines() == [
        "date_spark/a.py:5: underscore-import: _x from date_spark.b "
        "(attribute access b._x; make it public in its module's __all__)",
        "date_spark/a.py:5: underscore-import: _y from date_spark.pkg.d "
        "(attribute access date_spark.pkg.d._y; make it public in its module's __all__)",
        "date_spark/a.py:5: underscore-import: _y from date_spark.pkg.d "
        "(attribute access dd._y; make it public in its module's __all__)",
        "structure: 5 modules, 0 over 800 lines, 0 functions over 80 lines, "
        "3 underscore imports across modules",
    ]


def test_boundaries_and_allowed_forms_pass(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "exactly.py": lines_of(800),
            "funcs.py": function_of(80),
            "b.py": (
                "from __future__ import annotations\n"
                "\n"
                "__version__ = '1'\n"
                "_x = 1\n"
                "\n"
                "\n"
                "def use() -> int:\n"
                "    return _x\n"
            ),
            "a.py": (
                "from date_spark import __version__\n"
                "from date_spark.b import __version__ as v, use as _use\n"
                "from date_spark import b\n"
                "\n"
                "print(v, _use, b.__name__, b.use, b.__version__)\n"
            ),
        },
    )
    result = run(tmp_path, "date_spark")
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        "structure: 5 modules, 0 over 800 lines, 0 functions over 80 lines, "
        "0 underscore imports across modules",
    ]


def test_clean_tree_exits_zero_with_the_default_root(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": "def f() -> int:\n    return 1\n"})
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stdout == (
        "structure: 2 modules, 0 over 800 lines, 0 functions over 80 lines, "
        "0 underscore imports across modules\n"
    )


def test_limits_are_options(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": lines_of(11)})
    result = run(tmp_path, "date_spark", "--max-module-lines", "10", "--max-function-lines", "5")
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines()[0] == (
        "date_spark/a.py:1: module-size: 11 lines (limit 10); split it"
    )
    assert "0 functions over 5 lines" in result.stdout.splitlines()[-1]


@pytest.mark.skipif(not (REPO / "date_spark").is_dir(), reason="needs the source tree")
def test_runs_on_the_real_tree() -> None:
    result = run(REPO, "date_spark")
    assert result.returncode in (0, 1), result.stderr
    assert result.stderr == ""
    out = result.stdout.splitlines()
    assert SUMMARY.match(out[-1]), out[-1]
    assert out[:-1] == sorted(
        out[:-1], key=lambda line: (line.split(":")[0], int(line.split(":")[1]))
    )
