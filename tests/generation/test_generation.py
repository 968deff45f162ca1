from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from date_spark.columns import ARM, RULE
from date_spark.config import Config
from date_spark.generation import (
    DGR_COL,
    Generator,
    ScoringSpec,
    generate,
    interpolate,
    score_groups,
)
from date_spark.generation.prompts import (
    ExampleBlock,
    HistoryItem,
    Masker,
    generation_messages,
    refinement_messages,
)
from date_spark.io.split import SPLIT_COL, TEST, TRAIN, VALIDATION
from date_spark.llm.engine import estimate_tokens
from date_spark.rules import parse_rule
from date_spark.testing.planted import PLANTED_RULES, demo_credit, planted_regimes
from date_spark.testing.stub import StubServer, default_rows

from .conftest import make_case


def llm_cfg(tmp_path: Path, **over: Any) -> Config:
    base = {
        "llm.provider": "openai",
        "llm.api_key_env": None,
        "llm.structured_output": "json_object",
        "llm.cache_path": str(tmp_path / "cache"),
        "generation.iterations": 3,
        "generation.rows_per_request": 8,
        "generation.requests_per_rule": 1,
        "generation.rows_per_real_row": 0,
    }
    base.update(over)
    return Config().with_overrides(base)


def proposing_rules(schema: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    """Stub behaviour: answer rule requests with parseable refinements, rows as usual."""
    props = schema.get("properties", {}).get("rows", {}).get("items", {}).get("properties", {})
    if set(props) == {"rule"}:
        return [
            {"rule": "x1 < 0.5"},
            {"rule": "x2 >= 0.4 and c0 in ('a', 'zz')"},
            {"rule": "nonsense >"},
        ]
    return default_rows(schema, body)


def test_end_to_end_rounds_refinement_and_rule_adherence(
    spark: Any, planted: Any, tmp_path: Path
) -> None:
    data, schema, disc = planted
    cfg = llm_cfg(tmp_path)
    with StubServer(row_factory=proposing_rules) as url:
        res = generate(data, disc, schema, cfg, route=disc.route(DGR_COL), base_url=url)
    assert [r.round for r in res.rounds] == [1, 2, 3]
    assert set(res.rows["_date_round"]) == {1, 2, 3}
    # every generated row satisfies the rule of its arm (DGR or refined rule AND the tree path)
    for arm, g in res.rows.groupby(ARM):
        rule = parse_rule(g[RULE].iloc[0], schema.kinds)
        assert rule.mask(g).all(), arm
    # refined rules: "x1 < 0.5" is parsed and used; the out-of-domain and unparseable ones dropped
    assert res.rounds[0].proposed_rules == 9
    assert res.rounds[0].refined_dropped.get("unparseable") == 3
    assert res.rounds[0].refined_dropped.get("out_of_domain") == 3
    assert res.rounds[1].refined_rules_used >= 3
    assert any("x1 < 0.5" in r for r in res.rows.loc[res.rows["_date_round"] == 2, RULE])
    # the arms table has one row per group and candidates have positive gain
    arms = res.arms
    assert len(arms) == res.rows[ARM].nunique()
    assert arms["candidate"].any() and (arms.loc[arms["candidate"], "gain"] > 0).all()
    # what selection takes: each candidate with its rows (input columns) and its parsed rule
    cands = res.candidates(schema.names, schema.kinds)
    assert cands and {c.arm_id for c in cands} == set(arms.loc[arms["candidate"], "arm_id"])
    for c in cands:
        assert list(c.rows.columns) == schema.names and len(c.rows) > 0
        assert c.rule.mask(c.rows).all() and c.gain > 0
    assert set(json.loads(arms["labels"].iloc[0])) <= {"0", "1"}
    assert sum(r.requests for r in res.rounds) == 3 + 3 + 3
    # saved and loaded back
    res.save(tmp_path / "gen")
    assert len(pd.read_parquet(tmp_path / "gen" / "arms.parquet")) == len(arms)


def test_no_test_row_reaches_a_prompt_or_a_score(spark: Any, tmp_path: Path) -> None:
    pdf = planted_regimes(1200, n_features=8, seed=5).drop(columns=["regime"])
    pdf["tag"] = [f"row{i:05d}" for i in range(len(pdf))]  # a unique marker per row
    data, schema, disc = make_case(spark, pdf, "y", "classification", {"R0": PLANTED_RULES["R0"]})
    test_tags = {r["tag"] for r in data.where(f"{SPLIT_COL} = '{TEST}'").select("tag").collect()}
    assert test_tags
    cfg = llm_cfg(tmp_path, **{"generation.iterations": 2, "generation.example_rows": 30})
    with StubServer(row_factory=proposing_rules) as url:
        gen = Generator(data, disc, schema, cfg, route=disc.route(DGR_COL), base_url=url)
        res = gen.run()
    assert set(gen.sample_pd[SPLIT_COL]) <= {TRAIN, VALIDATION}
    assert not test_tags & set(gen.sample_pd["tag"])
    shown = "\n".join(res.prompts)
    assert "row0" in shown  # training rows do appear as examples
    assert not [t for t in test_tags if t in shown]


def test_prompts_stay_within_budget_as_history_grows() -> None:
    pdf = planted_regimes(400, n_features=8, seed=1).drop(columns=["regime"])
    rule = parse_rule(PLANTED_RULES["R1"])
    blocks = [ExampleBlock(rule, 100, 0.1, pdf.head(30)) for _ in range(10)]
    for budget in (300, 800, 2000):
        msgs = generation_messages(
            head="H" * 200,
            columns=list(pdf.columns),
            blocks=blocks,
            target=rule,
            n_rows=10,
            budget=budget,
        )
        assert estimate_tokens(msgs) <= budget
        assert "ALL of this rule" in msgs[-1]["content"]
    sizes = []
    for n_hist in (1, 10, 100, 1000):
        hist = [HistoryItem(rule, 1, float(i) / n_hist - 0.5, pdf.head(5)) for i in range(n_hist)]
        msgs = refinement_messages(
            head="H" * 200,
            columns=list(pdf.columns),
            dgr=rule,
            history=hist,
            class_counts={"0": 3, "1": 9},
            n_rules=2,
            budget=900,
        )
        sizes.append(estimate_tokens(msgs))
        assert sizes[-1] <= 900
    assert "Propose 2 improved rules" in msgs[-1]["content"]


def test_the_questions_own_partition_comes_first_with_its_rows_and_last_rounds_feedback() -> None:
    """The own block is shown first and keeps `min_own_rows` rows while other blocks, their rows
    and the feedback shrink to fit; the previous round's tree-path feedback is in the prompt."""
    pdf = planted_regimes(400, n_features=8, seed=1).drop(columns=["regime"])
    r1, r2 = parse_rule(PLANTED_RULES["R1"]), parse_rule(PLANTED_RULES["R2"])
    own = ExampleBlock(r2, 120, 0.2, pdf.head(8))
    others = [ExampleBlock(r1, 100, 0.1, pdf.tail(30)) for _ in range(6)]
    fb = [HistoryItem(r2.and_(parse_rule("x3 < 0.5")), 0, 0.0123, pdf.head(3))]
    rows_of = lambda text: text.count('{"x0"')  # noqa: E731
    roomy = generation_messages(
        head="H", columns=list(pdf.columns), blocks=others, target=r2, n_rows=10, budget=20_000,
        own=own, feedback=fb,
    )[-1]["content"]  # fmt: skip
    assert roomy.index("This partition: rule: " + r2.to_text()) < roomy.index("Example 2")
    assert "loss change when added: +0.0123" in roomy and "Feedback from the previous" in roomy
    tight = generation_messages(
        head="H", columns=list(pdf.columns), blocks=others, target=r2, n_rows=10, budget=900,
        own=own, feedback=fb,
    )  # fmt: skip
    text = tight[-1]["content"]
    assert estimate_tokens(tight) <= 900 and "ALL of this rule" in text
    assert text.startswith("H\n\nThis partition:")
    own_part = text.split("\n\n")[1]
    assert rows_of(own_part) == 8 and rows_of(text) < rows_of(roomy)  # the others shrank
    tiny = generation_messages(
        head="H", columns=list(pdf.columns), blocks=others, target=r2, n_rows=10, budget=300,
        own=own, feedback=fb,
    )  # fmt: skip
    assert estimate_tokens(tiny) <= 300  # the budget is a limit: own rows go last, but go
    assert rows_of(tiny[-1]["content"].split("\n\n")[1]) < 8


def _r2_case(
    label_check: str = "off",
) -> tuple[pd.DataFrame, ScoringSpec, pd.DataFrame, Any]:
    """R2 with 60 training rows (and validation rows, which scoring must ignore), a spec scoring
    with a decision tree, and 150 fresh noise-free R2 rows."""
    from date_spark.modeling.features import FeatureEncoder
    from date_spark.modeling.models import ModelSpec
    from date_spark.schema import ColumnSpec, Kind, TableSchema

    r2 = parse_rule(PLANTED_RULES["R2"])
    pdf = planted_regimes(3000, n_features=8, noise=0.0, seed=2).drop(columns=["regime"])
    part = pdf[r2.mask(pdf)].reset_index(drop=True)
    rng = np.random.default_rng(0)
    part[SPLIT_COL] = np.where(rng.random(len(part)) < 0.75, TRAIN, VALIDATION)
    train_idx = part.index[part[SPLIT_COL] == TRAIN]
    part = part.drop(train_idx[60:]).reset_index(drop=True)
    cols = tuple(
        ColumnSpec(c, Kind.CATEGORICAL if c == "c0" else Kind.NUMERIC, "double", integral=c == "y")
        for c in pdf.columns
    )
    schema = TableSchema(cols, "y", "classification", (0, 1))
    enc = FeatureEncoder.from_pandas(schema, pdf)
    model = ModelSpec(
        "decision_tree", "classification", classes=(0, 1), categorical=(1,), n_features=len(enc)
    )
    spec = ScoringSpec(
        encoder=enc, target="y", task="classification", columns=tuple(pdf.columns),
        sensitive=(), tree_max_depth=4, min_arm_rows=5, label_check=label_check,
        label_check_confidence=0.95, model=model, folds=5, seed=0, generator="llm",
        masker=Masker(),
    )  # fmt: skip
    fresh = planted_regimes(6000, n_features=8, noise=0.0, seed=9).drop(columns=["regime"])
    good = fresh[r2.mask(fresh)].head(150).reset_index(drop=True)
    return part, spec, good, r2


def test_score_groups_rewards_helpful_rows_and_not_harmful_ones() -> None:
    """R2's diagonal boundary (x3 + x4 > 1) needs many rows for a tree: with 60 training rows,
    correctly labelled extra rows lower the cross-fitted loss of the training rows and the same
    rows with flipped labels raise it."""
    part, spec, good, r2 = _r2_case()
    bad = good.assign(y=1 - good["y"])

    def weighted_gain(rows: pd.DataFrame, q: str) -> tuple[float, int]:
        gen = rows.assign(
            **{
                DGR_COL: "R2",
                "_date_round": 1,
                "_date_request": f"R2|r1|{q}|s0",
                "_date_qrule": r2.dumps(),
            }
        )
        arms = score_groups(gen, part, spec).groupby(ARM)
        total = float((arms["_date_gain"].first() * arms.size()).sum())
        return total, int(arms["_date_candidate"].first().sum())

    good_gain, good_cands = weighted_gain(good, "q1")
    bad_gain, bad_cands = weighted_gain(bad, "q2")
    assert good_gain > 0 > bad_gain
    assert good_cands > bad_cands
    # the validation split is the confirmation's: scoring never reads it
    part2 = part.copy()
    part2.loc[part2[SPLIT_COL] == VALIDATION, "y"] = (
        1 - part2.loc[part2[SPLIT_COL] == VALIDATION, "y"]
    )
    gen = good.assign(
        **{
            DGR_COL: "R2",
            "_date_round": 1,
            "_date_request": "R2|r1|q1|s0",
            "_date_qrule": r2.dumps(),
        }
    )
    pd.testing.assert_frame_equal(score_groups(gen, part, spec), score_groups(gen, part2, spec))


def test_a_group_in_the_rest_partition_is_scored_with_the_covered_rows_in_training() -> None:
    """The rest partition is served by the global model, so its covered rows (`fixed`) train
    every model that scores it. A group's gain must compare like with like: measured once
    without the fixed rows in the with-group models, every group there (flipped labels too)
    looked helpful, because dropping the other regimes' rows alone lowered the loss."""
    from date_spark.generation.fields import FIXED_COL

    part, spec, good, r2 = _r2_case()
    other = planted_regimes(3000, n_features=8, noise=0.0, seed=5).drop(columns=["regime"])
    covered = other[~r2.mask(other)].head(1500).assign(**{SPLIT_COL: TRAIN, FIXED_COL: True})
    rest = pd.concat([part.assign(**{FIXED_COL: False}), covered], ignore_index=True)
    bad = good.assign(y=1 - good["y"])
    gains = {}
    for name, rows in (("good", good), ("bad", bad)):
        scored = score_groups(_asked(rows, r2), rest, spec)
        assert len(scored) > 0
        arms = scored.groupby(ARM)
        gains[name] = float((arms["_date_gain"].first() * arms.size()).sum())
    assert gains["good"] > 0 > gains["bad"], gains


def _asked(rows: pd.DataFrame, rule: Any) -> pd.DataFrame:
    meta = {DGR_COL: "R2", "_date_round": 1, "_date_request": "R2|r1|q1|s0"}
    return rows.assign(**meta, _date_qrule=rule.dumps())


def test_the_label_check_sets_contradicted_rows_apart() -> None:
    """A teacher trained on the partition flags rows whose label it contradicts with 95%
    confidence: most label-flipped rows, few correct ones. They come back as a non-candidate
    `.rejected` arm (counted), or relabelled by the teacher."""
    part, spec, good, r2 = _r2_case("filter")
    rows = pd.concat([good, good.assign(y=1 - good["y"])], ignore_index=True)
    flipped = np.r_[np.zeros(len(good), bool), np.ones(len(good), bool)]
    gen = rows.assign(
        **{
            DGR_COL: "R2",
            "_date_round": 1,
            "_date_request": "R2|r1|q1|s0",
            "_date_qrule": r2.dumps(),
        }
    )
    out = score_groups(gen, part, spec)
    assert len(out) == len(rows)  # nothing is lost: rejected rows are returned, marked
    rejected = out[ARM].str.endswith(".rejected")
    assert rejected.any() and not out.loc[rejected, "_date_candidate"].any()
    # rejected rows are mostly the flipped ones
    key = ["x0", "x3", "x4", "y"]
    marked = out.loc[rejected, key].merge(rows.assign(flipped=flipped), on=key)["flipped"]
    assert marked.mean() > 0.8 and marked.sum() > len(good) / 3
    relabel = replace(spec, label_check="relabel")
    fixed = score_groups(gen, part, relabel)
    assert not fixed[ARM].str.endswith(".rejected").any() and len(fixed) == len(rows)
    assert (fixed["y"].to_numpy() != rows.sort_index()["y"].to_numpy()).any()


def test_interpolation_generator_classification_and_regression(spark: Any, tmp_path: Path) -> None:
    for task, pdf in (
        ("classification", planted_regimes(1500, n_features=8, seed=4).drop(columns=["regime"])),
        (
            "regression",
            planted_regimes(1500, n_features=8, seed=4, task="regression").drop(columns=["regime"]),
        ),
    ):
        data, schema, disc = make_case(
            spark, pdf, "y", task, {k: PLANTED_RULES[k] for k in ("R0", "R3")}
        )
        cfg = Config().with_overrides(
            {"generation.generator": "interpolation", "generation.iterations": 2}
        )
        res = generate(data, disc, schema, cfg, route=disc.route(DGR_COL))
        assert res.summary()["generated_rows"] > 0, task
        assert all(r.requests == 0 for r in res.rounds)
        for _, g in res.rows.groupby(ARM):
            assert parse_rule(g[RULE].iloc[0], schema.kinds).mask(g).all()
        assert res.arms["gain"].notna().any()


def test_a_regression_target_refines_within_the_default_prompt_budget(
    spark: Any, tmp_path: Path
) -> None:
    """The refinement prompt asked to "balance the classes" with a count per target value: on a
    regression table that is one entry per generated row, and round 2 refused to start (4,060
    tokens over the default 4,000 on a 1,250-row table). Now it asks to cover the target's range."""
    pdf = planted_regimes(1500, n_features=8, seed=4, task="regression").drop(columns=["regime"])
    data, schema, disc = make_case(spark, pdf, "y", "regression", {"R0": PLANTED_RULES["R0"]})
    cfg = llm_cfg(
        tmp_path,
        **{"generation.iterations": 2, "generation.rows_per_request": 40,
           "generation.requests_per_rule": 5, "generation.rows_per_real_row": 0},
    )  # fmt: skip
    asked: list[str] = []

    def rows(schema: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
        asked.append(body["messages"][-1]["content"])
        return proposing_rules(schema, body)

    with StubServer(row_factory=rows) as url:
        res = generate(data, disc, schema, cfg, route=disc.route(DGR_COL), base_url=url)
    assert [r.round for r in res.rounds] == [1, 2]
    assert res.rounds[0].valid_rows >= 150  # more distinct target values than the budget held
    refine = [a for a in asked if "improved rules" in a]
    assert refine and all("cover the target's whole range" in a for a in refine)
    assert not any("balance the classes" in a for a in refine)


def test_multiclass_interpolation(spark: Any) -> None:
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame.rename(columns=lambda c: c.replace("/", "_"))
    data, schema, disc = make_case(
        spark,
        wine,
        "target",
        "classification",
        {"low_alcohol": "alcohol < 13", "high_alcohol": "alcohol >= 13"},
    )
    cfg = Config().with_overrides(
        {"generation.generator": "interpolation", "generation.iterations": 1}
    )
    res = generate(data, disc, schema, cfg, route=disc.route(DGR_COL))
    assert set(res.rows["target"]) <= {0, 1, 2} and res.rows["target"].nunique() >= 2


def test_masking_and_sensitive_columns(spark: Any, tmp_path: Path) -> None:
    pdf = demo_credit(1500)
    rules = {"young": "age < 30", "south": "age >= 30 and region = 'south'"}
    data, schema, disc = make_case(spark, pdf, "default", "classification", rules)
    cfg = llm_cfg(
        tmp_path,
        **{
            "generation.iterations": 1,
            "generation.mask_categoricals": True,
            "generation.sensitive_columns": ["income"],
        },
    )
    with StubServer() as url:
        res = generate(data, disc, schema, cfg, route=disc.route(DGR_COL), base_url=url)
    shown = "\n".join(res.prompts)
    for raw in ("north", "south", "east", "west"):
        assert raw not in shown
    assert "income" not in shown
    assert len(res.rows) > 0
    assert set(res.rows["region"].dropna()) <= {"north", "south", "east", "west"}
    assert res.rows["income"].notna().all()  # filled from the partition's training rows
    south = res.rows[res.rows["_date_dgr"] == "south"]
    assert len(south) > 0 and (south["region"] == "south").all()


def test_sensitive_column_in_a_rule_is_refused(spark: Any, tmp_path: Path) -> None:
    pdf = demo_credit(300)
    data, schema, disc = make_case(
        spark, pdf, "default", "classification", {"rich": "income > 40000"}
    )
    cfg = llm_cfg(tmp_path, **{"generation.sensitive_columns": ["income"]})
    from date_spark.errors import ConfigError

    with pytest.raises(ConfigError, match="sensitive column 'income'"):
        Generator(data, disc, schema, cfg, route=disc.route(DGR_COL))


def test_interpolate_respects_rule() -> None:
    pdf = demo_credit(800)
    from date_spark.schema import ColumnSpec, Kind, TableSchema

    kinds = {
        "age": Kind.NUMERIC,
        "region": Kind.CATEGORICAL,
        "income": Kind.NUMERIC,
        "utilization": Kind.NUMERIC,
        "num_accounts": Kind.NUMERIC,
        "homeowner": Kind.BOOLEAN,
        "account_opened": Kind.DATE,
        "default": Kind.NUMERIC,
    }
    schema = TableSchema(
        tuple(
            ColumnSpec(c, k, "x", integral=c in ("age", "num_accounts", "default"))
            for c, k in kinds.items()
        ),
        "default",
        "classification",
        (0, 1),
    )
    rule = parse_rule("age >= 30 and age < 50 and region in ('north', 'east')", kinds)
    rows = interpolate(pdf[rule.mask(pdf)], rule, schema, 200, seed=1)
    assert len(rows) > 150 and rule.mask(rows).all()
    assert set(rows["default"]) <= {0, 1}


def test_the_partition_sample_does_not_depend_on_the_layout(spark: Any, tmp_path: Path) -> None:
    """The per-DGR sample is drawn from a hash of each row and kept in a fixed order, so prompts,
    tree paths and scores are the same on a cluster as in a local session."""
    pdf = planted_regimes(3000, n_features=8, seed=5).drop(columns=["regime"])
    data, schema, disc = make_case(spark, pdf, "y", "classification", {"R0": PLANTED_RULES["R0"]})
    cfg = llm_cfg(tmp_path, **{"generation.partition_sample_rows": 200})
    samples = []
    for layout in (data.coalesce(1), data.repartition(7).sortWithinPartitions("x2")):
        gen = Generator(layout, disc, schema, cfg, route=disc.route(DGR_COL))
        gen.prepare()
        samples.append(gen.sample_pd)
    assert 0 < len(samples[0]) < len(pdf) // 2  # the cap is active: this is a real sample
    pd.testing.assert_frame_equal(samples[0], samples[1])


def test_the_prompted_count_leaves_out_partitions_the_cap_asks_nothing_of(
    spark: Any, tmp_path: Path, caplog: Any
) -> None:
    """Under a job-wide row cap a small partition may get no request; the run line must not
    count it as prompted (the demo said "4 of 6 prompted" with one of the 4 at 0 requests)."""
    pdf = planted_regimes(3000, n_features=8, seed=5).drop(columns=["regime"])
    rules = {k: PLANTED_RULES[k] for k in ("R0", "R1")}
    data, schema, disc = make_case(spark, pdf, "y", "classification", rules)
    cfg = llm_cfg(
        tmp_path, **{"generation.rows_per_real_row": 3, "generation.max_generated_rows": 24}
    )
    gen = Generator(data, disc, schema, cfg, route=disc.route(DGR_COL))
    with caplog.at_level("INFO", logger="date_spark.generation.generator"):
        gen.prepare()
    asked = sum(1 for v in gen.requests.values() if v > 0)
    assert 0 < asked < len(gen.requests)  # the cap left some partition without a request
    line = next(r.getMessage() for r in caplog.records if "partitions (DGRs" in r.getMessage())
    assert line.startswith(f"generation: {asked} of "), line
