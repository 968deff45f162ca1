"""`Selection.explain()`: the one line a run reports for its selection, built from the result
alone: what was kept (and in which partitions, for the gain rule) or why nothing was."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from date_spark.config import SelectionConfig
from date_spark.selection import CrossFitEvaluator, Selection, select
from date_spark.selection.keep import select_by_gain

from .conftest import KINDS, RULES, TREE, Planted, encode, partitions
from .test_gain import SPEC, table
from .test_gain import encode as encode_abc


def cfg(strategy: str = "bandit", **kw: Any) -> SelectionConfig:
    return SelectionConfig.model_validate({"strategy": strategy, "screen_z": 1.645, **kw})


@pytest.fixture(scope="module")
def confirm(planted: Planted) -> CrossFitEvaluator:
    """Confirmation rows the search never saw: the fixture's test split, scored as a holdout."""
    return CrossFitEvaluator(
        partitions(planted.train, planted.test), target="y", encode=encode, model=TREE, folds=1
    )


def test_a_confirmed_search_says_what_it_kept_and_on_what_evidence(
    planted: Planted, confirm: CrossFitEvaluator
) -> None:
    sel = select(planted.arms, planted.evaluator(), cfg(), kinds=KINDS, confirm=confirm)
    assert sel.selected and sel.n_rows > 0  # something was kept, so there is something to name
    c = sel.confirmation
    assert c is not None and c.passed
    text = sel.explain()
    assert text.startswith(f"kept {sel.n_rows} rows from {len(sel.selected)} arms, confirmed: ")
    assert f"z={c.z:.2f} > {c.min_z:g} on {c.rows} confirmation rows" in text
    assert sel.summary()["kept"] == text
    metrics = sel.power_metrics()
    assert {f"{k}.mde" for k in RULES} <= set(metrics)


def test_a_failed_confirmation_says_why_nothing_was_kept(
    planted: Planted, confirm: CrossFitEvaluator
) -> None:
    forced = select(list(planted.harmful), planted.evaluator(), cfg("topk"), confirm=confirm)
    c = forced.confirmation
    assert forced.screened and forced.n_rows == 0 and c is not None and c.tests
    text = forced.explain()
    assert text.startswith(f"kept 0 rows: the searched set ({len(forced.screened)} arms) failed ")
    assert all(f"{t.key}: z={t.z:.2f}" in text for t in c.tests)
    assert "; the confirmation could not see gains below: " in text
    assert "could not see" not in forced.explain(power=False)
    assert forced.explain(rules_found=False) == "kept 0 rows: discovery found no rule"


def test_the_gain_rule_names_the_partitions_it_kept_rows_from() -> None:
    real = pd.concat([table(150, 0).assign(part="a"), table(150, 1).assign(part="b")])
    gen = pd.concat(
        [table(120, 5).assign(part="a", _date_arm="a.q0"), table(120, 6).assign(part="b")]
    )
    gen["_date_arm"] = gen["_date_arm"].fillna("b.q0")
    sel = select_by_gain(
        gen, real, SelectionConfig(keep_z=1.0), part="part", target="y", encode=encode_abc,
        model=SPEC, seed=3,
    )  # fmt: skip
    assert sel.gain is not None and sel.gain.kept and sel.n_rows > 0
    text = sel.explain()
    parts = ", ".join(f"{k}: {n}" for k, n in sel.gain.kept.items())
    assert text.startswith(f"kept {sel.n_rows} rows ({parts}): ")
    assert sum(sel.gain.kept.values()) == sel.n_rows
    assert "expected loss change" in text


def test_nothing_to_select_from_is_said_as_such() -> None:
    empty = Selection([], pd.DataFrame(), [], float("nan"), float("nan"), "bandit", "no rule found")
    assert empty.explain(rules_found=False) == "kept 0 rows: discovery found no rule"
    assert empty.explain() == "kept 0 rows: no rule found"
