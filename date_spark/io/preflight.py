"""Checks that need no SparkSession, run by the command line before one starts.

Starting Spark and profiling the input takes 30-90 s on a small machine; a wrong path, a missing
target or an unset key variable should not. Everything here reads at most a file's footer or
header line (pyarrow for Parquet, the csv module for CSV) and the environment:

- the config names an input, a target and an output, and the output does not overlap the input;
- a local input path exists; its column names are usable (same checks as the reader applies:
  case-insensitive duplicates, the reserved `_date_` prefix, the target, `input.columns` /
  `input.exclude`); Parquet column types are supported, and it has rows (footers only);
- the LLM can be reached in principle: the key's environment variable is set when the provider
  needs one, the embedded model server and model file are installed for `provider: local`.

Tables (`input.table`) and remote paths are checked by Spark as before. A file pyarrow cannot
read is left to Spark too: these checks only ever refuse what Spark would refuse later.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from date_spark.columns import RESERVED_PREFIX
from date_spark.config import Config, InputConfig, OutputConfig
from date_spark.errors import ConfigError, InputError, OutputError

__all__ = [
    "FORMAT_BY_SUFFIX",
    "check_checksums",
    "check_csv_rows",
    "check_input",
    "check_llm",
    "check_names",
    "check_output",
    "check_parquet_files",
    "check_places",
    "check_run",
    "data_files",
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
        found = {format_of(str(f)) for f in data_files(p)} - {None}
        if len(found) == 1:
            return found.pop()
    return None


def data_files(root: Path) -> list[Path]:
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
    Spark's path gives (the reader's column selection)."""
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
            f"{', '.join(names)}{_separator_hint(names)}"
        )
    if cfg.target not in names:
        raise InputError(
            f"target column {cfg.target!r} is not in the input; columns are: "
            f"{', '.join(names)}; fix input.target{_separator_hint(names)}"
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


def _separator_hint(names: Sequence[str]) -> str:
    """A CSV read with the wrong separator has one column named like `age;income;y`: say which
    separator it holds (the most frequent of `;`, tab, `|`, then `,`), whatever the target."""
    if len(names) != 1:
        return ""
    counts = [(names[0].count(sep), -i, shown) for i, (sep, shown) in enumerate(_SEPARATORS)]
    n, _, shown = max(counts)
    if not n:
        return ""
    return (
        f" (the header reads as one column: the file looks separated by '{shown}'; "
        f"set input.csv_options.sep='{shown}')"
    )


# (the character, how Spark's `sep` option spells it)
_SEPARATORS = ((";", ";"), ("\t", "\\t"), ("|", "|"), (",", ","))


def _sep_char(sep: str | None) -> str:
    """The character Spark's `sep` option means: `\\t` is a tab, `\\u0001` that code point."""
    if not sep:
        return ","
    if sep == "\\t":
        return "\t"
    if len(sep) == 6 and sep.startswith("\\u"):
        try:
            return chr(int(sep[2:], 16))
        except ValueError:
            return sep[:1]
    return sep[:1]


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


_FOOTERS_MAX = 5000  # files whose footers are read; a larger directory is checked on these
_CSV_SCAN_BYTES = 64 << 20  # how much of a local CSV is scanned for quoted line breaks


def _same_type(a: object, b: object) -> bool:
    import pyarrow as pa

    assert isinstance(a, pa.DataType) and isinstance(b, pa.DataType)

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_large_string(t):
            return pa.string()
        return t

    return bool(plain(a) == plain(b)) or pa.types.is_null(a) or pa.types.is_null(b)


def _nanos(t: object) -> bool:
    import pyarrow as pa

    assert isinstance(t, pa.DataType)
    return bool(pa.types.is_timestamp(t) and t.unit == "ns")


def check_checksums(files: Sequence[Path]) -> None:
    """A data file rewritten after Spark wrote it (by pandas, say) leaves a stale hidden
    `.<name>.crc` beside it, and Hadoop's local file system then refuses to read the file with a
    Java stack trace. Hadoop's format: `crc\\0`, the bytes per checksum, then one CRC32 per chunk;
    checked here by the checksum file's length (it follows the data's size) and the first and
    last chunk, so nothing large is read."""
    import struct
    import zlib

    for f in files:
        crc = f.with_name(f".{f.name}.crc")
        if not crc.is_file():
            continue
        with crc.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8 or head[:4] != b"crc\x00":
                continue  # not a checksum file Hadoop wrote: Hadoop decides
            chunk = struct.unpack(">i", head[4:8])[0]
            size = f.stat().st_size
            n = -(-size // chunk) if chunk > 0 else 0
            stale = chunk <= 0 or crc.stat().st_size != 8 + 4 * n
            if not stale and n:
                sums = []
                for i in sorted({0, n - 1}):
                    fh.seek(8 + 4 * i)
                    sums.append((i, struct.unpack(">I", fh.read(4))[0]))
                with f.open("rb") as data:
                    for i, want in sums:
                        data.seek(i * chunk)
                        if zlib.crc32(data.read(chunk)) != want:
                            stale = True
        if stale:
            raise InputError(
                f"input file {str(f)!r} does not match its checksum file {crc.name!r} (the file "
                f"was changed after it was written, and Hadoop refuses to read it); delete that "
                f".crc file, or rewrite the directory with one writer"
            )


def check_parquet_files(path: Path, cfg: InputConfig) -> None:
    """Every data file's footer, before Spark reads one: a damaged file, a column whose type
    differs between files, a column some files lack (refused unless `input.merge_schema`), and
    pandas' nanosecond timestamps (Spark cannot read them), each named with the file."""
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else data_files(path)
    check_checksums(files)
    if len(files) > _FOOTERS_MAX:
        log.info("preflight: checking the first %d of %d files' footers", _FOOTERS_MAX, len(files))
        files = files[:_FOOTERS_MAX]
    schemas = []
    for f in files:
        try:
            schemas.append((f, pq.read_schema(f)))
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise InputError(
                f"input file {str(f)!r} is not a readable Parquet file ({first}); remove or "
                f"replace it, or point input.path at the good files"
            ) from None
    if not schemas:
        return
    names: list[str] = []
    for _, sch in schemas:
        names += [n for n in sch.names if n not in names]
    used = check_names(names, cfg)
    for name in used:
        have = [(f, sch.field(name).type) for f, sch in schemas if name in sch.names]
        f0, t0 = have[0]
        for f, t in have[1:]:
            if not _same_type(t0, t):
                raise InputError(
                    f"column {name!r} has type {t0} in {str(f0)!r} but {t} in {str(f)!r}; "
                    f"rewrite the files with one type for it, or drop it with input.exclude: "
                    f"[{name}]"
                )
        if len(have) < len(schemas) and not cfg.merge_schema:
            lacking = next(f for f, sch in schemas if name not in sch.names)
            raise InputError(
                f"column {name!r} is in {len(have)} of the {len(schemas)} files of "
                f"{str(path)!r} (not in {str(lacking)!r}); set input.merge_schema: true to read "
                f"it (null where a file lacks it), or drop it with input.exclude: [{name}]"
            )
        if _nanos(t0):
            raise InputError(
                f"column {name!r} of {str(f0)!r} holds nanosecond timestamps ({t0}, pandas' "
                f"default), which Spark cannot read; write the file with microseconds "
                f"(df.to_parquet(path, coerce_timestamps='us', allow_truncated_timestamps=True)) "
                f"or drop it with input.exclude: [{name}]"
            )


def _parquet(path: Path, cfg: InputConfig) -> None:
    import pyarrow.dataset as ds

    check_parquet_files(path, cfg)
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
    files = data_files(path) if path.is_dir() else [path]
    check_checksums(files)
    if opts.get("header", "false").lower() != "true":
        return
    files = [f for f in files if not f.name.endswith(_COMPRESSED)]
    if not files:
        return
    sep = _sep_char(opts.get("sep", opts.get("delimiter", ",")))
    encoding = opts.get("encoding", opts.get("charset", "utf-8"))
    quote = opts.get("quote", '"') or '"'
    if encoding.lower().replace("-", "") == "utf8":
        encoding = "utf-8-sig"  # a byte-order mark is not part of the first column's name
    try:
        with open(files[0], newline="", encoding=encoding) as fh:
            header = next(csv.reader(fh, delimiter=sep, quotechar=quote[:1]), None)
    except (OSError, UnicodeDecodeError, LookupError, csv.Error) as err:
        log.debug("preflight: cannot read the header of %s (%s); leaving it to Spark", path, err)
        return
    if header is None:
        raise InputError(
            f"input file {str(files[0])!r} is empty; point input.path at a CSV with a header line"
        )
    names = [h.strip() if opts.get("ignoreleadingwhitespace") else h for h in header]
    check_names(names, cfg)
    check_csv_rows(files, cfg)


def check_csv_rows(files: Sequence[Path], cfg: InputConfig) -> None:
    """A quoted value holding a line break splits its row in two under Spark's default CSV
    reader (one record per line): the row count grows, numeric columns turn into text, and
    nothing fails. Refused, naming the row and the option, unless `multiLine` is on. The first
    64 MB of the local files are scanned."""
    opts = {k.lower(): str(v).lower() for k, v in cfg.csv_options.items()}
    if opts.get("multiline") == "true":
        return
    sep = _sep_char(opts.get("sep") or opts.get("delimiter"))
    quote = (opts.get("quote") or '"')[:1]
    encoding = opts.get("encoding", opts.get("charset", "utf-8"))
    budget = [_CSV_SCAN_BYTES]

    def lines(fh: Any) -> Iterator[str]:
        for line in fh:
            budget[0] -= len(line)
            yield line
            if budget[0] <= 0:
                return

    for f in files:
        if f.name.endswith(_COMPRESSED) or budget[0] <= 0:
            continue
        try:
            with open(f, newline="", encoding=encoding, errors="replace") as fh:
                reader = csv.reader(lines(fh), delimiter=sep, quotechar=quote)
                header = next(reader, None) or []
                for row in reader:
                    for i, value in enumerate(row):
                        if "\n" in value or "\r" in value:
                            col = header[i] if i < len(header) else f"#{i + 1}"
                            raise InputError(
                                f"input file {str(f)!r} has a quoted value with a line break "
                                f"(column {col!r}, record ending at line {reader.line_num}); "
                                f"Spark's CSV reader would split that row in two: set "
                                f"input.csv_options.multiLine=true"
                            )
        except (OSError, UnicodeError, LookupError, csv.Error) as err:
            log.debug("preflight: cannot scan %s (%s); leaving it to Spark", f, err)


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
    if cfg.uses_embedded_model:
        from date_spark.errors import EndpointError
        from date_spark.llm.local import INSTALL_HINT, find_model, missing_server_modules

        missing = missing_server_modules()
        if missing:
            raise EndpointError(
                f"llm.provider is local but the embedded model server is not installed "
                f"(missing {', '.join(missing)}); {INSTALL_HINT}"
            )
        find_model(cfg.llm.local)
    else:
        effective_base_url(cfg.llm)


def _norm_location(path: str) -> str:
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        local = parsed.path if parsed.scheme == "file" else path
        return "file://" + os.path.realpath(os.path.abspath(local)).rstrip("/")
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}".lower()


def check_output(input_cfg: InputConfig, output_cfg: OutputConfig) -> None:
    """Refuse a missing output, and one that would overwrite or sit inside the input (or the
    reverse), before anything is read: the one check the command line and the facade both run."""
    if not output_cfg.path and not output_cfg.table:
        raise ConfigError(
            "no output: pass --out PATH (or set output.path or output.table); the input is "
            "never written to"
        )
    same_table = (
        input_cfg.table
        and output_cfg.table
        and input_cfg.table.strip("`").lower() == output_cfg.table.strip("`").lower()
    )
    if same_table:
        raise OutputError(
            f"output.table {output_cfg.table!r} is the input table; write to another table"
        )
    if input_cfg.path and output_cfg.path:
        a, b = _norm_location(input_cfg.path), _norm_location(output_cfg.path)
        if _overlap(a, b):
            raise OutputError(
                f"output.path {output_cfg.path!r} overlaps the input {input_cfg.path!r}; "
                f"choose a separate output location so the input is never touched"
            )
    # The run directory holds stage results and staging files: inside the input (or the output)
    # directory, readers of that directory would see them as data.
    runs = _norm_location(output_cfg.runs_dir)
    for key, where in (("the input", input_cfg.path), ("output.path", output_cfg.path)):
        if where and _overlap(_norm_location(where), runs):
            raise OutputError(
                f"output.runs_dir {output_cfg.runs_dir!r} overlaps {key} {where!r}; choose a "
                f"runs directory outside it, so its readers never see run files"
            )


def _overlap(a: str, b: str) -> bool:
    return a == b or b.startswith(a + "/") or a.startswith(b + "/")


def _unwritable(path: Path) -> Path | None:
    """The directory that keeps `path` from being created or written (the path itself, or its
    nearest existing ancestor), or None when it can be. A real probe file as well as the
    permission bits: a read-only mount or an immutable directory refuses even root."""
    p = path.expanduser().absolute()
    while not p.exists():
        if p.parent == p:
            return p
        p = p.parent
    if not p.is_dir():
        return p
    if not os.access(p, os.W_OK | os.X_OK):
        return p
    try:
        fd, probe = tempfile.mkstemp(prefix=".date-spark-probe-", dir=p)
    except OSError:
        return p
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def check_places(cfg: Config, environ: Mapping[str, str] | None = None) -> None:
    """Every local location the run writes (output, runs directory, MLflow store, response
    cache, `$TMPDIR` for Spark's log) can be written by this user: refused now, not after the
    job's work."""
    env = os.environ if environ is None else environ
    tmp = env.get("TMPDIR")
    if tmp:
        blocked = _unwritable(Path(tmp))
        if blocked is not None or not Path(tmp).is_dir():
            raise ConfigError(
                f"TMPDIR={tmp!r} is not a directory this user can write (Spark's log and "
                f"temporary files go there); point TMPDIR at one, e.g. export TMPDIR=$HOME/tmp"
            )
    places: list[tuple[str, str | None]] = [
        ("output.path", cfg.output.path),
        ("output.runs_dir", cfg.output.runs_dir),
    ]
    uri = cfg.tracking.uri
    if cfg.tracking.enabled and uri and uri.startswith("sqlite:///"):
        places.append(("tracking.uri", str(Path(uri[len("sqlite:///") :]).parent)))
    if cfg.generation.generator == "llm" and cfg.llm.cache_path:
        places.append(("llm.cache_path", cfg.llm.cache_path))
    for key, where in places:
        p = local_path(where) if where else None
        if p is None:
            continue  # remote storage: its credentials decide, at write time
        blocked = _unwritable(p)
        if blocked is None:
            continue
        why = (
            "is not a directory"
            if blocked.exists() and not blocked.is_dir()
            else "is not writable by this user"
        )
        flag = " (--out PATH)" if key == "output.path" else ""
        raise OutputError(
            f"{key} {where!r} cannot be written: {str(blocked)!r} {why}; choose a location "
            f"this user can write{flag}"
        )


def check_run(cfg: Config) -> None:
    """Everything `date-spark run` can refuse before Spark starts."""
    check_output(cfg.input, cfg.output)
    check_input(cfg.input)
    check_llm(cfg)
    check_places(cfg)
