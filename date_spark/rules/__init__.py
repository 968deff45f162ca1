"""DGR rules: predicates, conjunctions and DNF rules with their four faces (a Spark column, a
pandas mask, text, JSON).

- `algebra.py`: `Predicate`, `Conjunction`, `Rule` and their operations;
- `values.py`: literal values and what a rule allows of each column (`Interval`, `CategorySet`);
- `text.py`: the parser of the text form (`parse_rule`);
- `apply.py`: many rules over a DataFrame in one pass (`assign_rules`, `count_rules`).
"""

from __future__ import annotations

from date_spark.rules.algebra import (
    COMPARISONS,
    NULL_OPS,
    OPS,
    SET_OPS,
    Conjunction,
    Predicate,
    Rule,
)
from date_spark.rules.apply import RuleSet, assign_rules, count_rules
from date_spark.rules.text import parse_rule, parse_rules
from date_spark.rules.values import CategorySet, Interval, Scalar, Value, View

__all__ = [
    "COMPARISONS",
    "NULL_OPS",
    "OPS",
    "SET_OPS",
    "CategorySet",
    "Conjunction",
    "Interval",
    "Predicate",
    "Rule",
    "RuleSet",
    "Scalar",
    "Value",
    "View",
    "assign_rules",
    "count_rules",
    "parse_rule",
    "parse_rules",
]
