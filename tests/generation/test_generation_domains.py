"""Issue 15: generated values slightly past the observed range are accepted within the margin,
and rows outside it are counted per column, through a real stub endpoint and Spark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from date_spark.config import Config
from date_spark.generation import DGR_COL, generate, reject_table
from date_spark.testing.stub import StubServer, default_rows, row_schema_of

from .test_generation import llm_cfg

NEAR, FAR, BAD_ROWS = 0.05, 0.5, 2


def past_the_range(schema: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    """Rule-abiding rows with x6 a little past its observed maximum (inside a 10% margin) and,
    in the first BAD_ROWS rows of each reply, x7 far past it. Neither column is in a rule, so
    the schema's bounds for them are the observed range."""
    props, _ = row_schema_of(schema)
    if set(props) == {"rule"}:
        return []
    rows = default_rows(schema, body)
    for col, frac, n in (("x6", NEAR, len(rows)), ("x7", FAR, BAD_ROWS)):
        lo, hi = props[col]["minimum"], props[col]["maximum"]
        for r in rows[:n]:
            r[col] = hi + frac * (hi - lo)
    return rows


def cfg(tmp_path: Path, **over: Any) -> Config:
    return llm_cfg(
        tmp_path,
        **{
            "generation.iterations": 1,
            "generation.rows_per_request": 6,
            "generation.requests_per_rule": 2,
            "generation.rows_per_real_row": 0,
            **over,
        },
    )


def test_rows_within_the_margin_are_kept_and_the_others_counted_by_column(
    spark: Any, planted: Any, tmp_path: Path
) -> None:
    data, schema, disc = planted
    train = data.where("_date_split = 'train'")
    with StubServer(row_factory=past_the_range) as url:
        res = generate(data, disc, schema, cfg(tmp_path), route=disc.route(DGR_COL), base_url=url)
    (stats,) = res.rounds
    requests = stats.requests
    assert requests == 3 * 2
    # x7 killed BAD_ROWS rows per reply, and nothing else did
    assert stats.rejected == {"out_of_domain": BAD_ROWS * requests}
    assert stats.rejected_by_column == {"x7": {"out_of_domain": BAD_ROWS * requests}}
    assert stats.valid_rows == (6 - BAD_ROWS) * requests
    # ... while x6, past the largest training value seen, was accepted as written
    seen_max = train.agg({"x6": "max"}).first()[0]
    assert len(res.rows) > 0
    assert (res.rows["x6"] > seen_max).all()
    # the summary, its flat metrics and the printed table carry the same counts
    s = res.summary()
    assert s["rejected_by_column"] == {"x7": {"out_of_domain": BAD_ROWS * requests}}
    assert res.metrics()["rejected_by_column.x7.out_of_domain"] == BAD_ROWS * requests
    lines = reject_table(s["rejected_by_column"], s["clipped"])
    assert lines[0].split() == ["column", "out_of_domain"]
    assert lines[1].split() == ["x7", str(BAD_ROWS * requests)]


def test_without_a_margin_the_near_column_kills_every_row(
    spark: Any, planted: Any, tmp_path: Path
) -> None:
    data, schema, disc = planted
    c = cfg(tmp_path, **{"generation.domain_margin": 0.0})
    with StubServer(row_factory=past_the_range) as url:
        res = generate(data, disc, schema, c, route=disc.route(DGR_COL), base_url=url)
    (stats,) = res.rounds
    assert stats.valid_rows == 0 and len(res.rows) == 0
    n = 6 * stats.requests
    assert stats.rejected == {"out_of_domain": n}
    # every row fails on x6; the first ones on x7 as well
    assert stats.rejected_by_column == {
        "x6": {"out_of_domain": n},
        "x7": {"out_of_domain": BAD_ROWS * stats.requests},
    }


def test_clip_keeps_the_far_rows_with_the_value_at_the_bound(
    spark: Any, planted: Any, tmp_path: Path
) -> None:
    data, schema, disc = planted
    train = data.where("_date_split = 'train'")
    c = cfg(tmp_path, **{"generation.out_of_range": "clip"})
    with StubServer(row_factory=past_the_range) as url:
        res = generate(data, disc, schema, c, route=disc.route(DGR_COL), base_url=url)
    (stats,) = res.rounds
    assert stats.rejected == {} and stats.valid_rows == 6 * stats.requests
    assert stats.clipped == {"x7": BAD_ROWS * stats.requests}
    lo, hi = (float(train.agg({"x7": f}).first()[0]) for f in ("min", "max"))
    # far values now sit on the widened bound of the partitions' training rows: past every value
    # seen, within 10% of the range
    assert len(res.rows) > 0
    top = float(res.rows["x7"].max())
    assert hi < top <= hi + 0.1 * (hi - lo)
    assert (res.rows["x7"] == top).sum() >= 2
