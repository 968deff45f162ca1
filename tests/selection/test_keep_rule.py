"""Issue 20's must-show at default settings: on a table where adding real rows the model never saw
helps significantly (shown first), the oracle's rows (such rows, served by the loopback endpoint
for each rule the job asks about) are kept and lower the held-out loss; the noise endpoint's rows
(the same rows with the target permuted) are not kept. Held out: 3,000 rows no stage sees."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from date_spark.config import Config
from date_spark.evaluation.utility import bootstrap_interval
from date_spark.modeling.models import ModelSpec
from date_spark.synthesizer import DateSynthesizer
from date_spark.testing.oracle import oracle_server
from date_spark.testing.planted import planted_regimes
from date_spark.testing.pools import split_pool

pytestmark = pytest.mark.slow


def settings(url: str) -> Config:
    return Config().with_overrides(
        {
            "input.target": "y",
            "tracking.enabled": False,
            "llm.provider": "openai",
            "llm.base_url": url,
            "llm.api_key_env": None,
            "llm.structured_output": "json_object",
            "llm.cache_path": None,
            "seed": 3,
        }
    )


def held_out_change(
    synth: DateSynthesizer, train: pd.DataFrame, test: pd.DataFrame, extra: pd.DataFrame
) -> tuple[float, float, float]:
    """Relative change of the configured model's test loss when `extra` joins the input rows,
    with its paired bootstrap interval (negative = better)."""
    names = synth.schema_.names
    spec = ModelSpec.for_table(synth.config.selection, synth.schema_, synth.rules_.encoder)
    enc = synth.rules_.encoder

    def losses(frame: pd.DataFrame) -> np.ndarray:
        model = spec.fit(enc.transform(frame[names]), frame["y"].to_numpy(dtype=float))
        return model.losses(enc.transform(test[names]), test["y"].to_numpy(dtype=float))

    base = losses(train)
    after = losses(pd.concat([train[names], extra[names]], ignore_index=True))
    lo, hi = bootstrap_interval(after - base, resamples=1000)
    b = float(base.mean())
    return float(after.mean() - b) / b, lo / b, hi / b


def test_oracle_rows_are_kept_and_help_noise_rows_are_not(spark: Any) -> None:
    table = planted_regimes(4000, n_features=8, noise=0.05, seed=5, task="regression")
    train, pool, test = split_pool(table.drop(columns="regime"), 300, 1500, seed=5)
    test = test.iloc[:3000]
    with oracle_server(pool, "y", seed=5) as url:
        synth = DateSynthesizer(settings(url), spark).fit(spark.createDataFrame(train))
    # the table has headroom: 300 random pool rows added to the 300 input rows help, clearly
    always, lo, hi = held_out_change(synth, train, test, pool.sample(300, random_state=5))
    assert hi < 0, f"always-add: {always:+.1%} [{lo:+.1%}, {hi:+.1%}]"
    sel = synth.selection_
    assert sel.gain is not None and sel.n_rows > 0, synth.kept_text()
    kept = sel.rows.drop(columns=["_date_arm"])
    assert kept.merge(pool, how="left", indicator=True)["_merge"].eq("both").all()
    change, lo, hi = held_out_change(synth, train, test, kept)
    print(
        f"oracle: kept {len(kept)}: {change:+.1%} [{lo:+.1%}, {hi:+.1%}]; always-add {always:+.1%}"
    )
    assert hi < 0, synth.kept_text()
    assert "expected loss change" in synth.kept_text()

    with oracle_server(pool, "y", seed=5, noise=True) as url:
        noisy = DateSynthesizer(settings(url), spark).fit(
            spark.createDataFrame(train), rules=synth.rules_
        )
    assert len(noisy.generation_.rows) > 0  # rows were generated and judged
    assert noisy.selection_.n_rows == 0, noisy.kept_text()
    text = noisy.kept_text()
    assert text.startswith("kept 0 rows: no partition's rows showed a gain"), text
