"""Re-routing (`generation.reroute`): rows outside the rule they were asked for go to the partition
they do satisfy, with the real stub server writing such rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from date_spark.columns import ARM, RULE
from date_spark.generation import DGR_COL, REQUEST_COL, REST, GenerationResult, generate
from date_spark.rules import parse_rule
from date_spark.testing.stub import StubServer, default_rows, rule_text

from .test_generation import llm_cfg

ROWS = 8


def off_rule_rows(schema: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the asked rule, every other one moved out of it along x0 (inside the data's
    range): asked for R0 (x0 < 0.3) it lands where no DGR is (the rest), else in R0."""
    rows = default_rows(schema, body)
    asked = rule_text(schema) or ""
    for i, r in enumerate(rows):
        if i % 2 and "x0" in r:
            r["x0"] = 0.8 if "x0 < 0.3" in asked else 0.1
    return rows


def _run(spark: Any, planted: Any, tmp_path: Path, reroute: bool) -> GenerationResult:
    data, schema, disc = planted
    cfg = llm_cfg(
        tmp_path,
        **{
            "generation.iterations": 1,
            "generation.rows_per_request": ROWS,
            "generation.reroute": reroute,
        },
    )
    with StubServer(row_factory=off_rule_rows) as url:
        return generate(data, disc, schema, cfg, route=disc.route(DGR_COL), base_url=url)


def test_rule_violating_rows_are_rerouted_to_the_partition_they_satisfy(
    spark: Any, planted: Any, tmp_path: Path
) -> None:
    _, schema, disc = planted
    res = _run(spark, planted, tmp_path, reroute=True)
    stats = res.rounds[0]
    # counts add up: every generated row is valid or rejected for one reason; the re-routed rows
    # are exactly the rule violations, and counted by where they went
    generated = stats.requests * ROWS
    assert generated == stats.valid_rows + sum(stats.rejected.values())
    assert stats.rerouted == stats.rejected["violates_rule"] == generated // 2
    assert stats.rerouted_to == {"R0": ROWS // 2 * 2, REST: ROWS // 2}
    s = res.summary()
    assert s["rerouted"] == stats.rerouted and s["rerouted_to"] == stats.rerouted_to
    assert res.metrics()[f"rerouted_to.{REST}"] == ROWS // 2
    # they appear under the partition they satisfy, in arms of their own
    moved = res.rows[res.rows[REQUEST_COL].str.contains("|rerouted|", regex=False)]
    assert len(moved) == stats.rerouted
    assert moved[ARM].str.contains(".rerouted", regex=False).all()
    assert not res.rows.loc[~res.rows.index.isin(moved.index), ARM].str.contains("rerouted").any()
    assert set(moved[DGR_COL]) == {"R0", REST}
    rules = {d.rule_id: d.rule for d in disc.dgrs}
    for dgr, g in moved.groupby(DGR_COL):
        if dgr == REST:
            covered = pd.concat([r.mask(g) for r in rules.values()], axis=1).any(axis=1)
            assert not covered.any()
        else:
            assert rules[str(dgr)].mask(g).all()
    # none violates the rule of its arm (its new DGR's rule AND its tree path)
    for arm, g in moved.groupby(ARM):
        assert parse_rule(g[RULE].iloc[0], schema.kinds).mask(g).all(), arm
    # the arms table shows them, so selection judges them like any other arm
    arms = res.arms[res.arms["arm_id"].str.contains("rerouted")]
    assert len(arms) and set(arms["dgr_id"]) <= {"R0", REST}


def test_with_reroute_off_rule_violating_rows_are_dropped_as_before(
    spark: Any, planted: Any, tmp_path: Path
) -> None:
    res = _run(spark, planted, tmp_path, reroute=False)
    stats = res.rounds[0]
    generated = stats.requests * ROWS
    assert stats.rejected["violates_rule"] == generated // 2
    assert generated == stats.valid_rows + sum(stats.rejected.values())
    assert stats.rerouted == 0 and stats.rerouted_to == {}
    assert len(res.rows) == stats.valid_rows > 0
    assert not res.rows[ARM].str.contains("rerouted").any()
    assert set(res.rows[DGR_COL]) <= {"R0", "R1", "R2"}
