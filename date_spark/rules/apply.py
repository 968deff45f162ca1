"""Many rules over a DataFrame in one pass: tag each row with the rule it falls under
(`assign_rules`, a projection) or count the rows of every rule in one aggregation
(`count_rules`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from date_spark.errors import RuleError
from date_spark.rules.algebra import Rule

__all__ = ["RuleSet", "assign_rules", "count_rules"]


# ----------------------------------------------------------------------------------------------
# Many rules over a DataFrame, in one pass
# ----------------------------------------------------------------------------------------------

RuleSet: TypeAlias = Mapping[Any, Rule] | Sequence[Rule]


def _items(rules: RuleSet) -> list[tuple[Any, Rule]]:
    if isinstance(rules, Mapping):
        return list(rules.items())
    return list(enumerate(rules))


def assign_rules(
    rules: RuleSet,
    mode: Literal["first", "all"] = "first",
    column: str = "_date_rule_id",
) -> Callable[[DataFrame], DataFrame]:
    """`DataFrame -> DataFrame` adding `column`: the id of the first matching rule (null when none)
    or, with mode="all", the array of all matching ids. A projection: it adds no Spark job."""
    items = _items(rules)
    if mode not in ("first", "all"):
        raise RuleError(f"assign_rules mode must be 'first' or 'all', not {mode!r}")

    def transform(df: DataFrame) -> DataFrame:
        if not items:
            tagged = F.lit(None) if mode == "first" else F.array()
            return df.withColumn(column, tagged)
        if mode == "first":
            expr = None
            for rid, rule in items:
                cond = rule.to_column()
                expr = F.when(cond, F.lit(rid)) if expr is None else expr.when(cond, F.lit(rid))
            assert expr is not None
            return df.withColumn(column, expr)
        arr = F.array(*[F.when(rule.to_column(), F.lit(rid)) for rid, rule in items])
        return df.withColumn(column, F.filter(arr, lambda x: x.isNotNull()))

    return transform


def count_rules(df: DataFrame, rules: RuleSet) -> dict[Any, int]:
    """Rows matched by each rule, all counted in one aggregation (one Spark job)."""
    items = _items(rules)
    if not items:
        return {}
    aggs = [
        F.count(F.when(rule.to_column(), 1)).alias(f"r{i}") for i, (_, rule) in enumerate(items)
    ]
    row = df.agg(*aggs).first()
    assert row is not None
    return {rid: int(row[f"r{i}"]) for i, (rid, _) in enumerate(items)}
