"""Validity of a synthetic table: share of rows satisfying the rule in their rule column, schema
adherence, category adherence and boundary adherence (SDMetrics' CategoryAdherence and
BoundaryAdherence), in one aggregation over the raw synthetic table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from date_spark.columns import RESERVED_PREFIX, named_col
from date_spark.errors import RuleError
from date_spark.evaluation.settings import EvaluationSettings
from date_spark.evaluation.stats import Stats
from date_spark.evaluation.tables import Alignment, cast_to, mean_of, numeric_col, try_cast_column
from date_spark.rules import Rule, parse_rule
from date_spark.schema import ColumnSpec, Kind, TableSchema

_RAW_PREFIX = RESERVED_PREFIX + "eval_raw_"


@dataclass(frozen=True)
class RuleCheck:
    rule: str
    rows: int
    satisfied: int
    error: str | None = None


@dataclass(frozen=True)
class Validity:
    rule_column: str | None
    rule_rows: int
    rule_satisfied: int
    rule_share: float | None
    rows_without_rule: int
    rules: list[RuleCheck]
    rules_truncated: bool
    missing_columns: list[str]
    extra_columns: list[str]
    type_mismatches: dict[str, str]
    uncastable_values: dict[str, int]
    castable_rows: int
    schema_adherence: float
    category_adherence: dict[str, float | None]
    category_adherence_score: float | None
    boundary_adherence: dict[str, float | None]
    boundary_adherence_score: float | None


def _parse_any(text: str, kinds: Mapping[str, Kind]) -> Rule:
    if text.lstrip().startswith("{"):
        return Rule.from_json(text, kinds)
    return parse_rule(text, kinds)


def measure_validity(
    synthetic: DataFrame,
    schema: TableSchema,
    align: Alignment,
    shared: Sequence[ColumnSpec],
    cont: Sequence[ColumnSpec],
    rs: Stats,
    rule_column: str | None,
    category_adherence: dict[str, float | None],
    st: EvaluationSettings,
) -> Validity:
    fields = {f.name: f.dataType.simpleString() for f in synthetic.schema.fields}
    raw = [f"{_RAW_PREFIX}{i}" for i in range(len(shared))]
    frame = _raw_and_cast(synthetic, shared, fields, raw, rule_column)
    rule_texts, rows_without_rule, truncated = _rule_texts(frame, rule_column, st)
    parsed = _parse_rules(rule_texts, {s.name: s.kind for s in shared})
    aggs = [
        F.count(F.lit(1)).alias("rows"),
        *_cast_aggs(shared, fields, raw),
        *_boundary_aggs(cont, rs),
        *_rule_aggs(parsed, rule_column),
    ]
    row = frame.agg(*aggs).first()
    assert row is not None
    rows = int(row["rows"])
    uncastable = {s.name: int(row[f"u{i}"]) for i, s in enumerate(shared)}
    castable = int(row["castable"])
    present = len(shared) / len(schema.columns)
    schema_adherence = present * (castable / rows if rows else 0.0)
    boundary: dict[str, float | None] = {}
    for i, s in enumerate(cont):
        n = int(row[f"bn{i}"])
        boundary[s.name] = int(row[f"bi{i}"]) / n if n else None
    checks = [
        RuleCheck(text, n, int(row[f"r{k}"]) if rule is not None else 0, err)
        for k, (text, n, rule, err) in enumerate(parsed)
    ]
    rule_rows = sum(c.rows for c in checks)
    satisfied = sum(c.satisfied for c in checks)
    return Validity(
        rule_column=rule_column,
        rule_rows=rule_rows,
        rule_satisfied=satisfied,
        rule_share=satisfied / rule_rows if rule_rows else None,
        rows_without_rule=rows_without_rule,
        rules=checks,
        rules_truncated=truncated,
        missing_columns=align.missing,
        extra_columns=align.extra,
        type_mismatches=align.mismatches,
        uncastable_values={k: v for k, v in uncastable.items() if v},
        castable_rows=castable,
        schema_adherence=schema_adherence,
        category_adherence=category_adherence,
        category_adherence_score=mean_of(list(category_adherence.values())),
        boundary_adherence=boundary,
        boundary_adherence_score=mean_of(list(boundary.values())),
    )


def _raw_and_cast(
    synthetic: DataFrame,
    shared: Sequence[ColumnSpec],
    fields: Mapping[str, str],
    raw: Sequence[str],
    rule_column: str | None,
) -> DataFrame:
    """Each shared column twice, cast to the schema's type and as written (`raw`), and the rule
    column as text: the checks compare the two."""
    staged = synthetic.select(
        *[named_col(s.name).alias(raw[i]) for i, s in enumerate(shared)],
        *([named_col(rule_column).cast("string").alias(rule_column)] if rule_column else []),
    )
    return staged.select(
        *[cast_to(s, fields[s.name], raw[i]).alias(s.name) for i, s in enumerate(shared)],
        *[F.col(r) for r in raw],
        *([named_col(rule_column)] if rule_column else []),
    )


def _rule_texts(
    frame: DataFrame, rule_column: str | None, st: EvaluationSettings
) -> tuple[list[tuple[str, int]], int, bool]:
    """The rules in the rule column with their rows (most rows first, at most `max_rules`), the
    rows without a rule, and whether more rules were left out."""
    rule_texts: list[tuple[str, int]] = []
    rows_without_rule = 0
    if not rule_column:
        return rule_texts, rows_without_rule, False
    rc = named_col(rule_column)
    grouped = (
        frame.groupBy(rc.alias("rule"))
        .count()
        .orderBy(F.col("rule").isNull().desc(), F.desc("count"), F.asc("rule"))
        .limit(st.max_rules + 2)
        .collect()
    )
    for r in grouped:
        if r["rule"] is None:
            rows_without_rule = int(r["count"])
        else:
            rule_texts.append((str(r["rule"]), int(r["count"])))
    truncated = len(rule_texts) > st.max_rules
    return rule_texts[: st.max_rules], rows_without_rule, truncated


def _parse_rules(
    rule_texts: Sequence[tuple[str, int]], kinds: Mapping[str, Kind]
) -> list[tuple[str, int, Rule | None, str | None]]:
    """(text, rows, rule or None, parse error or None) per rule text."""
    parsed: list[tuple[str, int, Rule | None, str | None]] = []
    for text, n in rule_texts:
        try:
            parsed.append((text, n, _parse_any(text, kinds), None))
        except RuleError as err:
            parsed.append((text, n, None, str(err)))
    return parsed


def _cast_aggs(
    shared: Sequence[ColumnSpec], fields: Mapping[str, str], raw: Sequence[str]
) -> list[Column]:
    """`u{i}`: values of column i that do not survive the cast; `castable`: rows with none."""
    uncast: list[Column] = []
    aggs: list[Column] = []
    for i, s in enumerate(shared):
        # A value is uncastable when it is present but does not survive the cast (NaN -> null is
        # normalisation, so the check looks at the cast before it).
        cast = (
            F.col(raw[i])
            if fields[s.name] == s.spark_type
            else try_cast_column(raw[i], s.spark_type)
        )
        bad = F.col(raw[i]).isNotNull() & cast.isNull()
        uncast.append(bad)
        aggs.append(F.count(F.when(bad, 1)).alias(f"u{i}"))
    aggs.append(F.count(F.when(~reduce(lambda a, b: a | b, uncast), 1)).alias("castable"))
    return aggs


def _boundary_aggs(cont: Sequence[ColumnSpec], rs: Stats) -> list[Column]:
    """`bn{i}`, `bi{i}`: present values of ordered column i, and those within the real range."""
    aggs: list[Column] = []
    for i, s in enumerate(cont):
        lo, hi = rs.lo[s.name], rs.hi[s.name]
        x = numeric_col(s)
        inside = x.between(lo, hi) if lo is not None and hi is not None else F.lit(False)
        aggs += [F.count(x).alias(f"bn{i}"), F.count(F.when(inside, 1)).alias(f"bi{i}")]
    return aggs


def _rule_aggs(
    parsed: Sequence[tuple[str, int, Rule | None, str | None]], rule_column: str | None
) -> list[Column]:
    """`r{k}`: rows tagged with rule k that satisfy it (rules that did not parse: none)."""
    aggs: list[Column] = []
    for k, (text, _, rule, _) in enumerate(parsed):
        if rule is not None:
            hit = (named_col(str(rule_column)) == F.lit(text)) & rule.to_column()
            aggs.append(F.count(F.when(hit, 1)).alias(f"r{k}"))
    return aggs


__all__ = [
    "RuleCheck",
    "Validity",
    "measure_validity",
]
