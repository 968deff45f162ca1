"""Checks that need no SparkSession, run by the command line before one starts.

Starting Spark and profiling the input takes 30-90 s on a small machine; a wrong path, a missing
target or an unset key variable should not. Everything here reads at most a file's footer or
header line (pyarrow for Parquet, the csv module for CSV) and the environment:

- the config names an input, a target and an output, and the output does not overlap the input;
- a local input path exists; its column names are usable (same checks as `io.select_columns`:
  case-insensitive duplicates, the reserved `_date_` prefix, the target, `input.columns` /
  `input.exclude`); Parquet column types are supported, and it has rows (footers only);
- the LLM can be reached in principle: the key's environment variable is set when the provider
  needs one, the embedded model server and model file are installed for `provider: local`.

Tables (`input.table`) and remote paths are checked by Spark as before. A file pyarrow cannot
read is left to Spark too: these checks only ever refuse what Spark would refuse later.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from date_spark.columns import RESERVED_PREFIX
from date_spark.config import Config, InputConfig
from date_spark.errors import ConfigError, InputError

__all__ = [
    "FORMAT_BY_SUFFIX",
    "check_input",
    "check_llm",
    "check_names",
    "check_output",
    "check_run",
    "format_of",
    "local_path",
    "spark_type_name",
]


log = logging.getLogger(__name__)

_GLOB = set("*?[{")
FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
}
_COMPRESSED = (".gz", ".bz2", ".deflate", ".lz4", ".snappy", ".zst")


def local_path(path: str) -> Path | None:
    """The filesystem path of a local location (plain or file://); None for other schemes."""
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(path).expanduser()
    return None


def format_of(path: str) -> str | None:
    """`csv` or `parquet` from a path's extension (or, for a directory, its data files')."""
    p = local_path(path)
    name = (p.name if p is not None else path.rstrip("/").rsplit("/", 1)[-1]).lower()
    for comp in _COMPRESSED:
        name = name.removesuffix(comp)
    suffix = os.path.splitext(name)[1]
    if suffix in FORMAT_BY_SUFFIX:
        return FORMAT_BY_SUFFIX[suffix]
    if p is not None and p.is_dir():
        found = {format_of(str(f)) for f in _data_files(p)} - {None}
        if len(found) == 1:
            return found.pop()
    return None


def _data_files(root: Path) -> list[Path]:
    """Data files under a directory as Spark lists them (hidden and `_` files skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        out += [Path(dirpath, f) for f in sorted(filenames) if not f.startswith((".", "_"))]
    return out


# ----------------------------------------------------------------------------------------------
# Column names and types
# ----------------------------------------------------------------------------------------------


def check_names(names: Sequence[str], cfg: InputConfig) -> list[str]:
    """The columns the run will use; InputError / ConfigError with the same one-line messages
    Spark's path gives (`io.select_columns`)."""
    lowered: dict[str, str] = {}
    for n in names:
        if n.lower() in lowered:
            raise InputError(
                f"duplicate column name {n!r} (also {lowered[n.lower()]!r}); rename one of them "
                f"before running"
            )
        lowered[n.lower()] = n
    clash = [n for n in names if n.lower().startswith(RESERVED_PREFIX)]
    if clash:
        raise InputError(
            f"input column {clash[0]!r} uses the reserved prefix {RESERVED_PREFIX!r} of the "
            f"output's provenance columns; rename it or drop it with input.exclude"
        )
    if not cfg.target:
        raise ConfigError(
            f"no target: pass --target COLUMN (or set input.target); columns are: "
            f"{', '.join(names)}"
        )
    if cfg.target not in names:
        raise InputError(
            f"target column {cfg.target!r} is not in the input; columns are: "
            f"{', '.join(names)}; fix input.target"
        )
    for key, listed in (("input.columns", cfg.columns or ()), ("input.exclude", cfg.exclude)):
        unknown = [c for c in listed if c not in names]
        if unknown:
            raise InputError(
                f"{key} names {unknown[0]!r}, which is not an input column; columns are: "
                f"{', '.join(names)}"
            )
    if cfg.target in cfg.exclude:
        raise InputError(
            f"input.exclude removes the target {cfg.target!r}; remove it from the list"
        )
    keep = set(cfg.columns) | {cfg.target} if cfg.columns else set(names)
    used = [c for c in names if c in keep and c not in cfg.exclude]
    if len(used) < 2:
        raise InputError(
            "no feature columns left after input.columns/input.exclude; keep at least one"
        )
    return used


def spark_type_name(t: object) -> str | None:
    """Spark's simpleString for an Arrow type, for the types Spark cannot use as a column kind;
    None for supported types."""
    import pyarrow as pa

    assert isinstance(t, pa.DataType)

    def name(t: pa.DataType) -> str:
        if pa.types.is_dictionary(t):
            return name(t.value_type)
        simple = {
            pa.int8(): "tinyint",
            pa.int16(): "smallint",
            pa.int32(): "int",
            pa.int64(): "bigint",
            pa.float32(): "float",
            pa.float64(): "double",
            pa.bool_(): "boolean",
            pa.date32(): "date",
            pa.null(): "void",
        }
        if t in simple:
            return simple[t]
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return "string"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return "binary"
        if pa.types.is_fixed_size_binary(t):
            return "binary"
        if pa.types.is_timestamp(t):
            return "timestamp"
        if pa.types.is_decimal(t):
            return f"decimal({t.precision},{t.scale})"
        if pa.types.is_map(t):
            return f"map<{name(t.key_type)},{name(t.item_type)}>"
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            return f"array<{name(t.value_type)}>"
        if pa.types.is_struct(t):
            return "struct<" + ",".join(f"{f.name}:{name(f.type)}" for f in t) + ">"
        return str(t)

    nested = (
        pa.types.is_map(t)
        or pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_struct(t)
    )
    binary = (
        pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
    )
    return name(t) if nested or binary else None


def _parquet(path: Path, cfg: InputConfig) -> None:
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(str(path), format="parquet", partitioning="hive")
        schema = dataset.schema
    except Exception as err:  # unreadable here: Spark decides (it may read what pyarrow cannot)
        log.debug("preflight: pyarrow cannot read %s (%s); leaving it to Spark", path, err)
        return
    if not dataset.files:
        raise InputError(
            f"input path {str(path)!r} holds no parquet files; check input.path and input.format"
        )
    used = check_names(schema.names, cfg)
    for name in used:
        bad = spark_type_name(schema.field(name).type)
        if bad is not None:
            raise InputError(
                f"column {name!r} has unsupported type {bad}; drop it with input.exclude: "
                f"[{name}] or flatten it before running"
            )
    try:
        rows = dataset.count_rows()
    except Exception:
        return
    if rows == 0:
        raise InputError("the input table has no rows; point input.path/input.table at data")
    if rows < cfg.min_rows:
        raise InputError(
            f"the input has {rows} rows; date-spark needs at least {cfg.min_rows} to split "
            f"train/validation/test (input.min_rows)"
        )


def _csv(path: Path, cfg: InputConfig) -> None:
    opts = {k.lower(): str(v) for k, v in cfg.csv_options.items()}
    if opts.get("header", "false").lower() != "true":
        return
    files = _data_files(path) if path.is_dir() else [path]
    files = [f for f in files if not f.name.endswith(_COMPRESSED)]
    if not files:
        return
    sep = opts.get("sep", opts.get("delimiter", ","))
    encoding = opts.get("encoding", opts.get("charset", "utf-8"))
    quote = opts.get("quote", '"') or '"'
    if encoding.lower().replace("-", "") == "utf8":
        encoding = "utf-8-sig"  # a byte-order mark is not part of the first column's name
    try:
        with open(files[0], newline="", encoding=encoding) as fh:
            header = next(csv.reader(fh, delimiter=sep[:1] or ",", quotechar=quote[:1]), None)
    except (OSError, UnicodeDecodeError, LookupError, csv.Error) as err:
        log.debug("preflight: cannot read the header of %s (%s); leaving it to Spark", path, err)
        return
    if header is None:
        raise InputError(
            f"input file {str(files[0])!r} is empty; point input.path at a CSV with a header line"
        )
    names = [h.strip() if opts.get("ignoreleadingwhitespace") else h for h in header]
    check_names(names, cfg)


def check_input(cfg: InputConfig) -> None:
    """What can be known about the input without Spark."""
    if not cfg.path and not cfg.table:
        raise ConfigError(
            "no input: pass the table as `date-spark run data.csv --target y --out out/`, or set "
            "input.path (with input.format) or input.table"
        )
    if cfg.table:
        if not cfg.target:
            raise ConfigError("no target: pass --target COLUMN (or set input.target)")
        return
    assert cfg.path is not None
    p = local_path(cfg.path)
    if p is None:  # remote storage: Spark's credentials and listing decide
        if not cfg.target:
            raise ConfigError("no target: pass --target COLUMN (or set input.target)")
        return
    if _GLOB & set(str(p)):
        matches = sorted(glob.glob(str(p)))
        if not matches:
            raise InputError(f"input path {cfg.path!r} matches no file; check input.path")
        p = Path(matches[0])
    elif not p.exists():
        raise InputError(f"input path {cfg.path!r} does not exist; check input.path")
    if cfg.format == "parquet":
        _parquet(p, cfg)
    else:
        _csv(p, cfg)
    if not cfg.target:
        raise ConfigError("no target: pass --target COLUMN (or set input.target)")


def check_llm(cfg: Config) -> None:
    """The endpoint's prerequisites, so a run never discovers rules for 10 minutes and then
    stops on an unset variable."""
    if cfg.generation.generator != "llm":
        return
    from date_spark.llm.client import effective_base_url, key_required, read_api_key

    if key_required(cfg.llm):
        read_api_key(cfg.llm)
    if cfg.llm.provider == "local" and not cfg.llm.base_url:
        from date_spark.errors import EndpointError
        from date_spark.llm.local import INSTALL_HINT, _missing_modules, find_model

        missing = _missing_modules()
        if missing:
            raise EndpointError(
                f"llm.provider is local but the embedded model server is not installed "
                f"(missing {', '.join(missing)}); {INSTALL_HINT}"
            )
        find_model(cfg.llm.local)
    else:
        effective_base_url(cfg.llm)


def check_output(cfg: Config) -> None:
    if not cfg.output.path and not cfg.output.table:
        raise ConfigError(
            "no output: pass --out PATH (or set output.path or output.table); the input is "
            "never written to"
        )
    from date_spark.io import check_output as overlap

    overlap(cfg.input, cfg.output)


def check_run(cfg: Config) -> None:
    """Everything `date-spark run` can refuse before Spark starts."""
    check_output(cfg)
    check_input(cfg.input)
    check_llm(cfg)
