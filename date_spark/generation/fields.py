"""The internal columns generation's frames carry between the driver, the gateway and the scoring
UDF, and what generation needs from discovery's result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pyspark.sql import types as T

from date_spark.columns import ARM, GENERATOR, ROUND, RULE
from date_spark.modeling.features import FeatureEncoder

__all__ = [
    "AGREE_COL",
    "ARM_FIELDS",
    "CANDIDATE_COL",
    "DGR_COL",
    "FIXED_COL",
    "GAIN_COL",
    "GROUP_COL",
    "META_FIELDS",
    "ORDER_COL",
    "POOLED",
    "PRED_COL",
    "QRULE_COL",
    "REQUEST_COL",
    "REROUTED",
    "REST",
    "DiscoveryLike",
]

DGR_COL = "_date_dgr"
REQUEST_COL = "_date_request"
QRULE_COL = "_date_qrule"
GAIN_COL = "_date_gain"
AGREE_COL = "_date_agree"
CANDIDATE_COL = "_date_candidate"
PRED_COL = "_date_predicted"
ORDER_COL = "_date_order"
POOLED = -2  # the leaf id of pooled small paths
REROUTED = "rerouted"  # the question tag (and arm id suffix) of re-routed rows
REST = "_rest"  # the partition of rows no DGR covers (the global model's)
GROUP_COL = "_date_group"  # the scoring partition of a generated row: its DGR, or REST
FIXED_COL = "_date_fixed"  # sample rows trained on but never scored (the rest's covered rows)
META_FIELDS = [
    T.StructField(DGR_COL, T.StringType()),
    T.StructField(ROUND, T.IntegerType()),
    T.StructField(REQUEST_COL, T.StringType()),
    T.StructField(QRULE_COL, T.StringType()),
]
ARM_FIELDS = [
    T.StructField(ARM, T.StringType()),
    T.StructField(RULE, T.StringType()),
    T.StructField(GAIN_COL, T.DoubleType()),
    T.StructField(AGREE_COL, T.BooleanType()),
    T.StructField(CANDIDATE_COL, T.BooleanType()),
    T.StructField(PRED_COL, T.StringType()),
    T.StructField(GENERATOR, T.StringType()),
]


class DiscoveryLike(Protocol):
    """What generation needs from Algorithm 1's result."""

    @property
    def dgrs(self) -> Sequence[Any]: ...  # each has rule_id, rule, support, val_error

    @property
    def encoder(self) -> FeatureEncoder: ...
