"""Execute a Databricks source notebook locally, as a script, cell by cell.

    python notebook_runner.py SPEC.json

SPEC: {"notebook": path, "widgets": {name: value}, "secrets": {"scope/key": value},
       "executor_env": {name: value}, "spark_conf": {...}, "warehouse": dir,
       "tables": {name: parquet path}, "inspect_tables": [name, ...]}

What Databricks provides, this provides: `spark` (a local classic session, built before the
notebook runs, like a cluster's), `dbutils.widgets` (values from SPEC as job parameters, else the
widget's default; `get` of an undefined widget fails), `dbutils.secrets.get` (from SPEC; a missing
secret fails), `display` and `displayHTML` (print a short rendering and record what was shown).
`executor_env` plays the cluster environment variables (`spark.executorEnv.*`, e.g. a key from
`{{secrets/scope/key}}`). `# MAGIC` lines are comments, so %md and %pip cells do nothing here (the
package is installed already). Prints `--- cell i/n` before each cell and `RESULT {json}` at the
end; exits 1 with the traceback when a cell fails.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"


class InputWidgetNotDefined(Exception):
    pass


class SecretNotFound(Exception):
    pass


class Widgets:
    def __init__(self, params: dict[str, str]) -> None:
        self._params = {k: str(v) for k, v in params.items()}
        self._defined: dict[str, tuple[str, list[str] | None]] = {}

    def _define(self, name: str, default: str, choices: list[str] | None = None) -> None:
        if choices is not None and default not in choices:
            raise ValueError(f"default {default!r} of widget {name!r} is not one of {choices}")
        self._defined[name] = (str(default), choices)

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:
        self._define(name, defaultValue)

    def dropdown(
        self, name: str, defaultValue: str, choices: list[str], label: str | None = None
    ) -> None:
        self._define(name, defaultValue, list(choices))

    def combobox(
        self, name: str, defaultValue: str, choices: list[str], label: str | None = None
    ) -> None:
        self._define(name, defaultValue)

    def get(self, name: str) -> str:
        if name not in self._defined:
            raise InputWidgetNotDefined(f"No input widget named {name} is defined")
        default, choices = self._defined[name]
        value = self._params.get(name, default)
        if choices is not None and value not in choices:
            raise ValueError(f"widget {name!r}: {value!r} is not one of {choices}")
        return value

    def getAll(self) -> dict[str, str]:
        return {name: self.get(name) for name in self._defined}

    def remove(self, name: str) -> None:
        self._defined.pop(name, None)

    def removeAll(self) -> None:
        self._defined.clear()


class Secrets:
    def __init__(self, values: dict[str, str]) -> None:
        self._values = dict(values)

    def get(self, scope: str, key: str) -> str:
        try:
            return self._values[f"{scope}/{key}"]
        except KeyError:
            raise SecretNotFound(
                f"Secret does not exist with scope: {scope} and key: {key}"
            ) from None


class Dbutils:
    def __init__(self, widgets: dict[str, str], secrets: dict[str, str]) -> None:
        self.widgets = Widgets(widgets)
        self.secrets = Secrets(secrets)


class Display:
    def __init__(self) -> None:
        self.shown: list[dict[str, Any]] = []

    def __call__(self, obj: Any, *args: Any, **kwargs: Any) -> None:
        import pandas as pd

        if hasattr(obj, "toPandas") and hasattr(obj, "limit"):  # a Spark DataFrame
            pdf, kind = obj.limit(1000).toPandas(), "spark"
        elif isinstance(obj, pd.DataFrame):
            pdf, kind = obj, "pandas"
        else:
            self.shown.append({"kind": type(obj).__name__})
            print(repr(obj)[:2000])
            return
        self.shown.append(
            {"kind": kind, "columns": [str(c) for c in pdf.columns], "rows": len(pdf)}
        )
        print(pdf.head(20).to_string(max_colwidth=60))

    def html(self, html: str) -> None:
        self.shown.append({"kind": "html", "chars": len(html)})
        print(f"<displayHTML: {len(html)} characters>")


def session(spec: dict[str, Any]) -> Any:
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
        os.environ.setdefault(name, sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName("notebook-runner")
    for k, v in spec.get("spark_conf", {}).items():
        builder = builder.config(k, v)
    for k, v in spec.get("executor_env", {}).items():
        builder = builder.config(f"spark.executorEnv.{k}", v)
    if spec.get("warehouse"):
        builder = builder.config("spark.sql.warehouse.dir", spec["warehouse"])
    spark = builder.getOrCreate()
    for name, path in spec.get("tables", {}).items():
        spark.read.parquet(path).write.saveAsTable(name)
    return spark


def cells(path: Path) -> list[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    if not source.startswith(HEADER + "\n"):
        raise SystemExit(f"{path}: not a Databricks source notebook (no {HEADER!r} header)")
    out, line = [], 1
    for cell in source.split("\n" + SEPARATOR + "\n"):
        out.append((line, cell))
        line += cell.count("\n") + 2
    return out


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    notebook = Path(spec["notebook"])
    parts = cells(notebook)
    spark = session(spec)
    shown = Display()
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "spark": spark,
        "dbutils": Dbutils(spec.get("widgets", {}), spec.get("secrets", {})),
        "display": shown,
        "displayHTML": shown.html,
    }
    try:
        for i, (line, cell) in enumerate(parts, start=1):
            print(f"--- cell {i}/{len(parts)} (line {line})", flush=True)
            code = compile("\n" * (line - 1) + cell, str(notebook), "exec")
            exec(code, namespace)
        tables = {
            name: {"columns": spark.table(name).columns, "rows": spark.table(name).count()}
            for name in spec.get("inspect_tables", [])
        }
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
    print("RESULT " + json.dumps({"cells": len(parts), "displayed": shown.shown, "tables": tables}))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
