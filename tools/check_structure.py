"""Structure checks for the library package (run by `make lint`).

Three house rules, checked with `ast` only (the package is never imported):

* module-size: no module (a .py file) longer than --max-module-lines lines (default 800);
* function-size: no function or method (`def` / `async def`, nested ones included) longer than
  --max-function-lines lines (default 80), counted from the `def` line to its last line
  (`end_lineno`); decorators are not counted;
* underscore-import: no module takes a single-underscore name from another module of the
  package, either by `from <package module> import _name` (absolute or relative) or by attribute
  access `mod._name` where `mod` is bound to a module of the package (`import date_spark.x as mod`,
  `from date_spark import mod`, `import date_spark.x` then `date_spark.x._name`). Dunder names
  (`__version__`) are allowed. Whether an imported name is a module is decided on disk
  (`pkg/mod.py` or `pkg/mod/__init__.py`).

Usage: python tools/check_structure.py [ROOT ...]   (default: date_spark)

One line per violation, `path:line: rule: message`, sorted; then a summary line. Exit status 1
if there is any violation, else 0.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOTS = ("date_spark",)
DEFAULT_MAX_MODULE_LINES = 800
DEFAULT_MAX_FUNCTION_LINES = 80

MODULE_SIZE = "module-size"
FUNCTION_SIZE = "function-size"
UNDERSCORE_IMPORT = "underscore-import"
PARSE_ERROR = "parse-error"


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    rule: str
    message: str

    def render(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.message}"


@dataclass
class Package:
    """The top-level package a scanned file belongs to: its name and the directory above it."""

    name: str
    base: Path  # the directory that contains the package directory

    def is_inside(self, module: str) -> bool:
        return module == self.name or module.startswith(self.name + ".")

    def is_module(self, module: str) -> bool:
        """True when `module` (a dotted name inside the package) is a module or package on disk."""
        if not self.is_inside(module):
            return False
        path = self.base.joinpath(*module.split("."))
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@dataclass
class Report:
    modules: int = 0
    violations: list[Violation] = field(default_factory=list)

    def count(self, rule: str) -> int:
        return sum(1 for v in self.violations if v.rule == rule)


def is_private(name: str) -> bool:
    """A single-underscore name: `_x` or `__x`, but not a dunder such as `__version__`."""
    if not name.startswith("_"):
        return False
    return not (name.startswith("__") and name.endswith("__") and len(name) > 4)


def top_package(directory: Path) -> Path:
    """The outermost package directory containing `directory` (itself when no parent package)."""
    top = directory.resolve()
    while (top.parent / "__init__.py").is_file():
        top = top.parent
    return top


def module_name(file: Path, package_dir: Path) -> tuple[str, bool]:
    """Dotted name of `file` and whether it is a package `__init__`."""
    rel = file.resolve().relative_to(package_dir.parent).with_suffix("")
    parts = list(rel.parts)
    is_init = parts[-1] == "__init__"
    if is_init:
        parts.pop()
    return ".".join(parts), is_init


def resolve_from(node: ast.ImportFrom, current: str, is_init: bool) -> str | None:
    """Absolute module name a `from ... import` statement reads from (None if it escapes)."""
    if node.level == 0:
        return node.module
    parts = current.split(".")
    if not is_init:
        parts = parts[:-1]
    drop = node.level - 1
    if drop > len(parts) - 1:
        return None
    if drop:
        parts = parts[:-drop]
    if node.module:
        parts.append(node.module)
    return ".".join(parts)


def line_count(data: bytes) -> int:
    """Lines as `wc -l` counts them, plus a last line without a newline."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def iter_functions(
    tree: ast.AST, prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with a dotted qualified name (`Class.method`, `outer.inner`)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            qualname = prefix + child.name
            yield qualname, child
            yield from iter_functions(child, qualname + ".")
        elif isinstance(child, ast.ClassDef):
            yield from iter_functions(child, prefix + child.name + ".")
        else:
            yield from iter_functions(child, prefix)


def check_function_sizes(tree: ast.AST, shown: str, limit: int) -> list[Violation]:
    found = []
    for qualname, func in iter_functions(tree):
        end = func.end_lineno if func.end_lineno is not None else func.lineno
        length = end - func.lineno + 1
        if length > limit:
            message = f"{qualname} is {length} lines (limit {limit})"
            found.append(Violation(shown, func.lineno, FUNCTION_SIZE, message))
    return found


def underscore_message(name: str, source: str, via: str | None = None) -> str:
    how = f"attribute access {via}; " if via else ""
    return f"{name} from {source} ({how}make it public in its module's __all__)"


def module_bindings(tree: ast.AST, package: Package, current: str, is_init: bool) -> dict[str, str]:
    """Local names bound to modules of the package by import statements anywhere in the file."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not package.is_inside(alias.name):
                    continue
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:  # `import date_spark.x.y` binds `date_spark`
                    head = alias.name.split(".")[0]
                    bound[head] = head
        elif isinstance(node, ast.ImportFrom):
            source = resolve_from(node, current, is_init)
            if source is None or not package.is_inside(source):
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if alias.name != "*" and package.is_module(target):
                    bound[alias.asname or alias.name] = target
    return bound


def resolve_module(expr: ast.expr, bound: dict[str, str], package: Package) -> str | None:
    """The package module an expression such as `m` or `date_spark.x.y` stands for, if any."""
    if isinstance(expr, ast.Name):
        return bound.get(expr.id)
    if isinstance(expr, ast.Attribute):
        parent = resolve_module(expr.value, bound, package)
        if parent is not None and package.is_module(f"{parent}.{expr.attr}"):
            return f"{parent}.{expr.attr}"
    return None


def check_underscore_imports(
    tree: ast.AST, shown: str, package: Package, current: str, is_init: bool
) -> list[Violation]:
    found: set[Violation] = set()
    bound = module_bindings(tree, package, current, is_init)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = resolve_from(node, current, is_init)
            if source is None or not package.is_inside(source) or source == current:
                continue
            for alias in node.names:
                if is_private(alias.name):
                    message = underscore_message(alias.name, source)
                    found.add(Violation(shown, node.lineno, UNDERSCORE_IMPORT, message))
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            source = resolve_module(node.value, bound, package)
            if source is None or source == current:
                continue
            via = f"{ast.unparse(node.value)}.{node.attr}"
            message = underscore_message(node.attr, source, via)
            found.add(Violation(shown, node.lineno, UNDERSCORE_IMPORT, message))
    return sorted(found)


def check_file(
    file: Path, shown: str, package_dir: Path, max_module: int, max_function: int
) -> list[Violation]:
    data = file.read_bytes()
    found: list[Violation] = []
    lines = line_count(data)
    if lines > max_module:
        message = f"{lines} lines (limit {max_module}); split it"
        found.append(Violation(shown, 1, MODULE_SIZE, message))
    try:
        tree = ast.parse(data, filename=shown)
    except SyntaxError as exc:
        found.append(Violation(shown, exc.lineno or 1, PARSE_ERROR, exc.msg))
        return found
    found += check_function_sizes(tree, shown, max_function)
    package = Package(package_dir.name, package_dir.parent)
    current, is_init = module_name(file, package_dir)
    found += check_underscore_imports(tree, shown, package, current, is_init)
    return found


def iter_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if not any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            yield path


def check(roots: Sequence[Path], max_module: int, max_function: int) -> Report:
    report = Report()
    seen: set[Path] = set()
    for root in roots:
        package_dir = top_package(root if root.is_dir() else root.parent)
        for file in iter_files(root):
            resolved = file.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            report.modules += 1
            report.violations += check_file(
                file, file.as_posix(), package_dir, max_module, max_function
            )
    report.violations.sort()
    return report


def summary(report: Report, max_module: int, max_function: int) -> str:
    text = (
        f"structure: {report.modules} modules, "
        f"{report.count(MODULE_SIZE)} over {max_module} lines, "
        f"{report.count(FUNCTION_SIZE)} functions over {max_function} lines, "
        f"{report.count(UNDERSCORE_IMPORT)} underscore imports across modules"
    )
    unparsed = report.count(PARSE_ERROR)
    if unparsed:
        text += f", {unparsed} files that do not parse"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "roots", nargs="*", type=Path, metavar="ROOT", help="package directories or .py files"
    )
    parser.add_argument("--max-module-lines", type=int, default=DEFAULT_MAX_MODULE_LINES)
    parser.add_argument("--max-function-lines", type=int, default=DEFAULT_MAX_FUNCTION_LINES)
    args = parser.parse_args(argv)
    roots: list[Path] = args.roots or [Path(r) for r in DEFAULT_ROOTS]
    for root in roots:
        if not root.exists():
            parser.error(f"no such file or directory: {root}")
    max_module: int = args.max_module_lines
    max_function: int = args.max_function_lines
    report = check(roots, max_module, max_function)
    for violation in report.violations:
        print(violation.render())
    print(summary(report, max_module, max_function))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
