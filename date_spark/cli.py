"""`date-spark` command line. Exit codes: 0 done, 2 bad input or config, 3 endpoint or budget
failure, 1 anything unexpected. Errors print one line naming the problem and the fix."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from date_spark import __version__
from date_spark.config import Config, dump_yaml, load_config
from date_spark.errors import DateSparkError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="date-spark",
        description="Diversity-aware synthetic rows for heterogeneous tables (DATE) on Spark.",
    )
    parser.add_argument("--version", action="version", version=f"date-spark {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the job: read, discover, generate, select, write")
    _common(run)
    run.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="continue a run from its last finished stage, with its saved config",
    )
    disc = sub.add_parser("discover", help="discover rules only; write them as JSON and a table")
    _common(disc)
    disc.add_argument("--out", metavar="DIR", help="where to write rules.json and rules/ (Parquet)")
    val = sub.add_parser("validate-config", help="print the resolved config (no secrets) and exit")
    _common(val)
    ev = sub.add_parser(
        "evaluate", help="fidelity, privacy and validity of a synthetic table; writes a report"
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
    return parser


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def _cmd_validate(args: argparse.Namespace) -> int:
    from date_spark.io import check_output

    cfg = _config(args)
    if (cfg.input.path or cfg.input.table) and (cfg.output.path or cfg.output.table):
        check_output(cfg.input, cfg.output)
    sys.stdout.write(dump_yaml(cfg))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from date_spark.generation import reject_table
    from date_spark.synthesizer import DateSynthesizer

    if args.resume:
        from date_spark.runs import resume_config

        # the saved run's config, with what this command line states again on top
        cfg = resume_config(args.config, args.overrides, args.resume)
    else:
        cfg = _config(args)
    result = DateSynthesizer(cfg).run(resume=args.resume)
    s = result.summary
    if s.get("headline"):
        print(s["headline"])
    print(s.get("kept", ""))
    print(f"run {result.run_id} done: {result.run_dir}")
    print(f"  input:     {s.get('profile', '')}")
    print(
        f"  rules:     {s.get('rules')} DGRs; arms: {s.get('arms')} groups, "
        f"{s.get('candidate_arms')} candidates, {s.get('selected_arms')} selected"
    )
    rejected = s.get("rejected_rows") or {}
    print(
        f"  generated: {s.get('valid_rows', 0)} valid rows, {sum(rejected.values())} rejected"
        + (" (" + ", ".join(f"{k} {v}" for k, v in rejected.items()) + ")" if rejected else "")
    )
    table = reject_table(s.get("rejected_by_column") or {}, s.get("clipped") or {})
    if table:
        print("  rejects by column (a row counts under every column that failed):")
        for line in table:
            print(f"    {line}")
    print(
        f"  output:    {result.output.get('rows')} rows ({result.output.get('synthetic_rows')} "
        f"synthetic) -> {result.output.get('location')}"
    )
    if result.mlflow_run_id:
        print(f"  mlflow:    run {result.mlflow_run_id} (experiment {cfg.tracking.experiment!r})")
    if s.get("nothing_kept"):
        print(f"  note:      no synthetic row kept: {s['nothing_kept']}")
    if s.get("budget_exhausted"):
        print("  note:      the LLM budget ran out; the output holds what was generated before")
    return 0


def _cmd_discover(args: argparse.Namespace) -> int:
    from pathlib import Path

    from date_spark.synthesizer import DateSynthesizer

    cfg = _config(args)
    synth = DateSynthesizer(cfg).prepare()
    from date_spark.discovery import discover
    from date_spark.split import SPLIT_COL, TEST

    non_test = synth.data_.where(f"{SPLIT_COL} != '{TEST}'")
    found = discover(non_test, synth._discovery_schema(synth.schema_), cfg.discovery, seed=cfg.seed)
    out = Path(args.out or Path(cfg.output.runs_dir) / "discover")
    found.save(out / "rules.json")
    found.rules_frame(synth._session()).write.mode("overwrite").parquet(str(out / "rules"))
    for d in found.dgrs:
        print(f"{d.rule_id}\tsupport={d.support}\terror={d.val_error:.4f}\t{d.rule.to_text()}")
    print(f"{len(found.dgrs)} rules covering {found.coverage:.1%} of training rows -> {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from date_spark.config import InputConfig
    from date_spark.errors import ConfigError, InputError
    from date_spark.evaluation import RULE_COLUMN, evaluate, infer_schema, only_synthetic
    from date_spark.io import read_input, table_format
    from date_spark.report import log_report, render_report
    from date_spark.spark import session

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
    rule_column = args.rule_column or (RULE_COLUMN if RULE_COLUMN in synthetic.columns else None)
    schema = infer_schema(real, args.target)
    result = evaluate(
        real, synthetic, schema, holdout=holdout, train=train, rule_column=rule_column
    )
    paths = render_report(result, out)
    log_report(paths, result=result)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("py4j", "urllib3", "httpx", "httpx2", "openai", "mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handlers = {"run": _cmd_run, "discover": _cmd_discover, "validate-config": _cmd_validate}
    handlers["evaluate"] = _cmd_evaluate
    try:
        return handlers[args.command](args)
    except DateSparkError as err:
        print(f"date-spark: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("date-spark: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
