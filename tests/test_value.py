"""Does DATE's output make a model better, and can the number be trusted? Issue 11's must-show
scenarios at that issue's default acceptance (`selection.rule: holm`: cross-fitted screen, a
confirmation per partition at min_z 1.645 with Holm's step-down, K = 5), against the real stub
server on 127.0.0.1.

What they measured when written (seed 11, these settings):
- Helpful/harmful stub on the 3,000-row planted table: clean rows move a partition's test loss
  by 2-9%, below what its 73-182 confirmation rows can see (minimum detectable effect 14% pooled);
  the screen lets a label-flipped arm through, and the confirmation drops it. So at default
  settings nothing is kept and the run says which gains it could not see; no harmful row is ever
  written. A confirmed gain needs a table where right rows help on every row, not only near a
  class boundary:
- Helpful/harmful stub on the 2,500-row planted *regression* table: DATE keeps helpful arms and no
  harmful one, and its test loss is below partition-only with the interval excluding zero.
- A thin segment (211 of 5,000 rows, a diagonal label, labels without noise), half the rows held
  out as test rows so the segment has about a hundred: the rows DATE generates for it cut the
  segment's own test loss, interval excluding zero (at the default 20% test split, 42 segment
  rows, the interval held zero: -22% [-77%, +39%]); the segment's few dozen confirmation rows
  cannot confirm what the search keeps, and the run says so.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from date_spark.config import Config
from date_spark.selection import Selection
from date_spark.synthesizer import DateSynthesizer
from date_spark.testing.planted import planted_regimes, planted_truth
from date_spark.testing.stub import StubServer, planted_rows

pytestmark = pytest.mark.slow

HARMFUL = frozenset({3, 4})  # the stub flips the planted label in these regimes
NOISE = 0.05  # the table's label noise; the helpful stub rows flip at the same rate
SIZED = {  # enough requests that every partition gets arms; acceptance stays at its defaults
    "generation.rows_per_request": 40,
    "generation.iterations": 2,
    "generation.rows_per_real_row": 0,  # requests_per_rule per round, as when these were written
}
# These scenarios were written for the familywise rule (`selection.rule: holm`, the default
# before issue 20); the gain rule's must-shows are in tests/selection/test_keep_rule.py.
HOLM = {**SIZED, "selection.rule": "holm"}


def fit(spark: Any, table: pd.DataFrame, url: str, **overrides: Any) -> DateSynthesizer:
    cfg = Config().with_overrides(
        {
            "input.target": "y",
            "tracking.enabled": False,
            "llm.provider": "openai",
            "llm.base_url": url,
            "llm.api_key_env": None,
            "llm.structured_output": "json_object",
            "llm.cache_path": None,
            **overrides,
        }
    )
    return DateSynthesizer(cfg, spark).fit(spark.createDataFrame(table))


def wrong_labels(rows: pd.DataFrame, segment: bool = False) -> pd.Series:
    return rows["y"].astype(int) != planted_truth(rows, segment=segment)["label"]


def test_default_settings_never_keep_a_harmful_arm_and_say_what_they_could_see(
    spark: Any,
) -> None:
    table = planted_regimes(3000, n_features=8, noise=NOISE, seed=11).drop(columns="regime")
    factory = planted_rows(harmful_regimes=HARMFUL, noise=NOISE)
    with StubServer(row_factory=factory) as url:
        synth = fit(
            spark, table, url, **HOLM, **{"generation.requests_per_rule": 5,
                                           "selection.budget_rows": 600}
        )  # fmt: skip
    rows = synth.generation_.rows
    assert len(rows) > 0
    per_arm = wrong_labels(rows).groupby(rows["_date_arm"]).mean()
    harmful = set(per_arm[per_arm > 0.5].index)
    helpful = set(per_arm[per_arm < 0.5].index)
    assert harmful and helpful  # both kinds were generated and judged
    sel = synth.selection_
    assert not harmful & set(sel.selected)
    conf = sel.confirmation
    assert conf is not None and conf.partitions  # every partition's power is reported
    if sel.screened:
        assert conf.tested and conf.tests
        for t in conf.tests:
            if harmful & set(t.arms):
                assert not t.passed, t.text()  # the confirmation drops what the screen let in
    text = synth.kept_text()
    if not sel.selected:
        assert text.startswith("kept 0 rows") and "could not see gains below" in text, text
    else:
        kept = rows[rows["_date_arm"].isin(sel.selected)]
        assert len(kept) > 0 and wrong_labels(kept).mean() < 0.5
        u = synth.utility(sel)
        assert u.synthetic_gain.significant >= 0, u.headline()
        assert u.global_gain.significant >= 0, u.headline()


def test_default_acceptance_keeps_helpful_rows_that_lower_the_test_loss(spark: Any) -> None:
    """The must-show at default acceptance and K, on a table sized so the effect is measurable:
    the planted regression table (2,500 rows, one linear relation per regime, Gaussian noise sd
    0.2), where a tree model is short of rows in every partition and every right row helps a
    little on every test row. The stub's rows carry the planted value, except in regimes 3 and 4,
    where it is negated (harmful). Measured when written (seed 11): 13 arms kept (289 rows) in
    three partitions of the regimes 0-2, none from 3 or 4; DATE's test loss below partition-only
    by 21%, 95% CI [-41%, -7%]."""
    table = planted_regimes(2500, n_features=8, noise=NOISE, seed=11, task="regression")
    factory = planted_rows(harmful_regimes=HARMFUL, noise=NOISE, task="regression")
    with StubServer(row_factory=factory) as url:
        synth = fit(
            spark, table.drop(columns="regime"), url, **HOLM,
            **{"generation.requests_per_rule": 5, "selection.budget_rows": 1000},
        )  # fmt: skip
    rows = synth.generation_.rows
    assert len(rows) > 0
    truth = planted_truth(rows, task="regression")
    wrong = (rows["y"].astype(float) - truth["value"]).abs() > 1.0  # noise sd is 0.2
    per_arm = wrong.groupby(rows["_date_arm"]).mean()
    harmful = set(per_arm[per_arm > 0.5].index)
    helpful = set(per_arm[per_arm < 0.5].index)
    assert harmful and helpful  # both kinds were generated and judged
    sel = synth.selection_
    assert sel.selected, synth.kept_text()
    assert not harmful & set(sel.selected)
    assert helpful & set(sel.selected)
    conf = sel.confirmation
    assert conf is not None and conf.tested and any(t.passed for t in conf.tests)
    u = synth.utility(sel)
    g = u.synthetic_gain  # DATE vs partition only, on the test rows
    print(f"kept {len(sel.selected)} arms ({sel.n_rows} rows); {g.text(u.loss_name)}")  # -s
    assert g.after < g.before and g.significant == 1, g.text(u.loss_name)


def test_random_labels_keep_nothing_or_do_no_harm(spark: Any) -> None:
    table = planted_regimes(2000, n_features=8, noise=NOISE, seed=11)
    with StubServer() as url:  # rule-satisfying rows with random labels
        synth = fit(spark, table.drop(columns="regime"), url, **SIZED)
    assert len(synth.generation_.rows) > 0  # rows were generated and judged
    sel = synth.selection_
    if not sel.selected:
        assert synth.kept_text().startswith("kept 0 rows")
        return
    u = synth.utility(sel)
    assert u.synthetic_gain.significant >= 0, u.headline()
    assert u.global_gain.significant >= 0, u.headline()


# The thin segment R5 of `planted_regimes(segment=True)`: x0 < 0.3 and x7 >= 0.85, a diagonal
# label a tree needs many rows to draw; 211 of the 5,000 rows at seed 11.
R5 = "x0 < 0.3 and x7 >= 0.85"


def test_a_thin_segments_own_test_loss_drops_with_the_rows_date_generates_for_it(
    spark: Any,
) -> None:
    """5,000 rows, one planted thin segment (211 rows), the planted stub (rule-satisfying rows,
    labelled by the planted relation). Measured on the segment's own test rows, with the global
    model a user trains on input + output: the rows DATE generated for the segment (its thin
    segment, found by discovery below the support floor, prompted by expected benefit) cut the
    segment's loss with an interval that excludes zero. How many rows that takes was measured
    (seed 11): 6 requests per rule gave 477 rows for the segment, -47%, 95% CI [-83%, -8%]; 3
    requests gave 238 rows, -11% [-36%, +14%], an interval holding zero (and with other prompts,
    in an earlier run, -74%): the effect grows with the rows, its size at a few hundred rows
    depends on which rows the stub draws. Which of them selection keeps is not stable: the
    screen's choice moved the segment's loss by -74% in one run and -9% in another after
    unrelated prompt changes, and the confirmation has only a few dozen of the segment's
    validation rows, below its minimum detectable effect; the run says so."""
    table = planted_regimes(5000, n_features=8, noise=0.0, seed=11, segment=True)
    r5 = int((table["regime"] == 5).sum())
    assert 100 <= r5 <= 300
    with StubServer(row_factory=planted_rows(segment=True)) as url:
        synth = fit(
            spark,
            table.drop(columns="regime"),
            url,
            **{
                **HOLM,
                "generation.requests_per_rule": 6,
                "generation.rows_per_real_row": 0,
                "selection.budget_rows": 300,
                "evaluation.segments": {"R5": R5},
                # half the rows are test rows, so the segment has about a hundred of them to be
                # measured on (at the default 20%, 42 rows: -22%, 95% CI [-77%, +39%])
                "split.test_fraction": 0.5,
            },
        )
    assert synth.rules_.dgrs
    # the default run: when its confirmation keeps nothing, the one line says what it could have
    # seen, partition by partition (measured at seed 11: nothing kept; the rest partition, where
    # the segment's rows are scored, has 27 confirmation rows)
    text = synth.kept_text()
    if synth.selection_.n_rows == 0:
        assert "could not see gains below" in text, text
        conf = synth.selection_.confirmation
        assert conf is not None and any(p.key == "_rest" for p in conf.partitions)
    # DATE's rows for the thin segment: what generation asked the LLM for under the segment's
    # rule, after validation and the label check
    thin = {str(t.rule_id) for t in synth.rules_.thin}
    assert thin
    rows = synth.generation_.rows
    mine = rows[rows["_date_dgr"].isin(thin) & ~rows["_date_arm"].str.endswith(".rejected")]
    assert len(mine) > 0
    assert not wrong_labels(mine, segment=True).any()  # the planted stub's rows are right
    arms = sorted(set(mine["_date_arm"]))
    names = [*synth.schema_.names, "_date_arm"]
    sel = Selection(arms, mine[names].reset_index(drop=True), [], math.nan, math.nan, "thin rows")
    u = synth.utility(sel)
    (seg,) = u.named
    assert seg.synthetic_rows > 0 and seg.gain.rows > 0
    assert seg.gain.after < seg.gain.before
    print(f"thin rows {len(mine)}; {seg.gain.text(u.loss_name)}")  # shown with pytest -s
    assert seg.gain.significant == 1, seg.gain.text(u.loss_name)
