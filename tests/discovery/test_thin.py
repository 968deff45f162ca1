"""Thin segments: regions below the support floor, kept as segments to generate for."""

from __future__ import annotations

from typing import Any

import pytest

from date_spark.config import DiscoveryConfig
from date_spark.discovery import Discovery, discover
from date_spark.testing.planted import planted_regimes, planted_truth

from .test_discovery import planted_schema, to_spark


@pytest.fixture(scope="module")
def found(spark: Any) -> tuple[Discovery, Any]:
    """3,000 planted rows with the thin segment R5 (about 130 rows) and a support floor of 200
    rows: R0 without R5 is a DGR, R5 is too small for a model of its own."""
    pdf = planted_regimes(3000, n_features=8, seed=11, segment=True)
    cfg = DiscoveryConfig(min_rows=200, thin_min_rows=20)
    disc = discover(to_spark(spark, pdf), planted_schema(pdf), cfg, seed=42)
    return disc, pdf


def test_a_region_below_the_floor_is_kept_as_a_thin_segment(found: tuple[Discovery, Any]) -> None:
    disc, pdf = found
    assert disc.thin, "the thin segment R5 should be left below the floor"
    for t in disc.thin:  # the DGRs never cover a thin segment's rows
        m = t.rule.mask(pdf).to_numpy()
        assert 20 <= t.support <= 200 and m.sum() == t.support
        assert not any(d.rule.mask(pdf[m]).any() for d in disc.dgrs)
    # one of them is (almost only) R5, the planted segment (measured: 99 of 100 rows)
    regime = planted_truth(pdf.drop(columns="regime"), segment=True)["regime"]
    shares = [(regime[t.rule.mask(pdf).to_numpy()] == 5).mean() for t in disc.thin]
    assert max(shares) > 0.9, [
        (t.rule.to_text(), s) for t, s in zip(disc.thin, shares, strict=True)
    ]


def test_thin_segments_survive_save_and_load(found: tuple[Discovery, Any], tmp_path: Any) -> None:
    disc, _ = found
    back = Discovery.load(disc.save(tmp_path / "d.json"))
    assert [(t.rule_id, t.rule, t.support) for t in back.thin] == [
        (t.rule_id, t.rule, t.support) for t in disc.thin
    ]


def test_thin_min_rows_zero_keeps_none(spark: Any) -> None:
    pdf = planted_regimes(3000, n_features=8, seed=11, segment=True)
    cfg = DiscoveryConfig(min_rows=200, thin_min_rows=0)
    assert discover(to_spark(spark, pdf), planted_schema(pdf), cfg, seed=42).thin == []
