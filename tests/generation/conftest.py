"""A discovery result made from the planted ground truth, so generation is tested on its own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from date_spark.io.split import assign_split
from date_spark.modeling.features import FeatureEncoder
from date_spark.rules import Rule, assign_rules, parse_rule
from date_spark.schema import TableSchema, column_specs
from date_spark.testing.planted import PLANTED_RULES, planted_regimes


@dataclass(frozen=True)
class TruthDGR:
    rule_id: str
    rule: Rule
    support: int
    val_error: float


@dataclass
class TruthDiscovery:
    dgrs: Sequence[TruthDGR]
    encoder: FeatureEncoder

    def route(self, column: str) -> Any:
        return assign_rules({d.rule_id: d.rule for d in self.dgrs}, column=column)


def make_case(
    spark: Any, pdf: pd.DataFrame, target: str, task: str, rules: dict[str, str]
) -> tuple[Any, TableSchema, TruthDiscovery]:
    df = spark.createDataFrame(pdf)
    classes: tuple[Any, ...] = (
        tuple(sorted(pdf[target].unique())) if task == "classification" else ()
    )
    schema = TableSchema(column_specs(df.schema), target, task, classes)
    dgrs = [TruthDGR(k, parse_rule(t, schema.kinds), 500, 0.05) for k, t in rules.items()]
    disc = TruthDiscovery(dgrs, FeatureEncoder.from_pandas(schema, pdf))
    data = df.transform(assign_split(schema.names, 0.2, 0.25, 42))
    return data, schema, disc


@pytest.fixture(scope="module")
def planted(spark: Any) -> tuple[Any, TableSchema, TruthDiscovery]:
    pdf = planted_regimes(2500, n_features=8, seed=3).drop(columns=["regime"])
    rules = {k: PLANTED_RULES[k] for k in ("R0", "R1", "R2")}
    return make_case(spark, pdf, "y", "classification", rules)
