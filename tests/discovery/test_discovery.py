"""Algorithm 1 on real local Spark: regime recovery, model sharing, predictor, routing, limits."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from date_spark.config import Config, DiscoveryConfig
from date_spark.discovery import Discovery, discover, effective_rho, error, subtract
from date_spark.errors import ConfigError, DiscoveryError
from date_spark.modeling.features import FeatureEncoder
from date_spark.rules import Conjunction, Predicate, Rule, parse_rule
from date_spark.schema import ColumnSpec, Kind, TableSchema
from date_spark.testing.planted import planted_regimes

N_TRAIN = 10_000


def planted_schema(pdf: pd.DataFrame, task: str = "classification") -> TableSchema:
    cols = [
        ColumnSpec(c, Kind.CATEGORICAL, "string")
        if c == "c0"
        else ColumnSpec(c, Kind.NUMERIC, "double")
        for c in pdf.columns
        if c not in ("y", "regime", "rid")
    ]
    if task == "classification":
        cols.append(ColumnSpec("y", Kind.NUMERIC, "bigint", integral=True))
        return TableSchema(tuple(cols), "y", task, (0, 1))
    cols.append(ColumnSpec("y", Kind.NUMERIC, "double"))
    return TableSchema(tuple(cols), "y", task)


def purities(d: Discovery, pdf: pd.DataFrame) -> list[float]:
    """Share of each DGR's rows that belong to its most common planted regime."""
    out = []
    for g in d.dgrs:
        m = g.rule.mask(pdf).to_numpy()
        assert m.sum() == g.support, "support must be the DGR's rows on the training table"
        out.append(float(pdf.loc[m, "regime"].value_counts(normalize=True).iloc[0]))
    return out


def to_spark(spark: Any, pdf: pd.DataFrame) -> DataFrame:
    return spark.createDataFrame(pdf.drop(columns=["regime"], errors="ignore"))


# ------------------------------------------------------------------------------------------------
# One discovery on the planted classification table, shared by several checks
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(spark: Any) -> dict[str, Any]:
    full = planted_regimes(N_TRAIN + 4000, seed=11).reset_index(drop=True)
    full.insert(0, "rid", np.arange(len(full)))
    train, test = full.iloc[:N_TRAIN].copy(), full.iloc[N_TRAIN:].copy()
    schema = planted_schema(train)
    df = to_spark(spark, train).cache()
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("date_spark.discovery")
    handler, level = Collect(logging.INFO), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        d = discover(df, schema, DiscoveryConfig(), seed=42)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    return {"train": train, "test": test, "schema": schema, "df": df, "disc": d, "log": lines}


def test_recovers_the_planted_regimes(planted: dict[str, Any]) -> None:
    d: Discovery = planted["disc"]
    train = planted["train"]
    pur = purities(d, train)
    assert len(d.dgrs) >= 4
    assert min(pur) >= 0.9, [(g.rule.to_text(), p) for g, p in zip(d.dgrs, pur, strict=True)]
    # Each regime is the majority of some DGR, and most rows are covered.
    majors = {int(train.loc[g.rule.mask(train).to_numpy(), "regime"].mode()[0]) for g in d.dgrs}
    assert majors == {0, 1, 2, 3, 4}
    assert d.coverage >= 0.9 and not d.incomplete
    # rho_mode=relative put the threshold between the noise floor and the global linear error.
    assert d.stats["floor"] < d.rho < d.stats["root_error"]
    assert d.trainings == sum(s.trainings for s in d.levels)


def test_full_scans_are_measured_per_level(planted: dict[str, Any]) -> None:
    """Spark's observed row counts, not a constant: level 1 reads the table for its statistics and
    its root sample, every later level for its counts and its sample; the in-level sharing check
    reads the cached sample, not the table."""
    d: Discovery = planted["disc"]
    assert len(d.levels) >= 3 and any(s.accepted > 1 for s in d.levels)
    assert [s.scans for s in d.levels] == [2.0] * len(d.levels)
    lines = [m for m in planted["log"] if m.startswith("discovery level")]
    assert len(lines) == len(d.levels)
    assert all("; 2 full scans; " in line for line in lines), lines


def test_partitioned_predictor_beats_one_global_tree(planted: dict[str, Any], spark: Any) -> None:
    d: Discovery = planted["disc"]
    train, test, schema = planted["train"], planted["test"], planted["schema"]
    scored = d.predict("pred")(to_spark(spark, test)).select("rid", "y", "pred").toPandas()
    assert len(scored) == len(test) and scored["pred"].notna().all()
    part_err = float((scored["pred"] != scored["y"]).mean())
    enc = FeatureEncoder.from_pandas(schema, train)
    tree = DecisionTreeClassifier(max_depth=6, random_state=0).fit(enc.transform(train), train["y"])
    tree_err = error(tree, enc.transform(test), test["y"].to_numpy(), "classification")
    assert part_err < tree_err - 0.02, (part_err, tree_err)
    assert part_err < 0.1  # 5% label noise + small model misfit


def test_rules_spark_filters_equal_pandas_masks_and_route(planted: dict[str, Any]) -> None:
    d: Discovery = planted["disc"]
    df, train = planted["df"], planted["train"]
    assert d.dgrs, "no rule to compare"
    for g in d.dgrs:
        ids = {r["rid"] for r in df.filter(g.rule.to_column()).select("rid").collect()}
        assert ids == set(train.loc[g.rule.mask(train).to_numpy(), "rid"])
        for c in g.rule.conjunctions:  # text round trip keeps the rows
            again = parse_rule(c.to_text(), d.schema.kinds)
            assert (again.mask(train) == Rule((c,)).mask(train)).all()
    routed = d.route()(df).select("rid", "_date_rule_id").toPandas().set_index("rid")
    for g in d.dgrs:
        want = set(train.loc[g.rule.mask(train).to_numpy(), "rid"])
        assert set(routed.index[routed["_date_rule_id"] == g.rule_id]) == want
    assert routed["_date_rule_id"].isna().sum() == d.n_rows - d.covered_rows
    frame = d.rules_frame(df.sparkSession).toPandas()
    assert list(frame["rule_id"]) == [g.rule_id for g in d.dgrs]
    assert (frame["support"] == [g.support for g in d.dgrs]).all()


def test_save_load_round_trip(planted: dict[str, Any], spark: Any, tmp_path: Any) -> None:
    d: Discovery = planted["disc"]
    path = d.save(tmp_path / "discovery.json")
    assert Discovery.models_path(path).is_file()
    back = Discovery.load(path)
    assert [(g.rule_id, g.rule, g.model_id, g.support) for g in back.dgrs] == [
        (g.rule_id, g.rule, g.model_id, g.support) for g in d.dgrs
    ]
    assert back.encoder == d.encoder and back.rho == d.rho
    test = to_spark(spark, planted["test"].head(500))
    a = d.predict()(test).select("rid", "_date_pred").toPandas()
    b = back.predict()(test).select("rid", "_date_pred").toPandas()
    pd.testing.assert_frame_equal(a, b)
    rules_only = Discovery.from_json(d.to_json())
    with pytest.raises(DiscoveryError):
        rules_only.predict()


def test_one_log_line_per_level(planted: dict[str, Any]) -> None:
    d: Discovery = planted["disc"]
    lines = [m for m in planted["log"] if m.startswith("discovery level")]
    assert len(lines) == len(d.levels) >= 2
    for line, stats in zip(lines, d.levels, strict=True):
        assert line.startswith(f"discovery level {stats.level}: {stats.candidates} candidates")
        for word in ("accepted", "shared", "coverage", " s"):
            assert word in line
    assert any(m.startswith("discovery done") for m in planted["log"])


# ------------------------------------------------------------------------------------------------
# Model sharing
# ------------------------------------------------------------------------------------------------


def test_model_sharing_joins_two_regions_and_saves_trainings(spark: Any) -> None:
    pdf = planted_regimes(N_TRAIN, seed=2, shared=True)
    df = to_spark(spark, pdf).cache()
    schema = planted_schema(pdf)
    on = discover(df, schema, DiscoveryConfig(), seed=42)
    off = discover(df, schema, DiscoveryConfig(model_sharing=False), seed=42)
    two = [g for g in on.dgrs if len(g.rule.conjunctions) >= 2]
    assert two, [g.rule.to_text() for g in on.dgrs]
    joined = two[0]
    regimes = {
        int(pdf.loc[Rule((c,)).mask(pdf).to_numpy(), "regime"].mode()[0])
        for c in joined.rule.conjunctions
    }
    assert regimes == {0, 4}, "R0 and R4 share the relation y = x1 > 0.5"
    assert len(on.models) < len(off.models)
    assert on.shared >= 1 and off.shared == 0
    assert on.trainings < off.trainings, (on.trainings, off.trainings)
    assert off.dgrs and all(len(g.rule.conjunctions) == 1 for g in off.dgrs)
    # Each conjunction of the shared DGR is still one regime.
    for c in joined.rule.conjunctions:
        m = Rule((c,)).mask(pdf).to_numpy()
        assert pdf.loc[m, "regime"].value_counts(normalize=True).iloc[0] >= 0.9


def test_null_child_joins_a_model_of_its_own_level(spark: Any) -> None:
    """x0 < 0.5 and x0 is null follow one relation, x0 >= 0.5 another: the split's three
    children are trained in the same level, then the in-level cross-check joins two of them."""
    rng = np.random.default_rng(1)
    n = 6000
    X = rng.random((n, 4))
    miss = rng.random(n) < 0.2
    y = np.where(miss | (X[:, 0] < 0.5), X[:, 1] > 0.5, X[:, 2] < 0.4).astype(np.int64)
    pdf = pd.DataFrame({f"x{i}": X[:, i] for i in range(4)})
    pdf["y"] = np.where(rng.random(n) < 0.03, 1 - y, y)
    pdf.loc[miss, "x0"] = np.nan
    pdf["rid"] = np.arange(n)
    schema = TableSchema(
        (
            *(ColumnSpec(f"x{i}", Kind.NUMERIC, "double") for i in range(4)),
            ColumnSpec("y", Kind.NUMERIC, "bigint", integral=True),
        ),
        "y",
        "classification",
    )
    # NaN -> null, as the input reader does.
    df = (
        spark.createDataFrame(pdf)
        .withColumn("x0", F.when(F.isnan("x0"), F.lit(None)).otherwise(F.col("x0")))
        .cache()
    )
    on = discover(df, schema, DiscoveryConfig(), seed=42)
    off = discover(df, schema, DiscoveryConfig(model_sharing=False), seed=42)
    assert len(off.models) == 3 and len(on.models) == 2 and on.shared == 1
    assert on.trainings == off.trainings  # in-level sharing happens after the level trained
    (joined,) = [g for g in on.dgrs if len(g.rule.conjunctions) == 2]
    ops = sorted(p.op for c in joined.rule.conjunctions for p in c.predicates)
    assert ops == ["<", "is null"], joined.rule.to_text()
    assert joined.support == int((pdf["x0"].isna() | (pdf["x0"] < 0.5)).sum())
    ids = {r["rid"] for r in df.filter(joined.rule.to_column()).select("rid").collect()}
    assert ids == set(pdf.loc[joined.rule.mask(pdf).to_numpy(), "rid"])


def test_breadth_mode_keeps_rules_disjoint(spark: Any) -> None:
    """The authors' breadth (every split node's children, overlapping candidates): overlaps with
    rules accepted in the same level are deferred and rewritten, never accepted twice."""
    pdf = planted_regimes(4000, seed=2)
    pdf["rid"] = np.arange(len(pdf))
    df = to_spark(spark, pdf).cache()
    d = discover(
        df, planted_schema(pdf), DiscoveryConfig(splits_per_candidate=None, max_levels=3), seed=42
    )
    assert max(s.candidates for s in d.levels) > 4
    assert sum(s.deferred for s in d.levels) > 0
    # Stopped by max_levels with candidates still queued: incomplete, and says why.
    assert d.incomplete and d.stats["stop_reason"] == "max_levels" and len(d.levels) == 3
    masks = np.stack([Rule((p.conjunction,)).mask(pdf).to_numpy() for p in d.parts])
    assert (masks.sum(axis=0) <= 1).all(), "two accepted conjunctions share a row"
    assert d.covered_rows == int(masks.any(axis=0).sum())
    for p in d.parts:
        assert p.support == int(Rule((p.conjunction,)).mask(pdf).sum())
        assert len(p.conjunction.predicates) <= DiscoveryConfig().max_conjunction_length


# ------------------------------------------------------------------------------------------------
# Regression and categorical splits
# ------------------------------------------------------------------------------------------------


def test_regression_regimes(spark: Any) -> None:
    full = planted_regimes(N_TRAIN + 3000, seed=1, task="regression")
    train, test = full.iloc[:N_TRAIN], full.iloc[N_TRAIN:]
    schema = planted_schema(train, "regression")
    d = discover(to_spark(spark, train), schema, DiscoveryConfig(), seed=42)
    pur = purities(d, train)
    assert d.dgrs
    assert min(pur) >= 0.9, [(g.rule.to_text(), p) for g, p in zip(d.dgrs, pur, strict=True)]
    assert d.coverage >= 0.5
    # Relative rho on a log scale: well below the global linear MSE, above the noise variance.
    assert 0.04 < d.rho < 0.2 * d.stats["root_error"]
    pred = d.predict("p")(to_spark(spark, test)).select("y", "p").toPandas()
    mse = float(((pred["y"] - pred["p"]) ** 2).mean())
    enc = FeatureEncoder.from_pandas(schema, train)
    tree = DecisionTreeRegressor(max_depth=6, random_state=0).fit(enc.transform(train), train["y"])
    tree_mse = error(tree, enc.transform(test), test["y"].to_numpy(), "regression")
    assert mse < tree_mse, (mse, tree_mse)
    # Variance mode: rho times the target's variance.
    v = discover(
        to_spark(spark, train.head(3000)),
        schema,
        DiscoveryConfig(rho_mode="variance", rho=0.02, max_levels=1),
        seed=42,
    )
    assert v.rho == pytest.approx(0.02 * v.stats["baseline"])


def _categorical_table(n: int, seed: int) -> pd.DataFrame:
    """Regimes chosen by a category set that is not contiguous in value order ({a, c} vs
    {b, d}), with a date, a boolean and holes in several columns."""
    rng = np.random.default_rng(seed)
    seg = rng.choice(np.array(["a", "b", "c", "d"]), n)
    x1, x2 = rng.random(n), rng.random(n)
    day = [dt.date(2021, 1, 1) + dt.timedelta(days=int(v)) for v in rng.integers(0, 365, n)]
    y = np.where(np.isin(seg, ["a", "c"]), x1 > 0.5, x2 < 0.4).astype(np.int64)
    y = np.where(rng.random(n) < 0.03, 1 - y, y)
    pdf = pd.DataFrame(
        {
            "seg": seg.astype(object),
            "x1": x1,
            "x2": x2,
            "day": day,
            "flag": rng.random(n) < 0.5,
            "y": y,
        }
    )
    pdf["regime"] = np.isin(seg, ["a", "c"]).astype(int)
    pdf.loc[rng.random(n) < 0.02, "x2"] = np.nan
    pdf["flag"] = pdf["flag"].astype(object)
    pdf.loc[rng.random(n) < 0.02, "flag"] = None
    pdf["rid"] = np.arange(n)
    return pdf


def test_categorical_split_finds_the_value_set(spark: Any) -> None:
    pdf = _categorical_table(6000, seed=4)
    schema = TableSchema(
        (
            ColumnSpec("seg", Kind.CATEGORICAL, "string"),
            ColumnSpec("x1", Kind.NUMERIC, "double"),
            ColumnSpec("x2", Kind.NUMERIC, "double"),
            ColumnSpec("day", Kind.DATE, "date"),
            ColumnSpec("flag", Kind.BOOLEAN, "boolean"),
            ColumnSpec("y", Kind.NUMERIC, "bigint", integral=True),
        ),
        "y",
        "classification",
    )
    df = to_spark(spark, pdf).cache()
    d = discover(df, schema, DiscoveryConfig(), seed=3)
    seg_preds = {
        (p.op, p.value)
        for g in d.dgrs
        for c in g.rule.conjunctions
        for p in c.predicates
        if p.column == "seg"
    }
    assert seg_preds, [g.rule.to_text() for g in d.dgrs]
    for op, value in seg_preds:
        assert op in ("in", "not in", "=", "!=")
        assert set(value if isinstance(value, tuple) else (value,)) in ({"a", "c"}, {"b", "d"})
    assert min(purities(d, pdf)) >= 0.9
    # Exact semantics with nulls: every rule's Spark filter is its pandas mask.
    for g in d.dgrs:
        ids = {r["rid"] for r in df.filter(g.rule.to_column()).select("rid").collect()}
        assert ids == set(pdf.loc[g.rule.mask(pdf).to_numpy(), "rid"])


# ------------------------------------------------------------------------------------------------
# Determinism and limits
# ------------------------------------------------------------------------------------------------


def test_deterministic_for_a_seed(spark: Any) -> None:
    pdf = planted_regimes(4000, seed=9)
    df = to_spark(spark, pdf).repartition(3)
    schema = planted_schema(pdf)
    cfg = DiscoveryConfig(max_levels=3)
    a, b = (discover(df, schema, cfg, seed=7) for _ in range(2))
    assert [(g.rule, g.support, g.val_error) for g in a.dgrs] == [
        (g.rule, g.support, g.val_error) for g in b.dgrs
    ]
    assert a.rho == b.rho and a.trainings == b.trainings
    X = a.encoder.transform(pdf)
    for mid, m in a.models.items():
        np.testing.assert_array_equal(m.predict(X), b.models[mid].predict(X))


def test_the_same_rules_however_the_table_is_partitioned(spark: Any) -> None:
    """Samples are drawn from a hash of each row, not `F.rand` (whose stream follows partitions):
    a cluster, a local session and another file layout find the same rules."""
    pdf = planted_regimes(4000, seed=9)
    schema = planted_schema(pdf)
    cfg = DiscoveryConfig(max_levels=3, sample_per_candidate=500)
    base = to_spark(spark, pdf)
    a, b = (
        discover(df, schema, cfg, seed=7)
        for df in (base.coalesce(1), base.repartition(5).sortWithinPartitions("x3"))
    )
    assert [(g.rule, g.support, g.val_error) for g in a.dgrs] == [
        (g.rule, g.support, g.val_error) for g in b.dgrs
    ]


def test_time_budget_returns_an_incomplete_but_usable_result(spark: Any) -> None:
    pdf = planted_regimes(3000, seed=2)
    d = discover(to_spark(spark, pdf), planted_schema(pdf), DiscoveryConfig(time_budget_s=0.001))
    assert d.incomplete and d.stats["stop_reason"] == "time_budget"
    assert len(d.levels) == 1  # the root level always runs: it fits the global model
    out = d.predict()(to_spark(spark, pdf.head(100))).toPandas()
    assert len(out) == 100 and out["_date_pred"].notna().all()


def test_absolute_rho_below_the_noise_accepts_nothing(spark: Any, caplog: Any) -> None:
    """The authors' setting that fails on noisy data: rho=0.05 with 5% label noise."""
    pdf = planted_regimes(3000, seed=3)
    cfg = DiscoveryConfig(rho_mode="absolute", rho=0.05, max_levels=3)
    with caplog.at_level(logging.WARNING, logger="date_spark.discovery"):
        d = discover(to_spark(spark, pdf), planted_schema(pdf), cfg)
    assert d.rho == 0.05
    assert any("below the estimated error floor" in r.getMessage() for r in caplog.records)
    assert d.coverage < 0.3


def test_bad_input(spark: Any) -> None:
    for bad in (float("nan"), "abc", 0, -0.1, float("inf")):
        with pytest.raises(ConfigError, match=r"discovery\.rho"):
            Config().with_overrides({"discovery.rho": bad})
    with pytest.raises(ConfigError, match="below 1"):
        Config().with_overrides({"discovery.rho": 1.5})
    pdf = planted_regimes(500, seed=1)
    schema = planted_schema(pdf)
    with pytest.raises(DiscoveryError, match="constant"):
        discover(to_spark(spark, pdf.assign(y=1)), schema, DiscoveryConfig())
    sneaky = DiscoveryConfig.model_construct(
        **{**DiscoveryConfig().model_dump(), "rho": float("nan")}
    )
    with pytest.raises(DiscoveryError, match="rho"):
        discover(to_spark(spark, pdf), schema, sneaky)
    tiny_cap = DiscoveryConfig.model_construct(
        **{**DiscoveryConfig().model_dump(), "max_candidates_per_level": 1}
    )
    with pytest.raises(DiscoveryError, match="two children"):
        discover(to_spark(spark, pdf), schema, tiny_cap)
    with pytest.raises(ConfigError, match="sample_per_candidate"):
        Config().with_overrides({"discovery.sample_per_candidate": 60})
    small_sample = DiscoveryConfig.model_construct(
        **{**DiscoveryConfig().model_dump(), "sample_per_candidate": 60}
    )
    with pytest.raises(DiscoveryError, match="sample_per_candidate"):
        discover(to_spark(spark, pdf), schema, small_sample)
    with pytest.raises(DiscoveryError, match="missing"):
        discover(to_spark(spark, pdf).drop("x3"), schema, DiscoveryConfig())
    with pytest.raises(DiscoveryError, match="min_rows"):
        discover(to_spark(spark, pdf).limit(20), schema, DiscoveryConfig())


# ------------------------------------------------------------------------------------------------
# Pure helpers
# ------------------------------------------------------------------------------------------------


def test_subtract_is_an_exact_disjoint_complement() -> None:
    rng = np.random.default_rng(0)
    pdf = pd.DataFrame({"x": rng.random(500), "c": rng.choice(np.array(["a", "b", "c"]), 500)})
    pdf.loc[::17, "x"] = np.nan
    pdf["c"] = pdf["c"].astype(object)
    pdf.loc[::23, "c"] = None
    c = Conjunction((Predicate("x", ">=", 0.2),))
    a = Conjunction((Predicate("x", "<", 0.7), Predicate("c", "in", ("a", "b"))))
    pieces = subtract(c, a, frozenset({"x", "c"}))
    masks = np.stack([Rule((p,)).mask(pdf).to_numpy() for p in pieces])
    assert (masks.sum(axis=0) <= 1).all()
    want = Rule((c,)).mask(pdf).to_numpy() & ~Rule((a,)).mask(pdf).to_numpy()
    assert (masks.any(axis=0) == want).all()
    assert subtract(c, Conjunction((Predicate("x", "<", 0.1),)), frozenset()) == [c]


def test_effective_rho_modes() -> None:
    assert effective_rho("absolute", 0.05, 0.3, 0.06, 0.5) == 0.05
    assert effective_rho("variance", 0.1, 9.0, 0.2, 11.0) == pytest.approx(1.1)
    rel = effective_rho("relative", 0.25, 0.36, 0.06, 0.42)
    assert 0.06 < rel < 0.36 and rel == pytest.approx(0.06 * 6**0.25)
    # A table the DGR model already fits at the floor: the threshold is its own error.
    assert effective_rho("relative", 0.25, 0.05, 0.07, 0.5) == pytest.approx(0.05)
    assert effective_rho("relative", 0.25, 0.3, 0.0, 0.5) == pytest.approx(0.075)


def test_a_level_sample_stays_within_its_cell_budget() -> None:
    """Narrow tables keep `sample_per_candidate` rows each; wide ones shrink every candidate in
    proportion until the level fits `sample_cells`, never below 2 x min_rows."""
    from date_spark.discovery import level_fractions

    cfg = DiscoveryConfig(sample_per_candidate=20_000, sample_cells=20_000_000, min_rows=50)
    counts = [50_000, 10_000, 400, 60]
    narrow = level_fractions(counts, 8, cfg)
    assert narrow == [0.4, 1.0, 1.0, 1.0]

    wide = level_fractions(counts * 12, 300, cfg)  # 48 candidates, 300 columns
    rows = [f * n for f, n in zip(wide, counts * 12, strict=True)]
    floored = sum(r for r in rows if r <= 100)  # the floor may top the budget by these
    assert 19_000_000 <= (sum(rows) - floored) * 300 <= 20_000_000
    assert rows[0] / rows[1] == pytest.approx(2.0)  # shrunk together: 20,000 : 10,000
    assert all(r >= min(n, 100) - 1e-9 for r, n in zip(rows, counts * 12, strict=True))
    assert rows[3] == pytest.approx(60)  # a candidate under the floor keeps all its rows
