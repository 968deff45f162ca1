"""The three stage results save and load one way: `save(directory)` returns what `load` takes,
every file is written atomically (a temporary file beside it, then renamed), and a save that fails
part way leaves no temporary file and no half-written target: what was there stays readable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from date_spark.columns import ARM
from date_spark.config import DiscoveryConfig, SelectionConfig
from date_spark.discovery import Discovery, discover
from date_spark.generation import GenerationResult
from date_spark.generation.result import RoundStats
from date_spark.selection import Selection, select
from date_spark.testing.planted import planted_regimes

from ..discovery.test_discovery import planted_schema, to_spark
from .conftest import KINDS, Planted


def leftovers(directory: Path) -> list[str]:
    """Temporary files of an atomic write (`.<name>.<random>.tmp`)."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


class Unstorable:
    """A value neither JSON nor parquet can hold, and pickle refuses."""

    def __reduce__(self) -> Any:
        raise TypeError("not storable")


@pytest.fixture(scope="module")
def found(spark: Any) -> Discovery:
    pdf = planted_regimes(3000, n_features=8, seed=11)
    return discover(to_spark(spark, pdf), planted_schema(pdf), DiscoveryConfig(), seed=42)


def test_discovery_round_trips_and_a_failed_save_leaves_the_old_one(
    found: Discovery, tmp_path: Path
) -> None:
    assert found.dgrs and found.models  # rules and models to lose
    d = tmp_path / "discovery"
    assert found.save(d) == d
    assert sorted(p.name for p in d.iterdir()) == ["discovery.json", "discovery.models.pkl"]
    back = Discovery.load(d)
    assert [(g.rule_id, g.rule, g.support) for g in back.dgrs] == [
        (g.rule_id, g.rule, g.support) for g in found.dgrs
    ]
    assert back.models.keys() == found.models.keys() and back.summary() == found.summary()
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    broken = Discovery.from_json(found.to_json(), {0: Unstorable()}, None)
    with pytest.raises(TypeError, match="not storable"):
        broken.save(d)
    assert leftovers(d) == [] and {p.name: p.read_bytes() for p in d.iterdir()} == before
    fresh = tmp_path / "never"
    with pytest.raises(TypeError):
        broken.save(fresh)
    assert not fresh.exists()  # the models are pickled first: nothing was written


def generation() -> GenerationResult:
    rows = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0], ARM: ["a", "a", "b"]})
    arms = pd.DataFrame({"arm_id": ["a", "b"], "candidate": [True, False], "gain": [0.1, 0.0]})
    rounds = [RoundStats(1, questions=2, valid_rows=3, rejected={"bad_type": 1})]
    return GenerationResult(rows, arms, rounds, "interpolation", asked="3 rows for 2 rules")


def test_generation_round_trips_and_a_failed_save_leaves_no_marker(tmp_path: Path) -> None:
    g = generation()
    assert len(g.rows) and g.rounds
    d = tmp_path / "generation"
    assert g.save(d) == d
    back = GenerationResult.load(d)  # the generator is saved with it
    pd.testing.assert_frame_equal(back.rows, g.rows)
    pd.testing.assert_frame_equal(back.arms, g.arms)
    assert back.rounds == g.rounds and back.asked == g.asked
    assert back.generator == "interpolation" and back.summary() == g.summary()

    broken = generation()
    broken.rounds[0].llm["cost"] = Unstorable()  # type: ignore[assignment]
    fresh = tmp_path / "half"
    with pytest.raises(TypeError):
        broken.save(fresh)  # fails at rounds.json, the last file
    names = sorted(p.name for p in fresh.iterdir())
    assert "rounds.json" not in names and leftovers(fresh) == [] and "rows.parquet" in names
    with pytest.raises(FileNotFoundError):
        GenerationResult.load(fresh)  # a directory without its marker holds no result


def test_selection_round_trips_and_a_failed_save_leaves_the_old_one(
    planted: Planted, tmp_path: Path
) -> None:
    cfg = SelectionConfig.model_validate({"strategy": "bandit", "screen_z": 1.645})
    sel = select(planted.arms, planted.evaluator(), cfg, kinds=KINDS)
    assert sel.selected and sel.n_rows > 0 and sel.trace
    d = tmp_path / "selection"
    assert sel.save(d) == d
    back = Selection.load(d)
    pd.testing.assert_frame_equal(back.rows, sel.rows)
    assert back.selected == sel.selected and back.explain() == sel.explain()
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    assert set(before) == {"rows.parquet", "trace.parquet", "selection.json"}
    bad_rows = sel.rows.assign(**{ARM: [Unstorable()] * sel.n_rows})
    broken = Selection(sel.selected, bad_rows, sel.trace, 0.0, 0.0, "bandit")
    with pytest.raises((ValueError, TypeError)):  # pyarrow refuses the column
        broken.save(d)
    assert leftovers(d) == [] and {p.name: p.read_bytes() for p in d.iterdir()} == before
    pd.testing.assert_frame_equal(Selection.load(d).rows, sel.rows)
