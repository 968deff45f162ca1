"""`date-spark` command line. Exit codes: 0 done, 2 bad input or config, 3 endpoint or budget
failure, 1 anything unexpected. Errors print one line naming the problem and the fix."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

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
        "--resume", metavar="RUN_ID", help="continue a run from its last finished stage"
    )
    val = sub.add_parser("validate-config", help="print the resolved config (no secrets) and exit")
    _common(val)
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
    from date_spark.synthesizer import DateSynthesizer

    cfg = _config(args)
    result = DateSynthesizer(cfg).run(resume=args.resume)
    print(f"run {result.run_id}: {result.run_dir}")
    print(f"  input: {result.summary.get('profile', '')}")
    print(f"  stages done: {', '.join(result.stages_done)}")
    if result.stages_not_built:
        print(f"  stages not built yet (skipped): {', '.join(result.stages_not_built)}")
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
    handlers = {"run": _cmd_run, "validate-config": _cmd_validate}
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
