"""Generation against the real embedded model (SmolLM2-135M via llama.cpp): slower tier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from date_spark.columns import ARM, RULE
from date_spark.config import Config
from date_spark.generation import DGR_COL, generate
from date_spark.llm.local import LocalModelServer
from date_spark.rules import parse_rule
from date_spark.testing.planted import demo_credit

from .conftest import make_case


@pytest.mark.slow
def test_generation_with_the_local_model_reports_valid_and_rejected_rows(
    spark: Any, tmp_path: Path
) -> None:
    pdf = demo_credit(1200)
    rules = {"young": "age < 30", "south": "age >= 30 and region = 'south'"}
    data, schema, disc = make_case(spark, pdf, "default", "classification", rules)
    cfg = Config().with_overrides(
        {
            "llm.provider": "local",
            "llm.cache_path": str(tmp_path / "cache"),
            "llm.max_tokens": 400,
            "generation.iterations": 1,
            "generation.rows_per_request": 5,
            "generation.requests_per_rule": 1,
            "generation.rows_per_real_row": 0,
            "generation.example_blocks": 1,
            "generation.example_rows": 3,
        }
    )
    with LocalModelServer(cfg.llm.local) as url:
        res = generate(data, disc, schema, cfg, route=disc.route(DGR_COL), base_url=url)
    (stats,) = res.rounds
    assert stats.requests == 2
    assert stats.llm.get("calls", 0) >= 2
    # every answer is accounted for: rows either passed validation or were rejected by reason
    assert stats.valid_rows + sum(stats.rejected.values()) > 0
    assert set(stats.rejected) <= {
        "parse_error", "missing_field", "extra_field", "wrong_type", "invalid_label",
        "out_of_domain", "violates_rule",
    }  # fmt: skip
    assert len(res.rows) > 0, "no valid row: nothing to check against its rule"
    for _, g in res.rows.groupby(ARM):
        assert parse_rule(g[RULE].iloc[0], schema.kinds).mask(g).all()
