"""`date-spark` command line. Exit codes: 0 done, 2 bad input or config, 3 endpoint or budget
failure, 1 anything unexpected. Errors print one line naming the problem and the fix."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from date_spark import logs
from date_spark.config import Config, dump_yaml, load_config
from date_spark.errors import ConfigError, DateSparkError, Interrupted
from date_spark.version import __version__

__all__ = ["build_parser", "main"]


log = logging.getLogger("date_spark")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML config; repeat to layer files (later wins)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        dest="overrides",
        help="override one config value, e.g. --set discovery.rho=0.1",
    )


def _log_options(defaults: bool) -> argparse.ArgumentParser:
    # Accepted before and after the subcommand; the subcommand's copy must not reset the other.
    p = argparse.ArgumentParser(add_help=False)
    kw: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only", **kw)
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="full log lines, Spark's and py4j's logs on the terminal, tracebacks",
        **kw,
    )
    return p


def _table_shortcuts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input",
        nargs="?",
        metavar="INPUT",
        help="the input table: a .csv or .parquet file or directory (sets input.path and, from "
        "the extension, input.format)",
    )
    p.add_argument("--target", metavar="COL", help="the label column (input.target)")
    p.add_argument(
        "--format",
        choices=("parquet", "csv"),
        dest="input_format",
        help="input format when the extension does not tell (input.format)",
    )
    p.add_argument(
        "--task",
        choices=("auto", "classification", "regression"),
        help="override task detection (input.task)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="date-spark",
        description="Diversity-aware synthetic rows for heterogeneous tables (DATE) on Spark.",
        parents=[_log_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"date-spark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    opts = _log_options(defaults=False)
    run = sub.add_parser(
        "run",
        help="run the job: read, discover, generate, select, write",
        description="Run the whole job. Shortest form: date-spark run data.csv --target y --out "
        "out/ (everything else from the defaults).",
        parents=[opts],
    )
    _table_shortcuts(run)
    run.add_argument(
        "--out", metavar="PATH", dest="output_path", help="where the rows go (output.path)"
    )
    _common(run)
    run.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="continue a run from its last finished stage, with its saved config",
    )
    disc = sub.add_parser(
        "discover", help="discover rules only; write them as JSON and a table", parents=[opts]
    )
    _table_shortcuts(disc)
    _common(disc)
    disc.add_argument("--out", metavar="DIR", help="where to write rules.json and rules/ (Parquet)")
    val = sub.add_parser(
        "validate-config", help="print the resolved config (no secrets) and exit", parents=[opts]
    )
    _common(val)
    ev = sub.add_parser(
        "evaluate",
        help="fidelity, privacy and validity of a synthetic table; writes a report",
        parents=[opts],
    )
    ev.add_argument("--real", required=True, metavar="PATH", help="the real (training) rows")
    ev.add_argument("--synthetic", required=True, metavar="PATH", help="the synthetic rows")
    ev.add_argument(
        "--target", metavar="COL", help="label column (a discrete label is compared as a category)"
    )
    ev.add_argument(
        "--format",
        choices=("parquet", "csv"),
        help="format of every table (default: from each path's extension, else parquet)",
    )
    ev.add_argument("--real-format", choices=("parquet", "csv"), help="format of --real")
    ev.add_argument("--synthetic-format", choices=("parquet", "csv"), help="format of --synthetic")
    ev.add_argument(
        "--out", metavar="DIR", help="report directory (default: <synthetic>_evaluation)"
    )
    ev.add_argument("--train", metavar="PATH", help="rows the generator saw (default: --real)")
    ev.add_argument(
        "--holdout", metavar="PATH", help="real rows it never saw: the privacy baseline"
    )
    ev.add_argument(
        "--rule-column",
        metavar="COL",
        help="column holding each row's rule (default: _date_rule when present)",
    )
    runs = sub.add_parser(
        "runs",
        help="list the MLflow runs still RUNNING; --clean marks those whose process died KILLED",
        parents=[opts],
    )
    _common(runs)
    runs.add_argument(
        "--clean",
        action="store_true",
        help="mark runs whose process died (kill -9, out of memory) KILLED in MLflow",
    )
    return parser


def _shortcut_overrides(args: argparse.Namespace) -> list[str]:
    """`date-spark run data.csv --target y --out out/` as `--set` overrides (applied last)."""
    from date_spark.io.preflight import format_of

    out: list[str] = []
    path = getattr(args, "input", None)
    if path:
        fmt = getattr(args, "input_format", None) or format_of(path)
        if fmt is None:
            raise ConfigError(
                f"cannot tell the format of {path!r} from its name; pass --format parquet or "
                f"--format csv"
            )
        # set as YAML strings, whatever the characters in the path
        out += [f"input.path={_yaml_str(path)}", "input.table=null", f"input.format={fmt}"]
    elif getattr(args, "input_format", None):
        out.append(f"input.format={args.input_format}")
    if getattr(args, "target", None):
        out.append(f"input.target={_yaml_str(args.target)}")
    if getattr(args, "task", None):
        out.append(f"input.task={args.task}")
    if getattr(args, "output_path", None):
        out += [f"output.path={_yaml_str(args.output_path)}", "output.table=null"]
    return out


def _yaml_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, [*args.overrides, *_shortcut_overrides(args)])


def _cmd_validate(args: argparse.Namespace) -> int:
    from date_spark.io.preflight import check_output

    cfg = _config(args)
    if (cfg.input.path or cfg.input.table) and (cfg.output.path or cfg.output.table):
        check_output(cfg.input, cfg.output)
    sys.stdout.write(dump_yaml(cfg))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from date_spark.io.preflight import check_run

    t0 = time.monotonic()
    if args.resume:
        from date_spark.tracking.runs import resume_config

        # the saved run's config, with what this command line states again on top
        cfg = resume_config(args.config, args.overrides, args.resume)
    else:
        cfg = _config(args)
    # before Spark starts: paths, header, schema, key, local model, writable places, and no
    # other run writing the same output
    check_run(cfg)
    from date_spark.io.locks import check_writer

    check_writer(cfg.output.path, table=cfg.output.table, runs_dir=cfg.output.runs_dir)
    log.info("date-spark %s: config and input checked; starting the job", __version__)
    with logs.Heartbeat("start-up", what="loading Spark and the models"):
        from date_spark.generation import reject_table
        from date_spark.synthesizer import DateSynthesizer
        from date_spark.tracking.mlflow_log import ui_command

    result = DateSynthesizer(cfg).run(resume=args.resume)
    s = result.summary
    if s.get("headline"):
        print(s["headline"])
    print(s.get("kept", ""))
    print(f"run {result.run_id} done: {result.run_dir} ({_duration(time.monotonic() - t0)})")
    print(f"  input:     {s.get('profile', '')}")
    print(
        f"  rules:     {_n(s.get('rules'), 'DGR')}; arms: {_n(s.get('arms'), 'group')} of "
        f"generated rows, {s.get('candidate_arms')} candidate, {s.get('selected_arms')} selected"
    )
    rejected = s.get("rejected_rows") or {}
    print(
        f"  generated: {s.get('valid_rows', 0)} valid rows, {sum(rejected.values())} rejected"
        + (" (" + ", ".join(f"{k} {v}" for k, v in rejected.items()) + ")" if rejected else "")
        + _rerouted_text(s.get("rerouted_rows") or {})
    )
    if s.get("asked"):
        print(f"  asked:     {s['asked']}")
    if s.get("copies"):
        print(f"  copies:    {s['copies']}")
    table = reject_table(s.get("rejected_by_column") or {}, s.get("clipped") or {})
    if table:
        print("  rejects by column (a row counts under every column that failed):")
        for line in table:
            print(f"    {line}")
    print(
        f"  output:    {result.output.get('rows')} rows ({result.output.get('synthetic_rows')} "
        f"synthetic) -> {result.output.get('location')}"
    )
    if result.output.get("report"):
        print(f"  report:    {result.output['report']}")
    if result.mlflow_run_id:
        print(
            f"  mlflow:    run {result.mlflow_run_id} in experiment {cfg.tracking.experiment!r}; "
            f"browse with: {ui_command(cfg)}"
        )
    if s.get("nothing_kept"):
        print(f"  note:      no synthetic row kept: {s['nothing_kept']}")
    if s.get("budget_exhausted"):
        print("  note:      the LLM budget ran out; the output holds what was generated before")
    return 0


def _n(count: Any, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _rerouted_text(to: dict[str, int]) -> str:
    """Where the rule-violating rows went, for the `generated:` line (empty when nowhere)."""
    if not to:
        return ""
    where = ", ".join(f"{k} {v}" for k, v in to.items())
    return f"; {sum(to.values())} of them re-routed to the partition they satisfy ({where})"


def _duration(secs: float) -> str:
    m, s = divmod(round(secs), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def _cmd_discover(args: argparse.Namespace) -> int:
    from date_spark.io.preflight import check_input
    from date_spark.synthesizer import DateSynthesizer

    cfg = _config(args)
    check_input(cfg.input)
    synth = DateSynthesizer(cfg)
    found = synth.discover()
    out = Path(args.out or Path(cfg.output.runs_dir) / "discover")
    found.save(out / "rules.json")
    found.rules_frame(synth.data_.sparkSession).write.mode("overwrite").parquet(str(out / "rules"))
    for d in found.dgrs:
        print(f"{d.rule_id}\tsupport={d.support}\terror={d.val_error:.4f}\t{d.rule.to_text()}")
    print(f"{len(found.dgrs)} rules covering {found.coverage:.1%} of training rows -> {out}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    """The store's RUNNING runs on this host and elsewhere; `--clean`: the dead ones KILLED."""
    from date_spark.secrets import mask_url
    from date_spark.tracking.mlflow_log import runs_in_store, tracking_uri

    cfg = _config(args)
    found = runs_in_store(cfg, clean=args.clean)
    if found is None:
        print(f"no MLflow store at {mask_url(tracking_uri(cfg))}: nothing to list")
        return 0
    uri, marked, still = found
    for run_id in marked:
        print(f"marked KILLED: {run_id} (its process died without ending the run)")
    for run_id, name, dead in still:
        state = "its process died: run `date-spark runs --clean`" if dead else "running"
        print(f"RUNNING {run_id} {name}: {state}")
    print(
        f"{len(marked)} run(s) marked KILLED, {len(still)} still RUNNING in {uri}"
        if args.clean
        else f"{len(still)} run(s) RUNNING in {uri}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from date_spark.columns import RULE
    from date_spark.config import InputConfig
    from date_spark.errors import ConfigError, InputError
    from date_spark.evaluation import evaluate, infer_schema, only_synthetic
    from date_spark.evaluation.report import log_report, render_report
    from date_spark.io.read import read_input, table_format
    from date_spark.runtime.spark import session

    out = args.out
    if not out:
        if "://" in args.synthetic and not args.synthetic.startswith("file:"):
            raise ConfigError("--synthetic is not a local path; pass --out DIR for the report")
        out = args.synthetic.removeprefix("file://").rstrip("/") + "_evaluation"
    spark = session()

    def load(flag: str, path: str | None, fmt: str | None = None) -> Any:
        if path is None:
            return None
        chosen = fmt or args.format or table_format(path)
        try:
            return read_input(spark, InputConfig(path=path, format=chosen), flag=flag)
        except InputError as err:
            raise InputError(f"{flag}: {err}") from None

    real = load("--real", args.real, args.real_format)
    synthetic = only_synthetic(load("--synthetic", args.synthetic, args.synthetic_format))
    train, holdout = load("--train", args.train), load("--holdout", args.holdout)
    rule_column = args.rule_column or (RULE if RULE in synthetic.columns else None)
    schema = infer_schema(real, args.target)
    result = evaluate(
        real, synthetic, schema, holdout=holdout, train=train, rule_column=rule_column
    )
    paths = render_report(result, out)
    log_report(paths, result=result)
    for line in schema_warnings(result.validity):
        log.warning("%s", line)
    f, p, v = result.fidelity, result.privacy, result.validity
    flag = "n/a (no --holdout)" if p.too_close is None else ("TOO CLOSE" if p.too_close else "ok")
    print(
        f"fidelity {f.overall:.4f} (shapes {f.column_shapes_score:.4f}, pair trends "
        f"{(f.column_pair_trends_score or 0.0):.4f})"
        if f.overall is not None
        else "fidelity n/a"
    )
    print(f"privacy {flag}: exact copies {p.exact_copies} of {result.synthetic_rows}")
    if v.rule_share is not None:
        print(f"rules satisfied by {v.rule_share:.1%} of {v.rule_rows} rows")
    print(f"report: {paths.html}")
    return 0


def schema_warnings(v: Any) -> list[str]:
    """What the report's validity section says about the synthetic table's columns, as lines for
    the terminal: a score computed on fewer or re-typed columns must not pass unnoticed."""
    out: list[str] = []
    missing, extra = list(v.missing_columns), list(v.extra_columns)
    by_case = {e.casefold(): e for e in extra}
    for m in missing:
        twin = by_case.get(m.casefold())
        if twin is not None:
            out.append(
                f"the synthetic table has {twin!r} where the real one has {m!r} (names differ "
                f"only in case): left out of every score; rename it to {m!r}"
            )
            extra.remove(twin)
        else:
            out.append(
                f"the synthetic table lacks column {m!r} of the real table: left out of every score"
            )
    if extra:
        out.append(
            f"the synthetic table has column(s) the real one does not: "
            f"{', '.join(map(repr, extra))} (ignored)"
        )
    for name, change in v.type_mismatches.items():
        out.append(f"column {name!r} has another type in the synthetic table ({change}): cast")
    for name, n in v.uncastable_values.items():
        out.append(
            f"column {name!r}: {n} synthetic value(s) do not fit the real table's type and count "
            f"as missing"
        )
    return out


def _crash_report(exc: BaseException) -> Path | None:
    """The traceback of an unexpected error, in a file the one-line message names."""
    try:
        fd, name = tempfile.mkstemp(prefix="date-spark-crash-", suffix=".txt")
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(traceback.format_exception(exc)))
            if logs.STATE.spark_log is not None:
                fh.write(f"\nSpark's log: {logs.STATE.spark_log}\n")
        return Path(name)
    except OSError:
        return None


def _resume_command(words: list[str], run_id: str) -> str:
    """The command that was run, with `--resume RUN_ID` in place of any earlier one."""
    kept: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
            continue
        if w == "--resume":
            skip = True
            continue
        if w.startswith("--resume="):
            continue
        kept.append(w)
    return shlex.join(["date-spark", *kept, "--resume", run_id])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    logs.configure(verbose=verbose, quiet=bool(getattr(args, "quiet", False)))
    handlers = {"run": _cmd_run, "discover": _cmd_discover, "validate-config": _cmd_validate}
    handlers["evaluate"] = _cmd_evaluate
    handlers["runs"] = _cmd_runs
    try:
        return handlers[args.command](args)
    except Interrupted as err:
        print(f"date-spark: {err}", file=sys.stderr)
        if err.run_id:
            words = list(sys.argv[1:] if argv is None else argv)
            print(f"to continue: {_resume_command(words, err.run_id)}", file=sys.stderr)
        return err.exit_code
    except DateSparkError as err:
        print(f"date-spark: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("date-spark: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if verbose:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        where = _crash_report(exc)
        saved = f"; traceback in {where}" if where else ""
        print(
            f"date-spark: unexpected error: {type(exc).__name__}: {first}{saved}; rerun with "
            f"--verbose for Spark's logs, and report it if it persists",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
