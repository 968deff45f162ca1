"""Algorithm 1 of DATE: discover distribution-guiding rules (DGRs) with model sharing, on Spark.

A DGR is a condition in DNF plus one model that explains the rows it covers within an error
threshold rho. The search is top-down, level by level (breadth first):

    level 1: the empty conjunction (every training row). Its model's error, a reference model's
             error (the noise floor) and the constant predictor's error fix the threshold rho_eff;
             this level also fits the feature encoder and the global model.
    level L: pop up to `max_candidates_per_level` conjunctions from a priority queue; for each:
        - if an existing model fits the candidate's rows within rho_eff: add the conjunction to
          that model's DNF (model sharing; no training);
        - else train a new model on 75% of its rows, validate on 25%; accept when error <= rho_eff;
        - else split it with a decision tree fitted on its rows and queue the children
          C AND side (one per side, plus C AND col is null when the column has nulls).
    stop when the queue is empty, uncovered rows <= `stop_uncovered_fraction`, or at `max_levels`
    or the time budget (then the result is marked incomplete). Rows no DGR covers are served by a
    global model (a decision tree on the root sample).

Decisions where the paper and the authors' code are silent (see ../shared/reference/METHOD.md);
every "measured" below is on `testing.planted.planted_regimes` (5 regimes, 5% label noise):

* **Threshold (`rho_mode`)**. "absolute": rho_eff = rho, as in the paper. A rho below the table's
  irreducible error (0.05 with 5% label noise) can never be met, so discovery warns and ends with
  no DGR instead of searching for hours. "relative" (default, rho = 0.25):
  rho_eff = floor * (root_error / floor) ** rho, where root_error is the DGR model fitted on the
  whole table and floor = min(root_error, a gradient-boosted reference model's error) estimates
  what no partition can beat (noise plus finite-sample error). rho places the threshold between
  the two on a log scale, so one default serves error rates and MSE that span orders of magnitude
  (a linear share of the gap accepted regime mixtures in regression: measured). With the default
  the planted classification table gets rho_eff ~0.09-0.11 at 5% noise. The root itself is
  accepted (one DGR for everything: the table is homogeneous for the model) when its error is
  within two standard errors of the floor. "variance": rho_eff = rho * the constant predictor's
  error (the target's variance for regression, 1 - majority share for classification). Errors are
  1 - accuracy for classification and MSE for regression (`error()`).
* **Model class**. Default "linear" (logistic / ridge regression on one-hot categoricals and
  standardised, mean-imputed numerics with missing-value indicators). A depth-6 tree fits the union
  of two planted regimes as well as one regime (5-9% error either way: measured), so no threshold on
  its error can tell them apart; a linear model fits a regime near the noise floor and a union at
  24-30%. Trees and forests stay available (`model`); the global model is a decision tree.
* **Splits**. The splitting tree is fitted to the *residuals* of the candidate's rejected model
  (`split_target`), so splits fall where that model fails, i.e. at regime boundaries (model-based
  recursive partitioning); the authors' tree on the label prefers each regime's own label
  thresholds (measured), whose children look homogeneous because the label is constant there.
  Categories in that tree are ordered by the model's per-category score vectors (`trees.
  score_order`), so ``c in ('a', 'b')`` can be found even when the model's own category effects
  leave every category's mean residual at zero. Columns are ranked by the shallowest depth at
  which the residual tree splits on them substantially, then by total gain (`SUBSTANTIAL_GAIN`):
  a regime variable sits above the label thresholds it conditions. Children of the best split
  only (`splits_per_candidate` = 1) are queued: the authors' breadth (every split node, `None`) lets
  more overlapping candidates face the threshold, and with noisy validation errors some regime
  mixture passes (measured: purity fell to ~0.5 on half of the seeds). Among the best split per
  column, the top `lookahead_splits` are refitted on their children, and the best-ranked split is
  replaced only when another one's children fit significantly better (`_split_proposals`).
* **Disjoint rules**. Every candidate is kept logically disjoint from the accepted conjunctions: a
  candidate that overlaps a conjunction accepted after it was queued is rewritten into the disjoint
  pieces C AND NOT A (NOT (a1 AND a2) = NOT a1 OR (a1 AND NOT a2); NOT (x < t) = x >= t OR
  x is null). So a DGR's rule describes exactly the rows its model was validated on, rules never
  overlap, and routing does not depend on rule order. A candidate that overlaps a conjunction
  accepted earlier in the same level is deferred (re-queued, rewritten at the next pop).
* **Null routing**. Split children are ``col < d`` / ``col >= d`` (categoricals ``col in S`` /
  ``col not in S``) plus an explicit ``col is null`` child when the column holds nulls, so every
  row goes to exactly one child (`date_spark.modeling.trees`). NaN in float columns is treated
  as null.
* **Minimum support**. A candidate needs max(`min_rows`, `min_support` * rows) rows to be
  evaluated; smaller ones stay uncovered (global model).
* **Model sharing**. Existing models are scored on each candidate's sampled rows before training.
  A candidate whose majority label (mean, for regression) alone meets rho_eff never joins another
  model: any model predicting that label would "fit" it, gluing unrelated regions. Candidates of
  one level train concurrently, so the level's new models are then cross-scored on each other's
  sampled rows (a pass over the cached sample, not the table) and a later candidate joins an
  earlier model that fits it. A shared DGR's `val_error` is the support-weighted mean of its
  conjunctions' errors (own 25% holdout for the trained one, the whole sample for shared ones).

Spark shape (per level, by design 2 full passes; the driver holds rules, models and counts only):
1. one aggregation counts every candidate's rows (`rules.count_rules`, one `count(when)` each);
2. one pass draws a sample capped per candidate: a per-candidate fraction min(1, cap / count),
   one projected ``when`` per candidate into an array of matching candidate ids, kept only for rows
   that fall in some candidate's fraction; only that sample is exploded, cached, and sent to
   ``groupBy(candidate).applyInPandas``, which runs the sharing check (existing models pickled into
   the function's closure), trains + validates the new model and, if rejected, returns the split
   predicates. The in-level sharing check reads the cached sample again; then it is unpersisted.
Level 1 scans twice too (statistics, root sample). The passes are measured, not declared: every
query on the table carries an observed row counter (`date_spark.discovery.scans`), and each level's
log line and `LevelStats.scans` give rows read / table rows ("not measured" where the session does
not report observed metrics). DataFrame API only, within Spark 3.5, so it runs on Spark Connect.
Native thread pools are pinned to one thread inside UDFs (Spark already runs a task per core;
oversubscription made a fit 40x slower here).
Determinism: samples are drawn from a hash of each row and the seed (`split.row_uniform`, so
they do not depend on partitioning), rows are sorted by a hash of their values inside each group,
and every model seed derives from the run seed and the candidate's text.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pyspark.sql import DataFrame

from date_spark.config import DiscoveryConfig
from date_spark.discovery.backend import CAND_COL, KEY_COL, SearchBackend, SparkBackend, TableStats
from date_spark.discovery.evaluate import (
    CROSS_DDL,
    RESULT_DDL,
    CrossSpec,
    EvalSpec,
    RootExtras,
    candidate_evaluator,
    cross_scorer,
    error,
    fit_model,
    losses,
    residuals,
)
from date_spark.discovery.result import DGR, Discovery, LevelStats, Part, Thin, spark_type
from date_spark.discovery.scans import format_passes
from date_spark.errors import DiscoveryError
from date_spark.modeling.features import FeatureEncoder
from date_spark.rules import Conjunction, Predicate, Rule
from date_spark.runtime.spark import sql_conf
from date_spark.schema import TableSchema

__all__ = [
    "CAND_COL",
    "DGR",
    "KEY_COL",
    "Discovery",
    "LevelStats",
    "Part",
    "SearchBackend",
    "SparkBackend",
    "TableStats",
    "Thin",
    "discover",
    "effective_rho",
    "error",
    "fit_model",
    "level_fractions",
    "losses",
    "residuals",
    "run_search",
    "spark_type",
    "subtract",
]

logger = logging.getLogger("date_spark.discovery")


# ================================================================================================
# The search
# ================================================================================================


@dataclass
class _Cand:
    conj: Conjunction
    tier: int  # 0: deferred (was acceptable), 1: child of a split
    priority: float
    pushed_at: int  # accepted conjunctions at queue time: rewrite against the ones after it

    def key(self) -> tuple[int, float, str]:
        return (self.tier, -self.priority, self.conj.to_text())


def _disjoint(a: Conjunction, b: Conjunction) -> bool:
    return a.and_(b).simplify() is None


def _complement(p: Predicate, nullable: bool) -> list[Predicate]:
    """Predicates that together match exactly the rows `p` does not (nulls included)."""
    null = [Predicate(p.column, "is null")] if nullable else []
    flip = {
        "<": ">=",
        "<=": ">",
        ">": "<=",
        ">=": "<",
        "=": "!=",
        "!=": "=",
        "in": "not in",
        "not in": "in",
    }
    if p.op == "is null":
        return [Predicate(p.column, "is not null")]
    if p.op == "is not null":
        return [Predicate(p.column, "is null")]
    return [Predicate(p.column, flip[p.op], p.value), *null]


def subtract(c: Conjunction, a: Conjunction, null_columns: frozenset[str]) -> list[Conjunction]:
    """Disjoint conjunctions whose union is c AND NOT a (nulls handled as in SQL)."""
    if _disjoint(c, a):
        return [c]
    out: list[Conjunction] = []
    prefix: Conjunction | None = c
    for p in a.predicates:
        assert prefix is not None
        for q in _complement(p, p.column in null_columns):
            piece = prefix.and_(q).simplify()
            if piece is not None:
                out.append(piece)
        prefix = prefix.and_(p).simplify()
        if prefix is None:
            break
    return out


def effective_rho(mode: str, rho: float, root_error: float, floor: float, baseline: float) -> float:
    """The error threshold a DGR must meet (see the module doc)."""
    if mode == "absolute":
        return rho
    if mode == "variance":
        return rho * baseline
    f = min(floor, root_error)
    if f <= 0:  # a perfect floor: the log scale has no room, interpolate linearly
        return rho * root_error
    return f * (root_error / f) ** rho


def _validated(cfg: DiscoveryConfig) -> DiscoveryConfig:
    """`cfg` as the pydantic model validates it (`config.DiscoveryConfig` holds every limit). A
    config built with `model_construct` skips validation; checked once here, before the search
    spends hours on a threshold that can never be met."""
    try:
        return DiscoveryConfig.model_validate(cfg.model_dump())
    except ValidationError as err:
        problems = "; ".join(
            f"discovery.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}".replace(".: ", ": ")
            for e in err.errors()
        )
        raise DiscoveryError(f"invalid discovery config: {problems}") from None


def discover(
    df: DataFrame, schema: TableSchema, cfg: DiscoveryConfig, *, seed: int = 42
) -> Discovery:
    """Run Algorithm 1 on the training rows `df` (test rows split off by the caller) and return
    the DGRs, their models and a global model for the rest."""
    if schema.task not in ("classification", "regression"):
        raise DiscoveryError(f"unknown task {schema.task!r}; use classification or regression")
    cfg = _validated(cfg)
    with sql_conf(df.sparkSession):
        return _Search(SparkBackend(df, schema, seed), schema, cfg, seed, time.monotonic).run()


def run_search(
    backend: SearchBackend,
    schema: TableSchema,
    cfg: DiscoveryConfig,
    *,
    seed: int = 42,
    clock: Callable[[], float] = time.monotonic,
) -> Discovery:
    """The engine-independent search loop (the module doc); `backend` owns the rows."""
    return _Search(backend, schema, _validated(cfg), seed, clock).run()


def level_fractions(counts: Sequence[int], n_cols: int, cfg: DiscoveryConfig) -> list[float]:
    """Sampling fraction per candidate: `sample_per_candidate` rows each, scaled down together
    so the level's cached sample stays within `sample_cells` (a 300-column table would otherwise
    cache 50 candidates x 20,000 rows x 300 cells and exhaust a 1 GB driver)."""
    rows = [min(n, cfg.sample_per_candidate) for n in counts]
    total = sum(rows) * max(1, n_cols)
    scale = min(1.0, cfg.sample_cells / total) if total else 1.0
    floor = 2 * cfg.min_rows
    return [
        min(1.0, max(r * scale, min(r, floor)) / n) if n else 1.0
        for r, n in zip(rows, counts, strict=True)
    ]


@dataclass
class _Accepted:
    """A conjunction accepted in the current level, before the level is resolved: it shares an
    existing model (`model_id`) or brings a new one (`model_bytes`), which may still join a model
    trained earlier in the same level."""

    cand: int  # index among the level's evaluated candidates
    conj: Conjunction
    count: int
    level: int
    error: float
    model_id: int | None  # an existing model it shares; None: its own new model
    model_bytes: bytes | None = None

    def part(self, model_id: int, error: float, shared: bool) -> Part:
        return Part(self.conj, model_id, self.count, error, self.level, shared)


@dataclass
class _Tally:
    """What one level did: its log line and `LevelStats`."""

    candidates: int = 0  # popped from the queue
    evaluated: int = 0  # with enough rows, sampled and sent to the UDF
    accepted: int = 0  # new models
    shared: int = 0  # joined an existing model
    rejected: int = 0
    deferred: int = 0
    dropped: int = 0  # too few rows
    trainings: int = 0


class _Search:
    def __init__(
        self,
        backend: SearchBackend,
        schema: TableSchema,
        cfg: DiscoveryConfig,
        seed: int,
        clock: Callable[[], float],
    ) -> None:
        self.b = backend
        self.schema = schema
        self.cfg = cfg
        self.seed = seed
        self.clock = clock
        self.t0 = clock()
        self.kinds = schema.kinds
        self.queue: list[_Cand] = []
        self.queued: set[Conjunction] = set()
        self.seen: set[Conjunction] = set()
        self.accepted: list[Conjunction] = []
        self.thin: list[tuple[Conjunction, int]] = []  # dropped below the support floor
        self.parts: list[Part] = []  # accepted conjunctions, in order, with their models
        self.model_bytes: dict[int, bytes] = {}
        self.levels: list[LevelStats] = []
        self.passes_before: float | None = 0.0  # at the level's start (level 1: the statistics)
        self.trainings = 0
        self.incomplete = False
        self.stop_reason = ""

    # -- helpers ---------------------------------------------------------------------------------
    def _seed_for(self, c: Conjunction) -> int:
        return (zlib.crc32(c.to_text().encode("utf-8")) ^ (self.seed * 2654435761)) % (2**31 - 1)

    def _push(self, c: Conjunction, tier: int, priority: float, pushed_at: int) -> None:
        if c in self.queued or c in self.seen:
            return
        if len(c.predicates) > self.cfg.max_conjunction_length:
            return
        self.queue.append(_Cand(c, tier, priority, pushed_at))
        self.queued.add(c)

    def _rewrite(self, cand: _Cand) -> list[Conjunction]:
        pieces = [cand.conj]
        for a in self.accepted[cand.pushed_at :]:
            nxt: list[Conjunction] = []
            for p in pieces:
                nxt.extend(subtract(p, a, self.null_columns))
            pieces = nxt
        return pieces

    def _pop(self) -> list[_Cand]:
        """Up to `max_candidates_per_level` candidates, each disjoint from every accepted rule."""
        k = self.cfg.max_candidates_per_level
        batch: list[_Cand] = []
        taken: set[Conjunction] = set()
        overflow: list[_Cand] = []
        self.queue.sort(key=_Cand.key, reverse=True)  # best last: pop() is O(1)
        while self.queue and len(batch) < k:
            cand = self.queue.pop()
            self.queued.discard(cand.conj)
            for piece in self._rewrite(cand):
                if (
                    piece in self.seen
                    or piece in taken
                    or len(piece.predicates) > self.cfg.max_conjunction_length
                ):
                    continue
                fresh = _Cand(piece, cand.tier, cand.priority, len(self.accepted))
                if len(batch) < k:
                    batch.append(fresh)
                    taken.add(piece)
                else:
                    overflow.append(fresh)
        for c in overflow:
            self._push(c.conj, c.tier, c.priority, c.pushed_at)
        return batch

    def _elapsed(self) -> float:
        return self.clock() - self.t0

    def _spec(
        self, root: bool, seeds: Mapping[int, int], rho: float | None, models: Mapping[int, bytes]
    ) -> EvalSpec:
        c = self.cfg
        return EvalSpec(
            schema=self.schema,
            encoder=None if root else self.encoder,
            model=c.model,
            max_depth=c.model_max_depth,
            global_model=c.global_model,
            validation_fraction=c.validation_fraction,
            split_depth=c.split_tree_depth,
            split_target=c.split_target,
            splits_per_candidate=c.splits_per_candidate,
            lookahead_splits=c.lookahead_splits,
            max_categories=c.max_categories,
            rho=rho,
            root=root,
            seeds=dict(seeds),
            models=dict(models),
        )

    def _children(self, parent: Conjunction, count: int, splits_json: str, level_start: int) -> int:
        pushed = 0
        for s in json.loads(splits_json):
            preds = [Predicate.from_json(p, self.kinds) for p in s["preds"]]
            col = s["column"]
            if not s["null_split"] and col in self.null_columns:
                preds.append(Predicate(col, "is null"))
            for p in preds:
                child = parent.and_(p).simplify()
                if child is None or child == parent:
                    continue
                before = len(self.queue)
                self._push(child, 1, count * float(s["gain"]), level_start)
                pushed += len(self.queue) - before
        return pushed

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> Discovery:
        cfg = self.cfg
        st = self.b.stats()
        self.n = st.n_rows
        if self.n < max(cfg.min_rows, 2):
            raise DiscoveryError(
                f"the training table has {self.n} rows with a target; discovery needs at least "
                f"min_rows={cfg.min_rows}"
            )
        if st.target_min == st.target_max:
            raise DiscoveryError(
                f"the target {self.schema.target!r} is constant ({st.target_min!r} in every row); "
                f"there is nothing to model"
            )
        self.null_columns = frozenset(c for c, k in st.null_counts.items() if k > 0)
        self.min_support = max(cfg.min_rows, math.ceil(cfg.min_support * self.n))
        self._root_level()
        level = 1
        while True:
            uncovered = self.n - sum(p.support for p in self.parts)
            if uncovered <= cfg.stop_uncovered_fraction * self.n:
                self.stop_reason = "coverage"
                break
            if not self.queue:
                self.stop_reason = "exhausted"
                break
            if level >= cfg.max_levels:
                self.incomplete, self.stop_reason = True, "max_levels"
                break
            last = self.levels[-1].seconds if self.levels else 0.0
            if self._elapsed() + last > cfg.time_budget_s:
                self.incomplete, self.stop_reason = True, "time_budget"
                logger.warning(
                    "discovery: time budget %.0f s reached after %.1f s and %d levels; the result "
                    "is incomplete",
                    cfg.time_budget_s,
                    self._elapsed(),
                    level,
                )
                break
            level += 1
            self._level(level)
        return self._result()

    def _root_level(self) -> None:
        t = self.clock()
        cfg = self.cfg
        root = Conjunction()
        frac = level_fractions([self.n], len(self.schema.features) + 1, cfg)[0]
        seeds = {0: self._seed_for(root)}
        sample = self.b.draw(1, [root], [frac])
        try:
            res = self.b.apply(
                sample, candidate_evaluator(self._spec(True, seeds, None, {})), RESULT_DDL
            )
        finally:
            self.b.release(sample)
        if len(res) != 1:
            raise DiscoveryError("the root sample is empty; the training table has no usable rows")
        r = res.iloc[0]
        extra: RootExtras = pickle.loads(r["extra"])
        self.encoder: FeatureEncoder = extra.encoder
        self.global_model = pickle.loads(extra.global_model)
        self.root_error = float(r["val_error"])
        self.floor = extra.floor
        self.baseline = extra.baseline
        self.global_error = extra.global_error
        self.rho = effective_rho(cfg.rho_mode, cfg.rho, self.root_error, self.floor, self.baseline)
        self.trainings = 1
        self.seen.add(root)
        accept_root = self.root_error <= self.rho
        if cfg.rho_mode == "relative":
            accept_root = accept_root or self.root_error <= self.floor + 2 * extra.root_se
        logger.info(
            "discovery: %d rows; root %s error %.4f, floor %.4f, global %s %.4f, constant %.4f "
            "-> rho_eff %.4f (%s, rho=%g); min support %d rows",
            self.n,
            cfg.model,
            self.root_error,
            self.floor,
            cfg.global_model,
            self.global_error,
            self.baseline,
            self.rho,
            cfg.rho_mode,
            cfg.rho,
            self.min_support,
        )
        if cfg.rho_mode == "absolute" and self.rho < self.floor:
            logger.warning(
                "discovery: rho=%g is below the estimated error floor %.4f of this table (label "
                "noise); few or no rules can meet it. Use rho_mode=relative.",
                cfg.rho,
                self.floor,
            )
        if accept_root:
            self.accepted.append(root)
            self.model_bytes[0] = bytes(r["model"])
            self.parts.append(Part(root, 0, self.n, self.root_error, 1, False))
        else:
            self._children(root, self.n, r["splits"], 0)
        self._log(1, _Tally(1, 1, int(accept_root), 0, int(not accept_root), 0, 0, 1), t)

    def _log(self, level: int, tally: _Tally, t: float) -> None:
        covered = sum(p.support for p in self.parts)
        now = self.b.passes()  # every query of the level has returned: its passes are counted
        before = self.passes_before
        scans = None if now is None or before is None else round(now - before, 4)
        self.passes_before = now
        s = LevelStats(
            level,
            tally.candidates,
            tally.evaluated,
            tally.accepted,
            tally.shared,
            tally.rejected,
            tally.deferred,
            tally.dropped,
            tally.trainings,
            covered,
            covered / self.n if self.n else 0.0,
            scans,
            self.clock() - t,
        )
        self.levels.append(s)
        logger.info(
            "discovery level %d: %d candidates (%d evaluated, %d too small), %d accepted, "
            "%d shared, %d rejected, %d deferred; coverage %.1f%% (%d rows); %s; %.1f s",
            level,
            tally.candidates,
            tally.evaluated,
            tally.dropped,
            tally.accepted,
            tally.shared,
            tally.rejected,
            tally.deferred,
            100 * s.coverage,
            covered,
            format_passes(scans),
            s.seconds,
        )

    def _level(self, level: int) -> None:
        t = self.clock()
        cfg = self.cfg
        level_start = len(self.accepted)
        batch = self._pop()
        tally = _Tally(candidates=len(batch))
        if not batch:
            self._log(level, tally, t)
            return
        counts = self.b.count([c.conj for c in batch])
        live: list[tuple[_Cand, int]] = []
        for c, n in zip(batch, counts, strict=True):
            self.seen.add(c.conj)
            if n >= self.min_support:
                live.append((c, n))
            elif n >= max(1, self.cfg.thin_min_rows):
                self.thin.append((c.conj, n))
        tally.dropped = len(batch) - len(live)
        tally.evaluated = len(live)
        if not live:
            self._log(level, tally, t)
            return
        conjs = [c.conj for c, _ in live]
        fracs = level_fractions([n for _, n in live], len(self.schema.features) + 1, cfg)
        seeds = {i: self._seed_for(c) for i, c in enumerate(conjs)}
        models = self.model_bytes if cfg.model_sharing else {}
        spec = self._spec(False, seeds, self.rho, models)
        sample = self.b.draw(level, conjs, fracs)
        try:
            res = self.b.apply(sample, candidate_evaluator(spec), RESULT_DDL)
            by_id = {int(r[CAND_COL]): r for _, r in res.iterrows()}
            pending = self._decide(level, live, by_id, level_start, tally)
            cross = self._cross_check(sample, pending)
        finally:
            self.b.release(sample)
        self._resolve(pending, cross, tally)
        self.trainings += tally.trainings
        self._log(level, tally, t)

    def _decide(
        self,
        level: int,
        live: list[tuple[_Cand, int]],
        by_id: Mapping[int, Any],
        level_start: int,
        tally: _Tally,
    ) -> list[_Accepted]:
        """Walk the level's candidates in priority order: accept, share, defer or split."""
        pending: list[_Accepted] = []
        for i, (cand, n) in enumerate(live):
            r = by_id.get(i)
            if r is None:  # no sampled row (cannot happen with n >= min_support > 0)
                continue
            tally.trainings += int(bool(r["trained"]))
            ok_shared = int(r["shared_model"]) >= 0
            if not (ok_shared or bool(r["accepted"])):
                tally.rejected += 1
                self._children(cand.conj, n, r["splits"], level_start)
                continue
            if any(not _disjoint(cand.conj, a) for a in self.accepted[level_start:]):
                # Its rows changed under it: re-queue; the next pop rewrites it into the pieces
                # outside what this level accepted (the unchanged conjunction stays "seen").
                tally.deferred += 1
                if cand.conj not in self.queued:
                    self.queue.append(_Cand(cand.conj, 0, float(n), level_start))
                    self.queued.add(cand.conj)
                continue
            self.accepted.append(cand.conj)
            if ok_shared:
                tally.shared += 1
                shared_id, err = int(r["shared_model"]), float(r["shared_error"])
                pending.append(_Accepted(i, cand.conj, n, level, err, shared_id))
            else:
                err, blob = float(r["val_error"]), bytes(r["model"])
                pending.append(_Accepted(i, cand.conj, n, level, err, None, blob))
        return pending

    def _cross_check(
        self, sample: Any, pending: Sequence[_Accepted]
    ) -> dict[tuple[int, int], float]:
        """Errors of this level's new models on each other's candidates (in-level sharing)."""
        new = {a.cand: a.model_bytes for a in pending if a.model_bytes is not None}
        if not self.cfg.model_sharing or len(new) < 2:
            return {}
        spec = CrossSpec(self.encoder, self.schema.task, new)
        res = self.b.apply(sample, cross_scorer(spec), CROSS_DDL, only=list(new))
        return {
            (int(r[CAND_COL]), int(r["model_id"])): float(r["error"]) for _, r in res.iterrows()
        }

    def _resolve(
        self,
        pending: Sequence[_Accepted],
        cross: Mapping[tuple[int, int], float],
        tally: _Tally,
    ) -> None:
        """Give each new model an id, unless an earlier new model of the level fits its rows."""
        kept: list[tuple[int, int]] = []  # (cand index, model id) of new models kept
        for a in pending:
            if a.model_bytes is None:
                assert a.model_id is not None
                self.parts.append(a.part(a.model_id, a.error, True))
                continue
            fits = [
                (cross[(a.cand, j)], mid)
                for j, mid in kept
                if cross.get((a.cand, j), math.inf) <= self.rho
            ]
            if fits:
                err, mid = min(fits)
                self.parts.append(a.part(mid, err, True))
                tally.shared += 1
                continue
            mid = len(self.model_bytes)
            while mid in self.model_bytes:
                mid += 1
            self.model_bytes[mid] = a.model_bytes
            kept.append((a.cand, mid))
            self.parts.append(a.part(mid, a.error, False))
            tally.accepted += 1

    def _result(self) -> Discovery:
        models = {mid: pickle.loads(b) for mid, b in self.model_bytes.items()}
        parts = list(self.parts)
        dgrs: list[DGR] = []
        for mid in sorted(self.model_bytes):
            mine = [p for p in parts if p.model_id == mid]
            if not mine:
                continue
            support = sum(p.support for p in mine)
            err = sum(p.val_error * p.support for p in mine) / max(support, 1)
            rule = Rule(tuple(p.conjunction for p in mine))
            dgrs.append(DGR(f"dgr{mid}", rule, mid, support, float(err)))
        shared = sum(1 for p in parts if p.shared)
        disc = Discovery(
            dgrs=dgrs,
            parts=parts,
            models=models,
            global_model=self.global_model,
            encoder=self.encoder,
            schema=self.schema,
            rho=self.rho,
            rho_mode=self.cfg.rho_mode,
            incomplete=self.incomplete,
            levels=self.levels,
            trainings=self.trainings,
            shared=shared,
            n_rows=self.n,
            stats={
                "root_error": self.root_error,
                "floor": self.floor,
                "baseline": self.baseline,
                "global_error": self.global_error,
                "min_support": self.min_support,
                "stop_reason": self.stop_reason,
                "seconds": self._elapsed(),
            },
            config=self.cfg.model_dump(mode="json"),
            thin=[
                Thin(f"thin{i}", Rule((c,)), n)
                for i, (c, n) in enumerate(sorted(self.thin, key=lambda t: (-t[1], t[0].to_text())))
            ]
            if self.cfg.thin_min_rows > 0
            else [],
        )
        logger.info(
            "discovery done: %d DGRs (%d conjunctions, %d shared), %d trainings, coverage %.1f%%, "
            "%.1f s, stop: %s%s",
            len(dgrs),
            len(parts),
            shared,
            self.trainings,
            100 * disc.coverage,
            self._elapsed(),
            self.stop_reason,
            " (incomplete)" if self.incomplete else "",
        )
        return disc
