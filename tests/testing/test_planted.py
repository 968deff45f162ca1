from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from date_spark.rules import parse_rule
from date_spark.testing.planted import PLANTED_RULES, demo_credit, planted_regimes, regime_recovery

ROOT = Path(__file__).resolve().parents[2]


def test_bundled_demo_table_is_the_generator_output() -> None:
    bundled = pd.read_parquet(ROOT / "date_spark" / "data" / "demo_credit.parquet")
    pd.testing.assert_frame_equal(bundled, demo_credit(), check_dtype=False)
    assert bundled["income"].isna().any() and bundled["region"].isna().any()


def test_planted_rules_describe_the_regimes() -> None:
    pdf = planted_regimes(3000, seed=4)
    for i, text in enumerate(PLANTED_RULES.values()):
        mask = parse_rule(text).mask(pdf)
        assert mask.any() and (pdf.loc[mask, "regime"] == i).all()
    assert pdf["regime"].nunique() == 5


def test_spark_generator_matches_the_formulas(spark: object) -> None:
    from date_spark.testing.planted import planted_regimes_spark

    df = planted_regimes_spark(spark, 4000, n_features=8, noise=0.0, with_regime=True).toPandas()  # type: ignore[arg-type]
    for i, text in enumerate(PLANTED_RULES.values()):
        mask = parse_rule(text).mask(df)
        assert mask.any() and (df.loc[mask, "regime"] == i).all()
    r0 = df[df["regime"] == 0]
    assert len(r0) > 0
    assert ((r0["x1"] > 0.5).astype(int) == r0["y"]).all()


def test_planted_truth_recovers_regime_and_noise_free_label() -> None:
    from date_spark.testing.planted import planted_truth

    clean = planted_regimes(2000, n_features=8, noise=0.0, seed=4)
    truth = planted_truth(clean)
    assert (truth["regime"] == clean["regime"]).all() and (truth["label"] == clean["y"]).all()
    noisy = planted_regimes(2000, n_features=8, noise=0.2, seed=4)
    wrong = (planted_truth(noisy)["label"] != noisy["y"]).mean()
    assert 0.15 < wrong < 0.25


def test_planted_truth_recovers_the_regression_value_and_the_stub_writes_it() -> None:
    from date_spark.testing.planted import planted_truth
    from date_spark.testing.stub import planted_rows

    clean = planted_regimes(2000, n_features=8, noise=0.0, seed=4, task="regression")
    truth = planted_truth(clean, task="regression")
    assert (truth["regime"] == clean["regime"]).all()
    assert (truth["value"] - clean["y"]).abs().max() < 1e-9
    noisy = planted_regimes(2000, n_features=8, noise=0.05, seed=4, task="regression")
    resid = noisy["y"] - planted_truth(noisy, task="regression")["value"]
    assert 0.15 < resid.std() < 0.25  # sd 4 x noise
    # the stub's factory: the planted value with the table's noise, negated in harmful regimes
    schema = {
        "type": "object",
        "properties": {
            "rows": {
                "type": "array",
                "minItems": 30,
                "items": {
                    "type": "object",
                    "properties": {
                        **{
                            f"x{i}": {"type": "number", "minimum": 0, "maximum": 1}
                            for i in range(8)
                        },
                        "c0": {"type": "string", "enum": ["a", "b", "c", "d"]},
                        "y": {"type": "number"},
                    },
                },
            }
        },
    }
    factory = planted_rows(harmful_regimes=frozenset({0}), noise=0.05, task="regression")
    rows = pd.DataFrame(factory(schema, {"messages": [{"role": "user", "content": "q"}]}))
    assert len(rows) >= 30
    t = planted_truth(rows, task="regression")
    harmful = t["regime"] == 0
    assert harmful.any() and (~harmful).any()
    assert ((rows["y"] + t["value"])[harmful].abs() < 1.5).all()
    assert ((rows["y"] - t["value"])[~harmful].abs() < 1.5).all()
    assert (rows["y"] - t["value"])[~harmful].abs().max() > 0  # noise was added


def test_regime_recovery_needs_a_pure_rule_holding_most_of_the_regime() -> None:
    counts = pd.DataFrame(
        [
            ("A", 0, 95),  # 95% pure, holds 95/100 of regime 0: recovered
            ("A", 1, 5),
            ("B", 1, 30),  # 60% pure: regime 1 is not recovered
            ("B", 2, 20),
            (None, 2, 20),
            (None, 0, 5),
            ("C", 3, 70),  # pure, but holds 70/100 of regime 3: not recovered
            ("D", 3, 30),
        ],
        columns=["rule", "regime", "n"],
    )
    rec = regime_recovery(counts)
    assert rec["regimes"] == 4 and rec["rows"] == 275 and rec["covered_rows"] == 250
    assert rec["recovered_regimes"] == [0] and rec["recovered"] == 1
    assert rec["purity"] == pytest.approx((95 + 30 + 70 + 30) / 250)
    with pytest.raises(ValueError):
        regime_recovery(counts.iloc[0:0])
