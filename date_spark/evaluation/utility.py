"""Did the model get better, and can the number be trusted: utility on the test split.

The paper reports one figure, DATE vs a single unpartitioned model, which mixes two effects. A user
needs them apart, with an interval each, on rows no stage ever saw (the test split):

- **partition gain**: one model per DGR ("partition only") vs one global model ("no partition");
- **synthetic gain (partitioned)**: the partitioned model trained with the kept synthetic rows added
  to their DGR ("DATE") vs partition only;
- **synthetic gain (global)**: what a user of the output gets: one global model trained on the
  input plus the kept rows vs on the input alone.

Every model is the one model of `date_spark.modeling.models` (``evaluation.model``, default
``selection.model``), trained on the non-test rows; test rows are routed to their DGR's model by
the first matching rule, the rest to the global model (the paper's protocol). Each gain is the mean
over test rows of the per-row loss difference (Brier score or squared error), with a paired
bootstrap interval over test rows (`scipy.stats.bootstrap`, percentile); relative figures divide by
the baseline's mean loss. The 0/1 error is reported beside the loss. Per segment (DGR), the same
for the synthetic gain: a thin segment's own test rows say whether its rows helped it. And for the
segments a user names (``evaluation.segments``: rule text per name), the global synthetic gain on
that segment's own test rows: "did my model get better on the segments I care about".

Train and test rows are collected as seeded samples capped at ``evaluation.max_rows`` each (drawn
by a hash of each row, so the same rows however the table is partitioned).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from date_spark.io.split import SPLIT_COL, TEST, row_uniform
from date_spark.modeling.models import ModelSpec
from date_spark.rules import Rule
from date_spark.runtime.spark import to_pandas
from date_spark.schema import TableSchema

__all__ = ["NEGLIGIBLE_LOSS", "Gain", "SegmentGain", "Utility", "bootstrap_interval", "utility"]

VARIANTS = ("no_partition", "partition_only", "date", "global_synthetic")


def bootstrap_interval(
    d: np.ndarray, *, resamples: int = 2000, confidence: float = 0.95, seed: int = 42
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences `d`."""
    d = np.asarray(d, dtype=float)
    if len(d) == 0:
        return math.nan, math.nan
    if len(d) == 1 or np.all(d == d[0]):
        return float(d[0]), float(d[0])
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap(
            (d,),
            np.mean,
            n_resamples=resamples,
            confidence_level=confidence,
            method="percentile",
            vectorized=True,
            random_state=np.random.default_rng(seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


NEGLIGIBLE_LOSS = 1e-6


def _pct(share: float) -> float:
    """Percent rounded to one decimal, without a signed zero ("-0.0%")."""
    return round(100 * share, 1) + 0.0


@dataclass(frozen=True)
class Gain:
    """A loss reduction (positive = better) of `after` vs `before` on the same test rows."""

    name: str
    rows: int
    before: float  # mean loss
    after: float
    low: float  # interval of the mean reduction
    high: float
    error_before: float  # mean 0/1 error (MSE for regression)
    error_after: float
    # the loss of knowing nothing (1 for a classifier's loss, the target's variance for MSE): a
    # loss below NEGLIGIBLE_LOSS of it is a perfect fit, and ratios between two of them are noise
    scale: float = 1.0

    @property
    def negligible(self) -> bool:
        """Both losses are too small to compare (the model is already all but perfect)."""
        worst = max(self.before, self.after)
        return math.isfinite(worst) and worst < NEGLIGIBLE_LOSS * self.scale

    @property
    def gain(self) -> float:
        return self.before - self.after

    @property
    def relative(self) -> float:
        return self.gain / self.before if self.before > 0 else math.nan

    @property
    def significant(self) -> int:
        """+1 significantly better, -1 significantly worse, 0 the interval holds zero (or both
        losses are too small to compare)."""
        if self.negligible:
            return 0
        if self.low > 0:
            return 1
        if self.high < 0:
            return -1
        return 0

    def verdict(self) -> str:
        return {1: "better", -1: "WORSE", 0: "no significant change"}[self.significant]

    def text(self, loss_name: str) -> str:
        if not self.rows:
            return f"{self.name}: no test rows"
        if self.negligible:
            return (
                f"{self.name}: {loss_name} {self.before:.2g} -> {self.after:.2g}, both too small "
                f"to compare (below {NEGLIGIBLE_LOSS:g} of a constant model's): no measurable "
                f"change"
            )
        rel = self.relative
        pct = (
            f"{_pct(-rel):+.1f}% ({self.before:.4g} -> {self.after:.4g})"
            if math.isfinite(rel)
            else f"{self.before:.4g} -> {self.after:.4g}"
        )
        scale = self.before if self.before > 0 else 1.0
        lo, hi = _pct(-self.high / scale), _pct(-self.low / scale)
        ci = f"[{lo:+.1f}%, {hi:+.1f}%]"
        return f"{self.name}: {loss_name} {pct}, 95% CI {ci}: {self.verdict()}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            gain=self.gain,
            relative=self.relative,
            significant=self.significant,
            negligible=self.negligible,
        )
        return d


@dataclass(frozen=True)
class SegmentGain:
    """The synthetic gain on one DGR's own test rows, and how many synthetic rows it received."""

    segment: str
    rule: str
    synthetic_rows: int
    gain: Gain


@dataclass
class Utility:
    loss: str  # "brier", "log_loss" or "squared_error"
    loss_name: str
    model: str
    test_rows: int
    train_rows: int
    synthetic_rows: int
    losses: dict[str, float]  # mean loss per variant
    errors: dict[str, float]  # mean 0/1 error (or squared error) per variant
    partition_gain: Gain
    synthetic_gain: Gain
    global_gain: Gain
    segments: list[SegmentGain] = field(default_factory=list)
    named: list[SegmentGain] = field(default_factory=list)  # evaluation.segments, global model

    def gains(self) -> list[Gain]:
        return [self.global_gain, self.synthetic_gain, self.partition_gain]

    def headline(self) -> str:
        """The run summary's first line: which effects are significant."""
        if not self.test_rows:
            return "utility: no test rows to measure on"
        parts = []
        for g in (self.global_gain, self.synthetic_gain):
            if self.synthetic_rows == 0:
                break
            parts.append(g.text(self.loss_name))
        if self.synthetic_rows == 0:
            parts.append("synthetic rows: none kept, nothing to measure")
        parts.append(self.partition_gain.text(self.loss_name))
        if self.synthetic_rows:
            parts += [f"segment {s.segment}: " + s.gain.text(self.loss_name) for s in self.named]
        return f"utility on {self.test_rows} test rows ({self.model}): " + "; ".join(parts)

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow and the manifest."""
        out: dict[str, float] = {
            "test_rows": float(self.test_rows),
            "train_rows": float(self.train_rows),
            "synthetic_rows": float(self.synthetic_rows),
        }
        for k, v in self.losses.items():
            out[f"loss.{k}"] = v
        for k, v in self.errors.items():
            out[f"error.{k}"] = v
        for g in self.gains():
            key = g.name.replace(" ", "_").replace("(", "").replace(")", "")
            out[f"{key}.gain"] = g.gain
            out[f"{key}.relative"] = g.relative
            out[f"{key}.low"] = g.low
            out[f"{key}.high"] = g.high
            out[f"{key}.significant"] = float(g.significant)
        for sg in self.named:
            g, name = sg.gain, re.sub(r"[^\w.\-/ ]", "_", sg.segment)  # MLflow's key alphabet
            for k, v in (("relative", g.relative), ("low", g.low), ("high", g.high)):
                out[f"segment.{name}.{k}"] = v
            out[f"segment.{name}.rows"] = float(g.rows)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "loss_name": self.loss_name,
            "model": self.model,
            "test_rows": self.test_rows,
            "train_rows": self.train_rows,
            "synthetic_rows": self.synthetic_rows,
            "losses": dict(self.losses),
            "errors": dict(self.errors),
            "gains": [g.to_dict() for g in self.gains()],
            "segments": [
                {
                    "segment": s.segment,
                    "rule": s.rule,
                    "synthetic_rows": s.synthetic_rows,
                    **s.gain.to_dict(),
                }
                for s in self.segments
            ],
            "named_segments": [
                {
                    "segment": s.segment,
                    "rule": s.rule,
                    "synthetic_rows": s.synthetic_rows,
                    **s.gain.to_dict(),
                }
                for s in self.named
            ],
            "headline": self.headline(),
        }


def _route(frame: pd.DataFrame, rules: Mapping[str, Rule]) -> np.ndarray:
    out = np.full(len(frame), "", dtype=object)
    free = np.ones(len(frame), dtype=bool)
    for rid, rule in rules.items():
        m = rule.mask(frame).to_numpy(dtype=bool) & free
        out[m] = str(rid)
        free &= ~m
    return out


def collect(
    data: DataFrame, schema: TableSchema, *, max_rows: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(non-test rows, test rows) as pandas, each a seeded sample capped at `max_rows`."""
    counts = {r[0]: int(r[1]) for r in data.groupBy(SPLIT_COL).count().collect()}
    n_test = counts.get(TEST, 0)
    n_train = sum(v for k, v in counts.items() if k != TEST)
    cols = [F.col("`" + c.replace("`", "``") + "`") for c in schema.names]

    def sample(cond: Any, n: int, salt: int) -> pd.DataFrame:
        frac = min(1.0, max_rows / max(1, n))
        df = data.where(cond)
        if frac < 1.0:
            df = df.where(row_uniform(schema.names, seed + salt) < frac)
        return to_pandas(df.select(*cols))

    return sample(F.col(SPLIT_COL) != TEST, n_train, 1), sample(F.col(SPLIT_COL) == TEST, n_test, 2)


@dataclass
class _Scores:
    """Each variant's per-test-row loss and 0/1 error, and the paired gains between variants."""

    loss: dict[str, np.ndarray]
    err: dict[str, np.ndarray]
    resamples: int
    confidence: float
    seed: int
    scale: float = 1.0  # Gain.scale

    @staticmethod
    def empty(n: int, resamples: int, confidence: float, seed: int, scale: float = 1.0) -> _Scores:
        zeros = {v: np.zeros(n) for v in VARIANTS}
        return _Scores(
            zeros, {v: np.zeros(n) for v in VARIANTS}, resamples, confidence, seed, scale
        )

    def put(self, variant: str, m: Any, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        if mask.any():
            self.loss[variant][mask] = m.losses(x[mask], y[mask])
            self.err[variant][mask] = m.errors(x[mask], y[mask])

    def gain(self, name: str, before: str, after: str, mask: np.ndarray | None = None) -> Gain:
        m = np.ones(len(self.loss[before]), dtype=bool) if mask is None else mask
        d = self.loss[before][m] - self.loss[after][m]
        lo, hi = bootstrap_interval(
            d, resamples=self.resamples, confidence=self.confidence, seed=self.seed
        )

        def mean(v: np.ndarray) -> float:
            return float(np.mean(v[m])) if m.any() else math.nan

        return Gain(
            name, int(m.sum()), mean(self.loss[before]), mean(self.loss[after]), lo, hi,
            mean(self.err[before]), mean(self.err[after]), self.scale,
        )  # fmt: skip


def _score_variants(
    scores: _Scores,
    train: pd.DataFrame,
    test: pd.DataFrame,
    synth: pd.DataFrame,
    rules: Mapping[str, Rule],
    fit: Callable[[pd.DataFrame], Any],
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> None:
    """Fill every variant's losses: the global model, one model per rule, and each with the
    synthetic rows (module doc)."""
    test_part, train_part, synth_part = (
        _route(test, rules),
        _route(train, rules),
        _route(synth, rules),
    )
    everything = np.ones(len(test), dtype=bool)
    glob = fit(train)
    for variant in ("no_partition", "partition_only", "date"):
        scores.put(variant, glob, x_test, y_test, everything)
    scores.put("global_synthetic", fit(pd.concat([train, synth], ignore_index=True)), x_test,
               y_test, everything)  # fmt: skip
    for rid in rules:
        tm = test_part == rid
        own = train[train_part == rid]
        if not tm.any() or own.empty:
            continue
        m = fit(own)
        scores.put("partition_only", m, x_test, y_test, tm)
        extra = synth[synth_part == rid]
        mine = fit(pd.concat([own, extra], ignore_index=True)) if len(extra) else m
        scores.put("date", mine, x_test, y_test, tm)
    # rows no rule covers: the global model, trained with the synthetic rows no rule covers
    rest = test_part == ""
    extra_rest = synth[synth_part == ""]
    if rest.any() and len(extra_rest):
        scores.put("date", fit(pd.concat([train, extra_rest], ignore_index=True)), x_test,
                   y_test, rest)  # fmt: skip


def _segment_gains(
    scores: _Scores,
    test: pd.DataFrame,
    synth: pd.DataFrame,
    rules: Mapping[str, Rule],
    thin: Mapping[str, Rule],
) -> list[SegmentGain]:
    """The synthetic gain on each DGR's and each thin segment's own test rows."""
    test_seg, synth_seg = _route(test, rules), _route(synth, rules)
    for rid, rule in thin.items():
        for part, frame in ((test_seg, test), (synth_seg, synth)):
            if len(frame):
                part[(part == "") & rule.mask(frame).to_numpy(dtype=bool)] = str(rid)
    out = []
    for rid, rule in [*rules.items(), *thin.items()]:
        tm = test_seg == rid
        if tm.any():
            g = scores.gain("synthetic gain", "partition_only", "date", tm)
            out.append(SegmentGain(str(rid), rule.to_text(), int((synth_seg == rid).sum()), g))
    return out


def _named_gains(
    scores: _Scores, test: pd.DataFrame, synth: pd.DataFrame, named: Mapping[str, Rule]
) -> list[SegmentGain]:
    """The global synthetic gain on the test rows of each segment the user named."""
    out = []
    for name, rule in named.items():
        tm = rule.mask(test).to_numpy(dtype=bool) if len(test) else np.zeros(0, dtype=bool)
        rows = int(rule.mask(synth).to_numpy(dtype=bool).sum()) if len(synth) else 0
        g = scores.gain("synthetic gain (global)", "no_partition", "global_synthetic", tm)
        out.append(SegmentGain(str(name), rule.to_text(), rows, g))
    return out


def utility(
    train: pd.DataFrame,
    test: pd.DataFrame,
    rules: Mapping[str, Rule],
    synthetic: pd.DataFrame,
    schema: TableSchema,
    encode: Callable[[pd.DataFrame], np.ndarray],
    model: ModelSpec,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 42,
    thin: Mapping[str, Rule] | None = None,
    named: Mapping[str, Rule] | None = None,
) -> Utility:
    """The three gains of the module doc on `test`, models trained on `train` (non-test rows).
    `thin` segments (regions no DGR covers, served by the global model) are reported per segment
    like the DGRs; `named` segments (the user's) get the global synthetic gain on their rows."""
    target = schema.target
    synth = synthetic[[c for c in schema.names]] if len(synthetic) else train.iloc[:0]

    def fit(frame: pd.DataFrame) -> Any:
        return model.fit(encode(frame), frame[target].to_numpy())

    n = len(test)
    scale = 1.0
    if schema.task == "regression" and n:
        var = float(np.var(test[target].to_numpy(dtype=float)))
        scale = var if math.isfinite(var) and var > 0 else 1.0
    scores = _Scores.empty(n, resamples, confidence, seed, scale)
    _score_variants(scores, train, test, synth, rules, fit, encode(test), test[target].to_numpy())
    loss, err = scores.loss, scores.err
    return Utility(
        loss=model.loss,
        loss_name=model.loss_name,
        model=model.kind,
        test_rows=n,
        train_rows=len(train),
        synthetic_rows=len(synth),
        losses={v: float(np.mean(loss[v])) if n else math.nan for v in VARIANTS},
        errors={v: float(np.mean(err[v])) if n else math.nan for v in VARIANTS},
        partition_gain=scores.gain("partition gain", "no_partition", "partition_only"),
        synthetic_gain=scores.gain("synthetic gain (partitioned)", "partition_only", "date"),
        global_gain=scores.gain("synthetic gain (global)", "no_partition", "global_synthetic"),
        segments=_segment_gains(scores, test, synth, rules, thin or {}),
        named=_named_gains(scores, test, synth, named or {}),
    )
