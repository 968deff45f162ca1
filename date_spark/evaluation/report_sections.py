"""The report's sections, one function each: `ReportInputs` in, a `Section` (or None: nothing to
show) out. `SECTIONS` is their order on the page."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from date_spark.evaluation.report_format import (
    MAX_TABLE_ROWS,
    count_text,
    escape,
    fmt,
    html_table,
    img_tag,
    is_number,
    is_whole,
    to_number,
)
from date_spark.evaluation.report_inputs import ReportInputs, Section
from date_spark.evaluation.report_plots import (
    barh_plot,
    errors_plot,
    plot_distribution,
    plot_pair_heatmap,
    trace_plot,
    trace_steps,
)
from date_spark.selection.gain import bar

PRIVACY_RULE_WORDS = (
    "The synthetic rows are flagged as too close to the training data when either test fires. "
    "(1) Near neighbours: take the distance from each real row the generator never saw (the "
    "holdout) to its nearest training row; 5% of holdout rows are closer than some distance q. "
    "If clearly more than 5% of synthetic rows are closer than q, they sit nearer the training "
    "rows than new real data does. (2) Copies: the share of synthetic rows that equal a training "
    "row is compared with the share of holdout rows that do. 'Clearly more' means by more than "
    "5 percentage points and by more than three standard errors, so a handful of rows cannot "
    "raise the flag by chance."
)


def _errors_section(inp: ReportInputs) -> Section | None:
    if not inp.errors:
        return None
    body = img_tag(
        errors_plot(inp.errors, f"test {inp.error_name}"), "errors", "test error before and after"
    )
    body += (
        "<p class='note'>On the job's own test split (rows no stage ever used). <b>no "
        "partition</b>: one model on the training rows; <b>partition only</b>: one model per "
        "discovered rule, the rest to the global model; <b>DATE</b>: the same with the kept "
        "synthetic rows added to their rule's model; <b>global + synthetic</b>, where shown: one "
        "model on the training rows plus the kept rows (what a user of the output gets). Lower "
        "is better.</p>"
    )
    body += html_table(
        ["setting", f"test {inp.error_name}"],
        [(k, fmt(float(x))) for k, x in inp.errors.items()],
        numeric=[False, True],
    )
    return Section("errors", "Error before and after", body)


_SETTINGS = ("no_partition", "partition_only", "date", "global_synthetic", "relative_reduction")
_GAIN_COLUMNS = ("gain", "relative", "low", "high", "significant")


def _utility_cell(column: str, v: float | None) -> str:
    if v is None:
        return ""
    if column in ("relative", "relative_reduction"):
        return fmt(v, pct=True)
    if column == "rows" or column.endswith("_rows"):
        return count_text(v)
    if column == "significant":
        return {1: "better", -1: "worse"}.get(int(v), "no") if is_number(v) else "n/a"
    return fmt(v)


def _utility_section(inp: ReportInputs) -> Section | None:
    """The flat utility numbers as tables: `group.column` keys (`group` may hold dots itself, as in
    `segment.<name>.low`), one table per set of columns (losses per variant; gains with their
    interval), counts as a line."""
    util = inp.utility_numbers
    if not util:
        return None
    counts = {k: v for k, v in util.items() if "." not in k}
    groups: dict[str, dict[str, float]] = {}
    for k, v in util.items():
        if "." in k:
            group, column = k.rsplit(".", 1)  # "segment.<name>.low": the name may hold dots
            groups.setdefault(group, {})[column] = v
    order = {c: i for i, c in enumerate((*_SETTINGS, *_GAIN_COLUMNS))}
    tables: dict[tuple[str, ...], list[str]] = {}
    for group, vals in groups.items():
        cols = tuple(sorted(vals, key=lambda c: (order.get(c, len(order)), c)))
        tables.setdefault(cols, []).append(group)
    body = ""
    if counts:
        body += (
            "<p class='note'>"
            + ", ".join(
                f"{escape(k.replace('_', ' '))}: {count_text(v)}" for k, v in counts.items()
            )
            + "</p>"
        )
    for cols, names in tables.items():
        body += html_table(
            ["", *[c.replace("_", " ") for c in cols]],
            [
                (g.replace("_", " "), *[_utility_cell(c, groups[g].get(c)) for c in cols])
                for g in names
            ],
            "utility",
            numeric=[False, *[True] * len(cols)],
        )
    body += (
        f"<p class='note'>Losses: test {escape(inp.error_name)}, lower is better. Gains: loss "
        "before minus after (above 0 is better) with the low and high end of its interval; "
        "relative = gain / loss before.</p>"
    )
    return Section("utility", "Utility", body)


def _power_section(inp: ReportInputs) -> Section | None:
    """The confirmation test and, per partition, the smallest loss reduction its rows could have
    detected: the answer to "would more rows have helped?" when nothing was kept."""
    c = inp.power
    if not c:
        return None
    body = _confirmation_text(c) + _mde_note(c) + _power_table(c)
    return Section("power", "Minimum detectable effect", body)


def _confirmation_text(c: Mapping[str, Any]) -> str:
    """Whether the confirmation test ran, and if so its verdict, loss change and z."""
    if not c.get("tested"):
        return (
            "<p class='note'>The confirmation test did not run (nothing to confirm, or "
            "<code>selection.confirm</code> is off).</p>"
        )
    z, min_z, gain, base = (to_number(c.get(k)) for k in ("z", "min_z", "gain", "baseline_loss"))
    change = -gain / base if base > 0 else math.nan  # below 0: the loss went down
    verdict = (
        "<span class='good-text'>passed</span>"
        if c.get("passed")
        else "<span class='poor-text'>failed</span>"
    )
    return (
        f"<p>Confirmation: {verdict}. The searched set changed the loss on "
        f"{count_text(c.get('rows'))} confirmation rows by "
        f"{f'{change:+.1%}' if math.isfinite(change) else 'n/a'} (below 0 is better) with "
        f"z = {fmt(z, digits=2)}; passing needs a lower loss and z above "
        f"{fmt(min_z, digits=2)}.</p>"
    )


def _mde_note(c: Mapping[str, Any]) -> str:
    """What the minimum detectable effect and the ceiling columns mean."""
    level = to_number(c.get("power"))
    at = f"{level:.0%}" if math.isfinite(level) else "the configured"
    return (
        "<p class='note'>Minimum detectable effect: the smallest mean loss reduction a "
        f"partition's confirmation rows would detect with {at} power at the confirmation's "
        "z threshold, in loss units and as a share of the partition's loss. A gain smaller than "
        'that cannot be told from noise on these rows, so "nothing kept" there means "too '
        'few rows to see it", not "no effect". "What its last real rows bought" is the '
        "ceiling: the loss reduction the partition's last real rows (as many as the budget, "
        "at most half) bought on the same rows; new rows of the real distribution, the best "
        "a generator can write, buy about that much or less. Partitions with most rows first.</p>"
    )


def _power_table(c: Mapping[str, Any]) -> str:
    """One row per partition (most rows first), its test when there are per-partition tests,
    and a total row over all confirmation rows."""
    parts = sorted(c.get("partitions") or (), key=lambda p: -to_number(p.get("rows")))
    tests = {str(t.get("key")): t for t in c.get("tests") or ()}
    rows: list[tuple[Any, ...]] = [
        (
            str(p.get("key", "")),
            count_text(p.get("rows")),
            fmt(p.get("loss")),
            fmt(p.get("mde")),
            fmt(p.get("mde_relative"), pct=True),
            ceiling_text(p),
            _partition_test(tests.get(str(p.get("key")))),
        )
        for p in parts[:MAX_TABLE_ROWS]
    ]
    rows.append(
        (
            "all confirmation rows",
            count_text(c.get("rows")),
            fmt(c.get("baseline_loss")),
            fmt(c.get("mde")),
            fmt(c.get("mde_relative"), pct=True),
            "",
            "",
        )
    )
    headers = [
        "partition",
        "confirmation rows",
        "loss",
        "detectable reduction",
        "as share of loss",
        "what its last real rows bought",
    ]
    if tests:  # per-partition tests (Holm's step-down): which partitions' arms were kept
        headers.append("test of its arms")
    return html_table(
        headers,
        [r[: len(headers)] for r in rows],
        "power",
        numeric=[False, True, True, True, True, False][: len(headers)],
        row_classes=[""] * (len(rows) - 1) + ["total"],
    )


def _partition_test(t: Mapping[str, Any] | None) -> str:
    """One partition's confirmation test (`PartitionTest.to_dict()`) in words."""
    if t is None:
        return "no arm to test"
    base, loss = to_number(t.get("baseline_loss")), to_number(t.get("loss"))
    change = f"{(loss - base) / base:+.1%}" if base > 0 else "n/a"
    verdict = "kept" if t.get("passed") else "dropped"
    return (
        f"loss {change}, z {fmt(to_number(t.get('z')), digits=2)} vs "
        f"{fmt(to_number(t.get('threshold')), digits=2)}: {verdict}"
    )


def _fidelity_section(inp: ReportInputs) -> Section | None:
    r = inp.result
    if r is None:
        return None
    f = r.fidelity
    body = ""
    if inp.too_few and inp.noise is not None:
        body += (
            f"<p class='poor-text'>With {count_text(r.synthetic_rows)} synthetic rows these scores "
            f"mostly measure sampling noise (see the warning at the top).</p>"
        )
    body += (
        "<p class='note'>Scores run from 0 (unlike the real data) to 1 (same distribution). "
        "SDMetrics definitions: KSComplement (numeric, date), TVComplement (categorical, "
        "boolean), CorrelationSimilarity (numeric pairs, full tables), ContingencySimilarity "
        "(other pairs, on a sample of "
        f"{count_text(f.contingency_sample_rows.get('real', 0))} real / "
        f"{count_text(f.contingency_sample_rows.get('synthetic', 0))} synthetic rows).</p>"
    )
    body += html_table(
        ["column", "metric", "score", "real non-null", "synthetic non-null"],
        [
            (
                s.column,
                s.metric,
                fmt(s.score),
                count_text(s.real_non_null),
                count_text(s.synthetic_non_null),
            )
            for s in f.column_shapes
        ],
        "shapes",
        numeric=[False, False, True, True, True],
    )
    heat = plot_pair_heatmap(r)
    if heat:
        body += img_tag(heat, "pair-trends", "column pair trends heatmap")
    worst = sorted(f.pair_trends, key=lambda t: (t.score is None, t.score if t.score else 0.0))
    shown = worst[:MAX_TABLE_ROWS]
    if shown:
        body += (
            f"<p class='note'>Column pairs, lowest score first ({count_text(len(shown))} of "
            f"{count_text(len(f.pair_trends))}).</p>"
        )
        body += html_table(
            ["column 1", "column 2", "metric", "score", "real corr", "synthetic corr"],
            [
                (
                    t.column_1,
                    t.column_2,
                    t.metric,
                    fmt(t.score),
                    fmt(t.real_correlation),
                    fmt(t.synthetic_correlation),
                )
                for t in shown
            ],
            "pairs",
            numeric=[False, False, False, True, True, True],
        )
    return Section("fidelity", "Fidelity", body)


def _distributions_section(inp: ReportInputs) -> Section | None:
    r = inp.result
    if r is None or not r.distributions:
        return None
    body = "<div class='grid'>"
    for d in r.distributions:
        body += img_tag(
            plot_distribution(d), "distribution", f"distribution of {d.column}", d.column
        )
    body += "</div>"
    return Section("distributions", "Distributions, real vs synthetic", body)


def _privacy_section(inp: ReportInputs) -> Section | None:
    r = inp.result
    if r is None:
        return None
    p = r.privacy
    verdict = (
        "<span class='note'>not tested: no holdout</span>"
        if p.too_close is None
        else (
            "<span class='poor-text'>TOO CLOSE</span>"
            if p.too_close
            else "<span class='good-text'>ok</span>"
        )
    )
    body = f"<p>Verdict: {verdict}. {escape(p.reason)}.</p>"
    body += f"<p class='rule-words'>{escape(PRIVACY_RULE_WORDS)}</p>"
    body += (
        "<details><summary>the rule as a formula</summary>"
        f"<p><code>{escape(p.rule)}</code></p></details>"
    )
    prow: list[tuple[str, str]] = [
        (
            "exact copies of a training row",
            f"{count_text(p.exact_copies)} ({fmt(p.exact_copy_rate, True)})",
        ),
        ("holdout rows equal to a training row", fmt(p.holdout_exact_copy_rate, True)),
        ("training rows in the distance reference sample", count_text(p.reference_rows)),
    ]
    for name, stats in (("synthetic", p.dcr_synthetic), ("holdout", p.dcr_holdout)):
        if stats is not None:
            prow.append(
                (
                    f"distance to the closest training row, {name} ({count_text(stats.rows)} rows)",
                    f"5th percentile {stats.p05:.4f}, median {stats.median:.4f}, mean "
                    f"{stats.mean:.4f}; at distance 0: {stats.zero_share:.1%}",
                )
            )
    if p.holdout_p05 is not None:
        prow.append(
            (
                "share within the holdout's 5th-percentile distance",
                f"synthetic {fmt(p.synthetic_share_within_p05, True)}, holdout "
                f"{fmt(p.holdout_share_within_p05, True)}",
            )
        )
    body += html_table(["measure", "value"], prow, "privacy")
    return Section("privacy", "Privacy", body)


def _validity_section(inp: ReportInputs) -> Section | None:
    r = inp.result
    if r is None:
        return None
    v = r.validity
    vrow: list[tuple[str, str]] = [
        ("rule column", v.rule_column or "(none)"),
        (
            "rows satisfying their rule",
            f"{count_text(v.rule_satisfied)} of {count_text(v.rule_rows)} "
            f"({fmt(v.rule_share, True)})",
        ),
        ("rows without a rule", count_text(v.rows_without_rule)),
        ("schema adherence", fmt(v.schema_adherence)),
        ("missing columns", ", ".join(v.missing_columns) or "none"),
        ("extra columns", ", ".join(v.extra_columns) or "none"),
        (
            "type differences",
            ", ".join(f"{k}: {t}" for k, t in v.type_mismatches.items()) or "none",
        ),
        (
            "uncastable values",
            ", ".join(f"{k}: {count_text(n)}" for k, n in v.uncastable_values.items()) or "none",
        ),
        ("category adherence", fmt(v.category_adherence_score)),
        ("boundary adherence", fmt(v.boundary_adherence_score)),
    ]
    body = "<p class='note'>Shares from 0 to 1, higher is better: 1 means every synthetic value "
    body += "is a known category or within the real column's range.</p>"
    body += html_table(["measure", "value"], vrow, "validity")
    per_col = [(c, "category", fmt(x)) for c, x in v.category_adherence.items()] + [
        (c, "boundary", fmt(x)) for c, x in v.boundary_adherence.items()
    ]
    if per_col:
        body += html_table(
            ["column", "adherence", "share"], per_col, "adherence", numeric=[False, False, True]
        )
    if v.rules:
        body += html_table(
            ["rule", "rows", "satisfied", "problem"],
            [
                (r.rule, count_text(r.rows), count_text(r.satisfied), r.error or "")
                for r in v.rules[:MAX_TABLE_ROWS]
            ],
            "rules",
            numeric=[False, True, True, False],
        )
    return Section("validity", "Validity", body)


def _coverage_section(inp: ReportInputs) -> Section | None:
    if not inp.coverage:
        return None
    values = {k: float(x) for k, x in inp.coverage.items()}
    whole = all(float(x).is_integer() for x in values.values())
    unit = "training rows" if whole else "support"
    body = img_tag(barh_plot(values, f"{unit} per rule", unit), "coverage", "dgr coverage")
    ranked = sorted(values.items(), key=lambda kv: -kv[1])
    body += html_table(
        ["rule", unit],
        [(k, count_text(x) if whole else fmt(x)) for k, x in ranked],
        numeric=[False, True],
    )
    return Section("coverage", "DGR coverage", body)


def _arms_section(inp: ReportInputs) -> Section | None:
    if not inp.arm_gains:
        return None
    values = {k: float(x) for k, x in inp.arm_gains.items()}
    body = (
        "<p class='note'>Each arm is a group of generated rows (one rule, one decision-tree "
        "path). Gain: how much adding the group lowered its partition's validation error when "
        "it was generated; above 0 makes it a candidate for selection.</p>"
    )
    if len(values) > 1:  # one bar says nothing the table does not
        body += img_tag(
            barh_plot(values, "validation gain per arm", "gain"), "arm-gains", "arm gains"
        )
    ranked = sorted(values.items(), key=lambda kv: -kv[1])
    body += html_table(
        ["arm", "gain"], [(k, fmt(x)) for k, x in ranked[:MAX_TABLE_ROWS]], numeric=[False, True]
    )
    return Section("arms", "Arm gains", body)


_COUNT_KEYS = {"step", "rows", "round", "evaluations"}


def _trace_section(inp: ReportInputs) -> Section | None:
    trace = inp.selection_trace
    if not trace:
        return None
    body = ""
    tp = trace_plot(trace)
    if tp:
        body += img_tag(tp, "selection-trace", "selection trace")
    keys: list[str] = []
    for r in trace:
        keys += [k for k in r if k not in keys and k != "step"]
    steps = trace_steps(trace)

    def show(k: str, v: Any) -> str:
        if k in _COUNT_KEYS or (k.endswith("_rows") and is_whole(v)):
            return count_text(v)
        if isinstance(v, float) and math.isnan(v):
            return ""
        return fmt(v)

    rows = [(s, *[show(k, r.get(k)) for k in keys]) for s, r in zip(steps, trace, strict=True)]
    numeric = [True, *[any(is_number(r.get(k)) for r in trace) for k in keys]]
    accepted = ["accepted" if r.get("accepted") is True else "" for r in trace]
    body += (
        "<p class='note'>One row per evaluation; kept arms are highlighted. quality, diversity "
        "and utility are the bandit's normalised parts (utility = alpha x quality + (1 - alpha) "
        "x diversity); gain is the change of the validation score and z its significance.</p>"
    )
    body += html_table(
        ["step", *keys],
        rows[:MAX_TABLE_ROWS],
        "trace",
        numeric=numeric,
        row_classes=accepted[:MAX_TABLE_ROWS],
    )
    return Section("trace", "Selection trace", body)


SectionBuilder = Callable[[ReportInputs], "Section | None"]
SECTIONS: tuple[SectionBuilder, ...] = (
    _errors_section,
    _utility_section,
    _power_section,
    _fidelity_section,
    _distributions_section,
    _privacy_section,
    _validity_section,
    _coverage_section,
    _arms_section,
    _trace_section,
)


def ceiling_text(p: Mapping[str, Any]) -> str:
    """The partition's ceiling cell: what its last n real rows did to its loss (a reduction)."""
    n, rel = p.get("ceiling_rows") or 0, to_number(p.get("ceiling_relative"))
    if not n or not math.isfinite(rel):
        return ""
    return f"{fmt(rel, pct=True)} ({count_text(n)} rows)"


def keep_section(decision: Mapping[str, Any]) -> Section:
    """The gain rule's decision (`GainDecision.to_dict()`): what the kept rows are expected to do
    to the user's model, with the interval, and per partition every volume tried, so a reader
    sees what the generator's rows were worth where nothing was kept."""
    q = 1.959964
    keep_z, power = to_number(decision.get("keep_z")), to_number(decision.get("power"))
    candidates = int(to_number(decision.get("candidates")) if decision.get("candidates") else 1)
    z_bar = bar(keep_z, candidates) if math.isfinite(keep_z) else keep_z
    over = (
        f" (keep_z {fmt(keep_z, digits=2)} over {candidates} candidates: partitions + union)"
        if candidates > 1
        else ""
    )
    z_power = 0.841621 if not math.isfinite(power) else _z_of(power)
    joint = decision.get("joint") or None
    intro = (
        f"<p>Rows are kept by their expected effect on one model of the configured kind trained "
        f"on real + kept rows: {count_text(decision.get('folds'))}-fold cross-fitting repeated "
        f"{count_text(decision.get('repeats'))} times over "
        f"{count_text(decision.get('scored_rows'))} "
        f"real rows, a standard error that respects the folds, every estimate shrunk toward 0 "
        f"across partitions, kept when the posterior z exceeds {fmt(z_bar, digits=2)}{over}.</p>"
    )
    if joint:
        base = to_number(joint.get("base_loss"))
        rel, se = to_number(joint.get("shrunk")) / base, to_number(joint.get("shrunk_se")) / base
        intro += (
            f"<p>The kept rows together: expected loss change <b>{-rel:+.1%}</b> "
            f"(95% interval [{-(rel + q * se):+.1%}, {-(rel - q * se):+.1%}]; below 0 is "
            "better).</p>"
        )
    else:
        intro += "<p>Nothing was kept: no partition's rows showed a gain this test can see.</p>"
    rows = []
    for p in decision.get("partitions") or []:
        for e in p.get("tried") or []:
            base = to_number(e.get("base_loss"))
            g, se = to_number(e.get("gain")) / base, to_number(e.get("se")) / base
            post_z = to_number(e.get("shrunk")) / to_number(e.get("shrunk_se")) if to_number(
                e.get("shrunk_se")
            ) > 0 else 0.0  # fmt: skip
            kept = bool(p.get("kept")) and e.get("rows") == p.get("rows")
            rows.append(
                [
                    p.get("key"), count_text(p.get("real_rows")), count_text(e.get("rows")),
                    f"{-g:+.1%}", f"[{-(g + q * se):+.1%}, {-(g - q * se):+.1%}]",
                    fmt(post_z, digits=2), f"{(z_bar + z_power) * se:.1%}",
                    "kept" if kept else "",
                ]
            )  # fmt: skip
    table = html_table(
        ["partition", "real rows", "generated rows tried", "loss change", "95% interval",
         "posterior z", "smallest visible gain", ""],
        rows,
        numeric=[False, True, True, True, False, True, True, False],
    ) if rows else ""  # fmt: skip
    note = (
        "<p class='note'>Loss change: the cross-fitted change of the mean loss before shrinkage. "
        f"Smallest visible gain: the gain this test detects with {power:.0%} power at its "
        "threshold, given that volume's standard error.</p>"
        if rows
        else ""
    )
    return Section("keep", "Which rows were kept, and what they are worth", intro + table + note)


def _z_of(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


__all__ = [
    "PRIVACY_RULE_WORDS",
    "SECTIONS",
    "SectionBuilder",
    "ceiling_text",
    "keep_section",
]
