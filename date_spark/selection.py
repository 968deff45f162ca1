"""Stage 3 (the paper's Algorithm 3, "MDS"): choose which generated arms to keep, on the driver.

An *arm* is one group of generated rows (a DGR and the decision-tree path its rows fell in, one
generation round). The arms table is small (hundreds of arms, tens of rows each), so selection runs
in pandas on the driver and never touches the full table. Every strategy returns the same
`Selection` and keeps a step-by-step `trace`.

Strategies (`SelectionConfig.strategy`):

- ``bandit`` (default, MDS): Successive Accepts and Rejects driven by UCB. Each step pulls the arm
  with the highest ``utility + c * sqrt(ln t / n_i)`` (``t`` pulls so far + 1, ``n_i`` earlier
  tries of the arm; an arm never tried ranks first). A pull measures the validation score of the
  accepted rows plus the arm's rows: the arm is *accepted* when that improves the best score
  significantly (see "Acceptance" below), otherwise it is set aside until the selection changes
  (its gain depends on what is already selected) and *rejected permanently* after ``max_tries``
  failed tries. Stops when the row budget is spent, no arm is left to try in the current state
  ("no arm improves the score") or after ``max_steps`` pulls.
- ``forward``: each round scores every remaining arm on top of the selection and adds the one
  with the best score among those whose addition improves it significantly, while one does
  (``max_steps`` rounds at most).
- ``backward``: starts from every arm, drops the arm whose removal costs least while the set is
  over budget (no test: the budget forces it), then the arm with the best score among those whose
  removal improves the score significantly, while one does. If ``max_steps`` rounds end
  while still over budget, the arms with the lowest generation-time gain are dropped unscored.
- ``topk``: the ``top_k`` arms with the highest generation-time gain, within the budget, unchecked
  (the paper's Top-5 baseline; it is scored only for the trace).

Scores (`CrossFitEvaluator`): the one model of `date_spark.models` (``selection.model``, the
model the user trains downstream) is trained per partition, and every screening row gets one
out-of-fold loss (Brier score or squared error) from a model trained on the other folds plus the
rows under test; the score is minus the mean loss. Generation's gain is the same measure on the
same rows (the prior the bandit starts from predicts what it then measures).

Screen, then confirm (measured: one small validation split scored by 0/1 flips, with a
Bonferroni-corrected test, kept nothing on every table, and the same rows served discovery, the
candidate filter and the test):

- *Screen.* While searching, a change of the selection (bandit or forward: add an arm;
  backward: remove one) is taken only when the score strictly improves AND the paired z of the
  per-row losses of the two selections (same rows, same order) exceeds ``min(screen_z, min_z)``:
  ``z = mean(d) / (sd(d) / sqrt(n))``, ``d = old - new`` (``sd`` with ddof 1; 0 when ``sd = 0``
  and ``mean = 0``, +-inf when only ``sd = 0``). A screen, not a test: no correction for the
  number of arms; what guards the output is the confirmation.
- *Confirm.* The final kept set is tested once, on the confirmation rows (the validation split,
  which discovery, generation and the screen never see), cross-fitted with the screening rows
  always in training: one paired z test per partition the set adds rows to (that partition's
  confirmation rows, with vs without its arms), Holm's step-down at the level of ``min_z``
  (1.645, one-sided 5%): with one partition it is exactly ``z > min_z``; with m, the smallest
  p-value must pass at 5%/m, the next at 5%/(m-1), and so on. The arms of the partitions that
  pass are kept, the others dropped. Measured why not one pooled test: on a 5,000-row table
  with a thin segment, the segment's rows cut its test loss by 74% while the pooled test over
  976 confirmation rows, diluted by a noisy arm elsewhere, gave z = -1.0 and kept nothing. The
  familywise level stays at 5% (``min_z <= 0``, the paper's rule, tests each at ``min_z``).
- ``min_z: 0`` restores the paper's rule (accept any strict improvement, in the search and at
  confirmation); ``confirm: false`` keeps the searched set untested, as the paper does.
- *Power.* For every partition, the confirmation reports its *minimum detectable effect*: the
  smallest mean loss reduction its rows detect with probability ``power`` at ``min_z``,
  ``(min_z + z_power) * sd(d) / sqrt(n)``, where ``d`` is the per-row loss change of a placebo
  arm (as many of the partition's own training rows, drawn again, as the budget could add):
  the refit noise a real arm's effect must rise above. A run that keeps nothing says which
  partitions could not have shown a gain of what size.

Every scored step records its ``z`` in the trace, with the sign of its ``gain`` (for
``backward`` the z of the arm's contribution: its removal passes when ``-z`` exceeds the screen).
Top-k is never screened (it only records z); its set is confirmed like any other.

Utility = ``alpha * quality + (1 - alpha) * diversity``, both in [0, 1]:

- *quality* is the screening gain (a drop in mean loss) of adding the arm to what is selected,
  mapped symmetrically: ``0.5 + 0.5 * clip(gain / G, -1, 1)`` where ``G`` is the largest
  absolute gain measured so far in this selection. So 0.5 means "no change", above 0.5 helps, 1
  is as good as the best change seen and 0 as harmful as the worst; the scale is free of the loss
  unit. An arm not yet pulled uses its generation-time ``Arm.gain`` as a prior (the same measure,
  of the arm alone), mapped the same way with ``G`` = the largest absolute generation-time gain.
- *diversity* is ``1 - max overlap`` between the arm's rule and each selected arm's rule (1 when
  nothing is selected). Overlap of two rules is the product over the columns either constrains of
  the per-column overlap ratio (`Interval.overlap_ratio` / `CategorySet.overlap_ratio` of the
  `Rule.bounds` views, measured inside the table's domain; a column only one rule constrains is
  compared with the whole domain). Disjoint on any column -> 0, identical -> 1, nested boxes ->
  the ratio of their volumes.

Budget: ``budget_rows`` generated rows in total. An arm larger than the remaining budget is
*truncated* by default (a seeded sample of as many of its rows as still fit, measured as it is,
so nothing unmeasured is ever accepted) or skipped with ``oversize="skip"``. Truncation is the
default because skipping would leave the budget partly unused and select nothing at all when every
arm is larger than the budget.

Determinism: arms are ordered by ``arm_id`` and ties are broken by a seeded permutation, so the
result and the trace depend only on the arms, the evaluator and the seed, not on input order.

Only screening rows score arms during the search and only confirmation rows confirm (`Evaluator`);
test rows never enter selection (the authors' code computed a support feature on the test split;
this module has no access to it).

Known limits (measured in tests/selection): the bandit accepts the *first* arm that improves, in
utility order, so a misleading generation-time prior can lock in a weaker arm that forward greedy
(best improvement) would not take, and it costs far fewer evaluations than forward greedy for the
same reason. No strategy that adds one arm at a time on improvement (bandit, forward) keeps two
arms that only help together; backward greedy can. Backward greedy costs O(arms^2) evaluations.
The screen makes backward greedy keep the arms it starts with unless removing one helps
significantly, so a harmful arm whose cost is within the noise stays in its searched set (the
confirmation then judges the set as a whole).
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from date_spark.columns import ARM
from date_spark.config import SelectionConfig
from date_spark.errors import ConfigError, InputError
from date_spark.models import ModelSpec, crossfit_losses, fold_ids
from date_spark.rules import CategorySet, Interval, Rule, View
from date_spark.runs import write_json_atomic
from date_spark.schema import Kind

ARM_COLUMN = ARM
STRATEGIES = ("bandit", "forward", "backward", "topk")
Oversize = Literal["truncate", "skip"]
_EPS = 1e-12  # a gain must exceed this to count as an improvement (float noise only)


def _sig_stop(run: _Run) -> str:
    return f" significantly (z > {run.min_z:g}, the screen)" if run.tested else ""


# ----------------------------------------------------------------------------------------------
# Public data types
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    """One candidate group of generated rows. `rule` is the DGR condition AND the tree path the
    rows fell in; `rows` holds the input columns including the target; `gain` is the validation
    gain measured at generation time: the quality prior before the arm is pulled (NaN = unknown,
    a neutral prior that ranks last for Top-k)."""

    arm_id: str
    dgr_id: str
    round: int
    rule: Rule
    rows: pd.DataFrame = field(compare=False, repr=False)
    gain: float = 0.0

    @property
    def size(self) -> int:
        return len(self.rows)


class Evaluator(Protocol):
    """Scores a set of synthetic rows added to the training data, on screening rows only.

    This is all selection needs; an evaluator that also has `losses` (a `LossEvaluator`) enables
    the paired screen and the confirmation of the module doc, one without it is judged by the
    paper's rule."""

    def baseline(self) -> float:
        """Score with no synthetic rows (higher is better: minus the mean loss)."""
        ...

    def score(self, extra: pd.DataFrame) -> float:
        """Score with `extra` added to the training data."""
        ...


class LossEvaluator(Evaluator, Protocol):
    """An `Evaluator` that also gives per-row losses, for the paired z."""

    def losses(self, extra: pd.DataFrame) -> np.ndarray:
        """One loss per scored row with `extra` added to the training data, always the same rows
        in the same order, so two calls can be compared row by row. Lower is better."""
        ...


@dataclass(frozen=True)
class TraceStep:
    """One evaluation (or one unscored decision) of a selection run.

    `quality`, `diversity` and `utility` are the normalised parts at this step (NaN when the step
    scored nothing); `ucb` is the bandit's index when it picked the arm (inf for a first try, NaN
    for the greedy strategies); `gain` is the raw change of the validation score this step measured
    (for ``backward``: the arm's contribution, score with it minus score without it); `z` the
    paired significance statistic of that same change, with the same sign (NaN when the evaluator
    gives no per-row losses or nothing was scored); `score_after` is the selection's score after
    the step's decision; `rows` the arm rows the step used."""

    step: int
    arm_id: str
    quality: float
    diversity: float
    utility: float
    ucb: float
    accepted: bool
    score_after: float
    reason: str
    gain: float = math.nan
    z: float = math.nan
    rows: int = 0


@dataclass
class Selection:
    """The kept arms (in acceptance order), their rows tagged with `_date_arm`, and the trace.
    `screened` is what the search chose; it is kept (`selected`) only when the confirmation
    passes (or is off)."""

    selected: list[str]
    rows: pd.DataFrame
    trace: list[TraceStep]
    best_score: float
    baseline: float
    strategy: str
    stop_reason: str = ""
    evaluations: int = 0  # distinct evaluator.score calls
    screened: list[str] = field(default_factory=list)  # what the search chose, before confirmation
    confirmation: Confirmation | None = None

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def trace_frame(self) -> pd.DataFrame:
        """The trace as a table (one row per step), e.g. for an MLflow artifact."""
        cols = [f.name for f in TraceStep.__dataclass_fields__.values()]
        return pd.DataFrame([asdict(s) for s in self.trace], columns=cols)

    def save(self, directory: Path) -> None:
        """Rows and trace as parquet, the rest as `selection.json` (written last, atomically:
        a directory without it holds no selection)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.rows.to_parquet(directory / "rows.parquet", index=False)
        self.trace_frame().to_parquet(directory / "trace.parquet", index=False)
        write_json_atomic(
            directory / "selection.json",
            {
                "selected": self.selected,
                "screened": self.screened,
                "best_score": self.best_score,
                "baseline": self.baseline,
                "strategy": self.strategy,
                "stop_reason": self.stop_reason,
                "evaluations": self.evaluations,
                "confirmation": self.confirmation.to_dict() if self.confirmation else None,
            },
        )

    @staticmethod
    def load(directory: Path) -> Selection:
        """What `save` wrote (the trace stays in `trace.parquet`: resuming needs the result)."""
        meta = json.loads((directory / "selection.json").read_text(encoding="utf-8"))
        conf = meta.get("confirmation")
        return Selection(
            selected=meta["selected"],
            rows=pd.read_parquet(directory / "rows.parquet"),
            trace=[],
            best_score=meta["best_score"],
            baseline=meta["baseline"],
            strategy=meta["strategy"],
            stop_reason=meta["stop_reason"],
            evaluations=meta["evaluations"],
            screened=list(meta.get("screened", meta["selected"])),
            confirmation=Confirmation.from_dict(conf) if conf else None,
        )


# ----------------------------------------------------------------------------------------------
# Diversity
# ----------------------------------------------------------------------------------------------


def _full_like(other: View, domain: View | None) -> View:
    """The view of a column a rule leaves unconstrained: the whole domain."""
    if domain is not None and type(domain) is type(other):
        return domain
    return Interval() if isinstance(other, Interval) else CategorySet()


def _view_overlap(a: View | None, b: View | None, domain: View | None) -> float:
    if a is None and b is None:
        return 1.0
    if a is None:
        assert b is not None
        a = _full_like(b, domain)
    if b is None:
        b = _full_like(a, domain)
    if isinstance(a, Interval) and isinstance(b, Interval):
        return a.overlap_ratio(b, domain if isinstance(domain, Interval) else None)
    if isinstance(a, CategorySet) and isinstance(b, CategorySet):
        dom = domain.values() if isinstance(domain, CategorySet) else None
        return a.overlap_ratio(b, dom)
    return 1.0  # views of different kinds cannot be compared: no diversity credit


def rule_overlap(
    a: Rule,
    b: Rule,
    *,
    kinds: Mapping[str, Kind] | None = None,
    domains: Mapping[str, View] | None = None,
) -> float:
    """Predicate overlap of two rules in [0, 1]: the product of per-column overlap ratios over the
    columns either rule constrains (0 when disjoint on any column, 1 when identical)."""
    va, vb = a.bounds(kinds), b.bounds(kinds)
    out = 1.0
    for col in sorted(set(va) | set(vb)):
        dom = domains.get(col) if domains else None
        out *= _view_overlap(va.get(col), vb.get(col), dom)
        if out <= 0.0:
            return 0.0
    return float(min(1.0, max(0.0, out)))


def diversity(
    rule: Rule,
    selected: Sequence[Rule],
    *,
    kinds: Mapping[str, Kind] | None = None,
    domains: Mapping[str, View] | None = None,
) -> float:
    """``1 - max overlap`` with the selected rules; 1 when nothing is selected."""
    if not selected:
        return 1.0
    return 1.0 - max(rule_overlap(rule, s, kinds=kinds, domains=domains) for s in selected)


def infer_domains(
    arms: Sequence[Arm],
    kinds: Mapping[str, Kind] | None = None,
    given: Mapping[str, View] | None = None,
) -> dict[str, View]:
    """Domains for the columns the arms' rules constrain and `given` lacks, from the arms' rows and
    rule constants: a stand-in when the caller has no table-wide domains (numeric and categorical
    columns only; other columns keep unbounded views)."""
    out: dict[str, View] = dict(given or {})
    views: dict[str, list[View]] = {}
    for arm in arms:
        for col, v in arm.rule.bounds(kinds).items():
            views.setdefault(col, []).append(v)
    for col, vs in views.items():
        if col in out:
            continue
        vals = [arm.rows[col].dropna() for arm in arms if col in arm.rows.columns and len(arm.rows)]
        series = pd.concat(vals, ignore_index=True) if vals else pd.Series([], dtype=object)
        if all(isinstance(v, Interval) for v in vs):
            points: list[float] = []
            if len(series) and pd.api.types.is_numeric_dtype(series) and series.dtype != bool:
                points += [float(series.min()), float(series.max())]
            for v in vs:
                assert isinstance(v, Interval)
                for p in (v.low, v.high):
                    if isinstance(p, (int, float)) and not isinstance(p, bool):
                        points.append(float(p))
            if points:
                out[col] = Interval(min(points), max(points), True, True)
        elif all(isinstance(v, CategorySet) for v in vs):
            values: set[Any] = set(series.tolist())
            for v in vs:
                assert isinstance(v, CategorySet)
                values |= set(v.allowed or ()) | set(v.excluded)
            if values:
                out[col] = CategorySet(frozenset(values))
    return out


# ----------------------------------------------------------------------------------------------
# Selection machinery
# ----------------------------------------------------------------------------------------------


def paired_z(before: np.ndarray, after: np.ndarray) -> float:
    """Significance of the change from per-row losses `before` to `after` (same rows, same order);
    positive = `after` is better: the paired z ``mean(d) / (sd(d) / sqrt(n))`` of
    ``d = before - after`` (see the module doc)."""
    old = np.asarray(before, dtype=float)
    new = np.asarray(after, dtype=float)
    if old.shape != new.shape:
        raise InputError(
            f"evaluator.losses returned {new.shape[0] if new.ndim else 0} values where an earlier "
            f"call returned {old.shape[0] if old.ndim else 0}; losses must cover the same "
            f"rows in the same order on every call"
        )
    d = old - new
    n = d.size
    if n == 0:
        return 0.0
    mean = float(np.mean(d))
    sd = float(np.std(d, ddof=1)) if n > 1 else 0.0
    if sd <= 1e-12 * max(1.0, float(np.mean(np.abs(old)))):
        return 0.0 if abs(mean) <= 1e-15 else math.copysign(math.inf, mean)
    return mean / (sd / math.sqrt(n))


def _z_text(z: float) -> str:
    return "" if math.isnan(z) else f"z={z:.2f}"


class _Scale:
    """Symmetric max-abs normalisation of gains into [0, 1] (0.5 = no change)."""

    def __init__(self) -> None:
        self.g = 0.0

    def see(self, gain: float) -> None:
        if math.isfinite(gain):
            self.g = max(self.g, abs(gain))

    def norm(self, gain: float) -> float:
        if not math.isfinite(gain) or self.g <= 0.0:
            return 0.5
        return 0.5 + 0.5 * max(-1.0, min(1.0, gain / self.g))


class _Run:
    """Shared state of one selection: arms in canonical order, memoised scores, overlaps, trace."""

    def __init__(
        self,
        arms: Sequence[Arm],
        evaluator: Evaluator,
        cfg: SelectionConfig,
        kinds: Mapping[str, Kind] | None,
        domains: Mapping[str, View] | None,
        seed: int,
        oversize: Oversize,
    ) -> None:
        self.arms = sorted(arms, key=lambda a: a.arm_id)
        self.k = len(self.arms)
        self.evaluator = evaluator
        self.cfg = cfg
        self.kinds = kinds
        self.domains = infer_domains(self.arms, kinds, domains)
        self.oversize = oversize
        rng = np.random.default_rng(seed)
        self.rank = [int(r) for r in rng.permutation(self.k)]  # seeded tie-break, lower wins
        self.perm = [
            np.random.default_rng([seed, zlib.crc32(a.arm_id.encode())]).permutation(a.size)
            for a in self.arms
        ]
        self.columns: list[str] = list(self.arms[0].rows.columns) if self.arms else []
        self.memo: dict[tuple[tuple[int, int], ...], float] = {}
        fn = getattr(evaluator, "losses", None)
        self.loss_fn: Callable[[pd.DataFrame], np.ndarray] | None = fn if callable(fn) else None
        self.loss_memo: dict[tuple[tuple[int, int], ...], np.ndarray] = {}  # a few recent only
        self.min_z = screen_threshold(cfg)
        self.tested = self.loss_fn is not None and self.min_z > 0  # for stop-reason texts
        self.overlaps: dict[tuple[int, int], float] = {}
        self.trace: list[TraceStep] = []
        self.base = float(evaluator.baseline())
        self.scale = _Scale()
        self.prior = _Scale()
        for a in self.arms:
            self.prior.see(a.gain)

    # -- rows and scores -----------------------------------------------------------------------
    def arm_rows(self, i: int, n: int) -> pd.DataFrame:
        rows = self.arms[i].rows
        if n >= len(rows):
            return rows[self.columns]
        keep = np.sort(self.perm[i][:n])
        return rows.iloc[keep][self.columns]

    def frame(self, members: Mapping[int, int]) -> pd.DataFrame:
        parts = [self.arm_rows(i, n) for i, n in sorted(members.items())]
        if not parts:
            return pd.DataFrame(columns=self.columns)
        return pd.concat(parts, ignore_index=True)

    def score(self, members: Mapping[int, int]) -> float:
        if not members:
            return self.base
        key = tuple(sorted(members.items()))
        if key not in self.memo:
            self.memo[key] = float(self.evaluator.score(self.frame(members)))
        return self.memo[key]

    def losses(self, members: Mapping[int, int]) -> np.ndarray:
        assert self.loss_fn is not None
        key = tuple(sorted(members.items()))
        hit = self.loss_memo.pop(key, None)  # LRU: the current selection's vector stays in
        if hit is None:
            hit = np.asarray(self.loss_fn(self.frame(members)), dtype=float).ravel()
            if len(self.loss_memo) >= 8:  # the evaluator caches fits; this only saves re-routing
                self.loss_memo.pop(next(iter(self.loss_memo)))
        self.loss_memo[key] = hit
        return hit

    def z(self, before: Mapping[int, int], after: Mapping[int, int]) -> float:
        """Paired z of going from `before` to `after` (positive = better); NaN without losses."""
        if self.loss_fn is None:
            return math.nan
        return paired_z(self.losses(before), self.losses(after))

    def accepts(self, gain: float, z: float) -> bool:
        """The acceptance rule: a strict improvement, significant when z is known."""
        return gain > _EPS and (math.isnan(z) or z > self.min_z)

    def sig_note(self, z: float, what: str = "") -> str:
        """The z of an accepted change, for the trace ("significantly" only when tested)."""
        if math.isnan(z):
            return ""
        return f" {'significantly ' if self.tested else ''}({what}{_z_text(z)})"

    def why_not(self, gain: float, z: float) -> str:
        """Why `accepts(gain, z)` is false, for the trace."""
        if gain <= _EPS:
            return "no improvement"
        return f"improvement not significant ({_z_text(z)} <= min_z {self.min_z:g})"

    def take(self, i: int, remaining: int) -> int | None:
        """Rows of arm i to use with `remaining` budget left; None when it must be skipped."""
        size = self.arms[i].size
        if size <= remaining:
            return size
        if self.oversize == "skip" or remaining <= 0:
            return None
        return remaining

    # -- utility parts -------------------------------------------------------------------------
    def overlap(self, i: int, j: int) -> float:
        key = (min(i, j), max(i, j))
        if key not in self.overlaps:
            self.overlaps[key] = rule_overlap(
                self.arms[i].rule, self.arms[j].rule, kinds=self.kinds, domains=self.domains
            )
        return self.overlaps[key]

    def diversity(self, i: int, others: Sequence[int]) -> float:
        others = [j for j in others if j != i]
        if not others:
            return 1.0
        return 1.0 - max(self.overlap(i, j) for j in others)

    def utility(self, quality: float, div: float) -> float:
        a = self.cfg.alpha
        return a * quality + (1.0 - a) * div

    def step(self, arm: int, **kw: Any) -> None:
        self.trace.append(TraceStep(step=len(self.trace) + 1, arm_id=self.arms[arm].arm_id, **kw))

    def scored_step(
        self,
        i: int,
        others: Sequence[int],
        *,
        gain: float,
        z: float,
        rows: int,
        accepted: bool,
        score_after: float,
        reason: str,
    ) -> None:
        """A greedy strategy's trace step: quality from `gain`, diversity against `others`."""
        q = self.scale.norm(gain)
        div = self.diversity(i, others)
        self.step(
            i,
            quality=q,
            diversity=div,
            utility=self.utility(q, div),
            ucb=math.nan,
            accepted=accepted,
            score_after=score_after,
            reason=reason,
            gain=gain,
            z=z,
            rows=rows,
        )

    def skip_step(self, i: int, score: float, reason: str) -> None:
        nan = math.nan
        self.step(
            i,
            quality=nan,
            diversity=nan,
            utility=nan,
            ucb=nan,
            accepted=False,
            score_after=score,
            reason=reason,
        )

    def result(
        self, order: Sequence[int], members: Mapping[int, int], strategy: str, stop: str
    ) -> Selection:
        parts = []
        for i in order:
            part = self.arm_rows(i, members[i]).copy()
            part[ARM_COLUMN] = self.arms[i].arm_id
            parts.append(part)
        rows = (
            pd.concat(parts, ignore_index=True)
            if parts
            else pd.DataFrame(columns=[*self.columns, ARM_COLUMN])
        )
        return Selection(
            selected=[self.arms[i].arm_id for i in order],
            rows=rows,
            trace=self.trace,
            best_score=self.score(members),
            baseline=self.base,
            strategy=strategy,
            stop_reason=stop,
            evaluations=len(self.memo),
        )


def _rank_gain(arm: Arm) -> float:
    """Generation-time gain for ordering; an unknown (NaN) gain ranks below every known one."""
    return arm.gain if math.isfinite(arm.gain) else -math.inf


def _truncation_note(run: _Run, i: int, n: int) -> str:
    size = run.arms[i].size
    return f" (truncated {size} -> {n} rows to fit the budget)" if n < size else ""


# ----------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------


def _bandit(run: _Run, max_tries: int) -> Selection:
    cfg = run.cfg
    members: dict[int, int] = {}
    order: list[int] = []
    best, used, pulls = run.base, 0, 0
    active = {i for i in range(run.k) if run.arms[i].size > 0}
    tries = [0] * run.k
    gains: list[list[float]] = [[] for _ in range(run.k)]
    tried_now: set[int] = set()  # arms tried since the selection last changed
    stop = "no arm improves the score" + _sig_stop(run)
    while True:
        remaining = cfg.budget_rows - used
        if remaining <= 0:
            stop = "budget spent"
            break
        if pulls >= cfg.max_steps:
            stop = f"max_steps ({cfg.max_steps}) pulls reached"
            break
        for i in sorted(active):
            if run.take(i, remaining) is None:
                active.discard(i)
                run.skip_step(
                    i,
                    best,
                    f"skipped: {run.arms[i].size} rows exceed the remaining budget of {remaining}",
                )
        cands = [i for i in sorted(active) if i not in tried_now]
        if not cands:
            break
        t = pulls + 1
        picked: tuple[float, float, int, int] | None = None
        for i in cands:
            div_now = run.diversity(i, order)
            if tries[i] == 0:  # never pulled: the generation-time prior, and first in line
                u_hat = run.utility(run.prior.norm(run.arms[i].gain), div_now)
                ucb = math.inf
            else:
                u_hat = run.utility(run.scale.norm(float(np.mean(gains[i]))), div_now)
                ucb = u_hat + cfg.ucb_c * math.sqrt(math.log(t) / tries[i])
            key = (ucb, u_hat, -run.rank[i], i)
            if picked is None or key[:3] > picked[:3]:
                picked = key
        assert picked is not None
        ucb, _, _, i = picked
        n = run.take(i, remaining)
        assert n is not None
        trial = {**members, i: n}
        s = run.score(trial)
        gain = s - best
        z = run.z(members, trial)
        pulls += 1
        tries[i] += 1
        gains[i].append(gain)
        run.scale.see(gain)
        q = run.scale.norm(gain)
        div = run.diversity(i, order)
        util = run.utility(q, div)
        note = _truncation_note(run, i, n)
        if run.accepts(gain, z):
            members, best, used = trial, s, used + n
            order.append(i)
            active.discard(i)
            tried_now.clear()
            accepted, reason = True, f"accepted: improves the best score{run.sig_note(z)}{note}"
        else:
            tried_now.add(i)
            accepted = False
            why = run.why_not(gain, z)
            if tries[i] >= max_tries:
                active.discard(i)
                reason = f"rejected permanently: {why} in {tries[i]} tries{note}"
            else:
                reason = (
                    f"rejected for now: {why} (try {tries[i]} of {max_tries}); "
                    f"retried only after the selection changes{note}"
                )
        run.step(
            i,
            quality=q,
            diversity=div,
            utility=util,
            ucb=ucb,
            accepted=accepted,
            score_after=best,
            reason=reason,
            gain=gain,
            z=z,
            rows=n,
        )
    return run.result(order, members, "bandit", stop)


def _forward(run: _Run) -> Selection:
    cfg = run.cfg
    members: dict[int, int] = {}
    order: list[int] = []
    best, used = run.base, 0
    pool = [i for i in range(run.k) if run.arms[i].size > 0]
    stop = "no arm left"
    for _ in range(cfg.max_steps):
        remaining = cfg.budget_rows - used
        if remaining <= 0:
            stop = "budget spent"
            break
        evals: list[tuple[int, int, float, float]] = []
        for i in list(pool):
            n = run.take(i, remaining)
            if n is None:
                pool.remove(i)
                run.skip_step(
                    i,
                    best,
                    f"skipped: {run.arms[i].size} rows exceed the remaining budget of {remaining}",
                )
                continue
            trial = {**members, i: n}
            s = run.score(trial)
            run.scale.see(s - best)
            evals.append((i, n, s, run.z(members, trial)))
        if not evals:
            stop = "no arm left"
            break
        ok = [e for e in evals if run.accepts(e[2] - best, e[3])]
        win = max(ok, key=lambda e: (e[2], -run.rank[e[0]])) if ok else None
        before = best
        if win is not None:
            members = {**members, win[0]: win[1]}
            best, used = win[2], used + win[1]
        for i, n, s, z in evals:
            chosen = win is not None and i == win[0]
            if chosen:
                sig = run.sig_note(z)
                reason = f"accepted: best gain this round{sig}{_truncation_note(run, i, n)}"
            elif run.accepts(s - before, z):
                reason = "not chosen: another arm gains more this round"
            else:
                reason = f"rejected: {run.why_not(s - before, z)}"
            run.scored_step(
                i,
                order,
                gain=s - before,
                z=z,
                rows=n,
                accepted=chosen,
                score_after=best,
                reason=reason,
            )
        if win is None:
            stop = "no arm improves the score" + _sig_stop(run)
            break
        order.append(win[0])
        pool.remove(win[0])
    else:
        stop = f"max_steps ({cfg.max_steps}) rounds reached"
    return run.result(order, members, "forward", stop)


def _backward(run: _Run) -> Selection:
    cfg = run.cfg
    members: dict[int, int] = {}
    for i in range(run.k):
        if run.arms[i].size == 0:
            continue
        n = run.take(i, cfg.budget_rows)
        if n is None:
            run.skip_step(
                i,
                run.base,
                f"skipped: {run.arms[i].size} rows exceed the budget of {cfg.budget_rows}",
            )
            continue
        members[i] = n
    current = run.score(members)
    stop = "no removal improves the score" + _sig_stop(run)
    for _ in range(cfg.max_steps):
        if not members:
            stop = "every arm removed"
            break
        over = sum(members.values()) > cfg.budget_rows
        # (arm, score without it, z of its contribution: with it vs without it)
        evals: list[tuple[int, float, float]] = []
        for i in members:
            without = {j: m for j, m in members.items() if j != i}
            evals.append((i, run.score(without), run.z(without, members)))
        for _, s, _ in evals:
            run.scale.see(current - s)
        # over budget, a removal is forced (the cheapest one, untested); otherwise it must improve
        # the score significantly (removal z = -contribution z)
        cands = evals if over else [e for e in evals if run.accepts(e[1] - current, -e[2])]
        if not cands:
            for i, s, z in evals:
                if s - current > _EPS:
                    why = f"its removal helps, but {run.why_not(s - current, -z)}"
                else:
                    why = "removing it does not help"
                run.scored_step(
                    i,
                    list(members),
                    gain=current - s,
                    z=z,
                    rows=members[i],
                    accepted=True,
                    score_after=current,
                    reason=f"kept: {why}",
                )
            break
        drop, s_drop, _ = max(cands, key=lambda e: (e[1], -run.rank[e[0]]))
        before, kept = current, list(members)
        current = s_drop
        for i, s, z in evals:
            if i == drop:
                if over:
                    why = "over budget, its removal costs least"
                else:
                    why = f"its removal helps most{run.sig_note(-z, 'removal ')}"
                accepted, reason = False, f"dropped: {why}"
            else:
                accepted, reason = True, "kept this round"
            run.scored_step(
                i,
                kept,
                gain=before - s,
                z=z,
                rows=members[i],
                accepted=accepted,
                score_after=current,
                reason=reason,
            )
        del members[drop]
    else:
        stop = f"max_steps ({cfg.max_steps}) rounds reached"
    while sum(members.values()) > cfg.budget_rows:
        drop = min(members, key=lambda j: (_rank_gain(run.arms[j]), -run.rank[j]))
        del members[drop]
        run.skip_step(
            drop,
            run.score(members),
            "dropped unscored: still over budget, lowest generation-time gain",
        )
    order = sorted(members)
    return run.result(order, members, "backward", stop)


def _topk(run: _Run) -> Selection:
    cfg = run.cfg
    members: dict[int, int] = {}
    order: list[int] = []
    used, best = 0, run.base
    ranked = sorted(
        (i for i in range(run.k) if run.arms[i].size > 0),
        key=lambda i: (-_rank_gain(run.arms[i]), run.rank[i]),
    )
    stop = "no arm left"
    for i in ranked:
        if len(order) >= cfg.top_k:
            stop = f"top_k ({cfg.top_k}) arms taken"
            break
        remaining = cfg.budget_rows - used
        if remaining <= 0:
            stop = "budget spent"
            break
        n = run.take(i, remaining)
        if n is None:
            run.skip_step(
                i,
                best,
                f"skipped: {run.arms[i].size} rows exceed the remaining budget of {remaining}",
            )
            continue
        previous, members = members, {**members, i: n}
        s = run.score(members)
        z = run.z(previous, members)  # recorded only: Top-k takes arms unchecked
        gain, best, used = s - best, s, used + n
        run.scale.see(gain)
        run.scored_step(
            i,
            order,
            gain=gain,
            z=z,
            rows=n,
            accepted=True,
            score_after=best,
            reason=f"taken: rank {len(order) + 1} by generation-time gain"
            f"{_truncation_note(run, i, n)}",
        )
        order.append(i)
    return run.result(order, members, "topk", stop)


def screen_threshold(cfg: SelectionConfig) -> float:
    """The z a change needs during the search: ``min(screen_z, min_z)`` (0 = the paper's rule)."""
    return float(min(cfg.screen_z, cfg.min_z))


def _check_arms(arms: Sequence[Arm]) -> None:
    seen: set[str] = set()
    columns: set[str] | None = None
    for a in arms:
        if a.arm_id in seen:
            raise InputError(f"arm id {a.arm_id!r} appears twice; arm ids must be unique")
        seen.add(a.arm_id)
        if ARM_COLUMN in a.rows.columns:
            raise InputError(
                f"arm {a.arm_id!r} rows already carry {ARM_COLUMN!r}; pass input columns only"
            )
        cols = set(a.rows.columns)
        if columns is None:
            columns = cols
        elif cols != columns:
            diff = sorted(cols ^ columns)
            raise InputError(
                f"arm {a.arm_id!r} has different columns from the other arms ({diff}); "
                f"every arm must hold the same input columns"
            )


def select(
    arms: Sequence[Arm],
    evaluator: Evaluator,
    cfg: SelectionConfig,
    *,
    kinds: Mapping[str, Kind] | None = None,
    domains: Mapping[str, View] | None = None,
    seed: int = 42,
    max_tries: int = 2,
    oversize: Oversize = "truncate",
    confirm: CrossFitEvaluator | None = None,
) -> Selection:
    """Choose arms with `cfg.strategy` within `cfg.budget_rows` rows on `evaluator`'s screening
    rows, then, with `confirm` (an evaluator over rows the search never saw), confirm the chosen
    set once and report each partition's power (see the module doc).

    `kinds` types the rule views (interval vs set); `domains` are the table's per-column domains
    used to measure unbounded rule sides (derived from the arms when missing). `max_tries` failed
    tries reject an arm permanently (bandit only); `oversize` decides whether an arm larger than the
    remaining budget is truncated or skipped."""
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"selection.strategy={cfg.strategy!r}; use one of {STRATEGIES}")
    if max_tries < 1:
        raise ConfigError(f"max_tries={max_tries} must be at least 1")
    if oversize not in ("truncate", "skip"):
        raise ConfigError(f"oversize={oversize!r}; use 'truncate' or 'skip'")
    _check_arms(arms)
    run = _Run(arms, evaluator, cfg, kinds, domains, seed, oversize)
    if cfg.strategy == "bandit":
        searched = _bandit(run, max_tries)
    elif cfg.strategy == "forward":
        searched = _forward(run)
    elif cfg.strategy == "backward":
        searched = _backward(run)
    else:
        searched = _topk(run)
    searched.screened = list(searched.selected)
    if confirm is None:
        return searched
    return confirm_selection(searched, confirm, cfg, seed=seed)


# ----------------------------------------------------------------------------------------------
# Confirmation and power
# ----------------------------------------------------------------------------------------------


def _share(x: float) -> str:
    """A percentage that does not round a small share to 0%."""
    return f"{x:.0%}" if x >= 0.095 else f"{x:.1%}" if x >= 0.0095 else f"{x:.2%}"


@dataclass(frozen=True)
class PartitionPower:
    """What one partition's confirmation rows can show. `mde` is the smallest mean loss reduction
    detected with probability `power` at `min_z` (loss units), `mde_relative` the same as a share
    of the partition's loss; NaN when the placebo changed nothing (a constant model)."""

    key: str
    rows: int
    loss: float
    mde: float
    mde_relative: float
    # The ceiling: the loss reduction the partition's last `ceiling_rows` real rows bought on
    # these rows (its model without them vs with them); new rows of the real distribution, the
    # best a generator can write, buy about this much or less (NaN when it has too few rows).
    ceiling_rows: int = 0
    ceiling_relative: float = math.nan

    def ceiling_text(self) -> str:
        if not self.ceiling_rows or not math.isfinite(self.ceiling_relative):
            return ""
        what = "lowered" if self.ceiling_relative >= 0 else "raised"
        return (
            f"its last {self.ceiling_rows} real rows {what} its loss by "
            f"{_share(abs(self.ceiling_relative))}"
        )

    def text(self) -> str:
        ceiling = self.ceiling_text()
        tail = f" ({ceiling})" if ceiling else ""
        if not math.isfinite(self.mde_relative):
            return f"{self.key} ({self.rows} rows): not measurable{tail}"
        below = _share(self.mde_relative)
        return f"{self.key} ({self.rows} rows): a gain below {below} cannot be seen{tail}"


@dataclass(frozen=True)
class PartitionTest:
    """The confirmation of one partition's screened arms (Holm's step `threshold` in z)."""

    key: str
    arms: tuple[str, ...]
    rows: int
    baseline_loss: float
    loss: float
    z: float
    threshold: float
    passed: bool

    def text(self) -> str:
        verdict = "kept" if self.passed else "dropped"
        rel = (self.baseline_loss - self.loss) / self.baseline_loss if self.baseline_loss else 0.0
        return (
            f"{self.key}: loss {-100 * rel:+.1f}% on {self.rows} rows, z={self.z:.2f} vs "
            f"{self.threshold:.2f}: {verdict}"
        )


@dataclass(frozen=True)
class Confirmation:
    """The test of the searched set on the confirmation rows, and the power of those rows."""

    tested: bool  # False when there was nothing to confirm, or `confirm: false`
    passed: bool
    rows: int
    baseline_loss: float
    loss: float
    z: float
    min_z: float
    mde: float  # over every confirmation row (loss units)
    mde_relative: float
    partitions: tuple[PartitionPower, ...] = ()
    tests: tuple[PartitionTest, ...] = ()

    @property
    def gain(self) -> float:
        return self.baseline_loss - self.loss

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gain"] = self.gain
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Confirmation:
        d = {k: v for k, v in d.items() if k != "gain"}
        parts = tuple(PartitionPower(**p) for p in d.pop("partitions", ()))
        tests = tuple(PartitionTest(**{**t, "arms": tuple(t["arms"])}) for t in d.pop("tests", ()))
        return Confirmation(**d, partitions=parts, tests=tests)

    def power_text(self, limit: int = 6) -> str:
        """One line: which partitions could not show a gain of what size."""
        parts = sorted(self.partitions, key=lambda p: -p.rows)
        shown = "; ".join(p.text() for p in parts[:limit])
        more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
        whole = (
            f"all {self.rows} confirmation rows together: below {_share(self.mde_relative)}"
            if math.isfinite(self.mde_relative)
            else f"{self.rows} confirmation rows"
        )
        return f"{whole}; {shown}{more}" if shown else whole


def _z_power(power: float) -> float:
    return NormalDist().inv_cdf(power)


def partition_power(
    evaluator: CrossFitEvaluator, cfg: SelectionConfig, seed: int
) -> tuple[tuple[PartitionPower, ...], float, float]:
    """Per-partition minimum detectable effects from a placebo arm (module doc), and the same over
    every row: (partitions, mde, mde_relative)."""
    k = max(cfg.min_z, 0.0) + _z_power(cfg.power)
    base_all, plac_all = [], []
    out: list[PartitionPower] = []
    for j, key in enumerate(evaluator.keys):
        n = evaluator.scored_rows(j)
        if n == 0:
            continue
        placebo = evaluator.placebo(j, cfg.budget_rows, seed)
        base = evaluator.partition_loss_vector(j, None)
        plac = evaluator.partition_loss_vector(j, placebo) if len(placebo) else base
        base_all.append(base)
        plac_all.append(plac)
        held, without = evaluator.ceiling(j, cfg.budget_rows, seed)
        ceiling = (
            float(np.mean(without) - np.mean(base)) / float(np.mean(without))
            if held and float(np.mean(without)) > 0
            else math.nan
        )
        out.append(
            PartitionPower(key, n, float(np.mean(base)), *_mde(base, plac, k), held, ceiling)
        )
    if not base_all:
        return (), math.nan, math.nan
    mde, rel = _mde(np.concatenate(base_all), np.concatenate(plac_all), k)
    return tuple(out), mde, rel


def _mde(base: np.ndarray, placebo: np.ndarray, k: float) -> tuple[float, float]:
    d = base - placebo
    if len(d) < 2:
        return math.nan, math.nan
    sd = float(np.std(d, ddof=1))
    if sd <= 0.0:
        return math.nan, math.nan
    mde = k * sd / math.sqrt(len(d))
    loss = float(np.mean(base))
    return mde, (mde / loss if loss > 0 else math.nan)


def confirm_selection(
    searched: Selection, evaluator: CrossFitEvaluator, cfg: SelectionConfig, *, seed: int = 42
) -> Selection:
    """Test the searched set once on `evaluator`'s rows (confirmation rows, cross-fitted with the
    screening rows in training) and attach the power report. A failed test keeps nothing."""
    parts, mde, mde_rel = partition_power(evaluator, cfg, seed)
    base = evaluator.losses(None)
    rows = searched.rows.drop(columns=[ARM_COLUMN], errors="ignore")
    base_loss = float(np.mean(base)) if len(base) else math.nan
    if rows.empty or not cfg.confirm:
        searched.confirmation = Confirmation(
            False, not rows.empty, len(base), base_loss, base_loss, math.nan, cfg.min_z, mde,
            mde_rel, parts,
        )  # fmt: skip
        return searched
    tests = _holm(searched, evaluator, cfg)
    keep = {a for t in tests if t.passed for a in t.arms}
    dropped = [t for t in tests if not t.passed]
    if keep:
        searched.selected = [a for a in searched.selected if a in keep]
        searched.rows = searched.rows[searched.rows[ARM_COLUMN].isin(keep)]
        rows = searched.rows.drop(columns=[ARM_COLUMN], errors="ignore")
    after = evaluator.losses(rows)
    z = paired_z(base, after)
    loss = float(np.mean(after))
    searched.confirmation = Confirmation(
        True, bool(keep), len(base), base_loss, loss, z, cfg.min_z, mde, mde_rel, parts,
        tests,
    )  # fmt: skip
    if keep:
        if dropped:
            searched.stop_reason = f"{searched.stop_reason}; confirmation dropped " + "; ".join(
                t.text() for t in dropped
            )
        return searched
    searched.stop_reason = (
        f"{searched.stop_reason}; confirmation failed: z={z:.2f} <= min_z {cfg.min_z:g} on "
        f"{len(base)} confirmation rows (" + "; ".join(t.text() for t in tests) + "), nothing kept"
    )
    searched.selected = []
    searched.rows = searched.rows.iloc[:0]
    return searched


def _holm(
    searched: Selection, evaluator: CrossFitEvaluator, cfg: SelectionConfig
) -> tuple[PartitionTest, ...]:
    """One paired test per partition the searched rows fall in, Holm's step-down (module doc)."""
    rows = searched.rows
    arm_ids = rows[ARM_COLUMN].to_numpy() if ARM_COLUMN in rows else np.zeros(len(rows))
    plain = rows.drop(columns=[ARM_COLUMN], errors="ignore").reset_index(drop=True)
    where = evaluator.route(plain) if len(plain) else np.zeros(0, dtype=int)
    found = []
    for j, key in enumerate(evaluator.keys):
        mine = where == j
        if not mine.any() or evaluator.scored_rows(j) == 0:
            continue
        before = evaluator.partition_loss_vector(j, None)
        after = evaluator.partition_loss_vector(j, plain[mine].reset_index(drop=True))
        arms = tuple(sorted({str(a) for a in arm_ids[mine]}))
        found.append((key, arms, before, after, paired_z(before, after)))
    m = len(found)
    alpha = 1.0 - NormalDist().cdf(cfg.min_z)
    out: list[PartitionTest] = []
    failed = False
    for step, (key, arms, before, after, z) in enumerate(sorted(found, key=lambda f: -f[4])):
        threshold = (
            cfg.min_z if cfg.min_z <= 0 or m == 1
            else NormalDist().inv_cdf(1.0 - alpha / (m - step))
        )  # fmt: skip
        b, a = float(np.mean(before)), float(np.mean(after))
        ok = not failed and b - a > _EPS and z > threshold
        failed = failed or (not ok and cfg.min_z > 0)
        out.append(PartitionTest(key, arms, len(before), b, a, z, threshold, ok))
    # an arm whose rows straddle partitions is kept only when every partition it touches passed
    bad = {a for t in out if not t.passed for a in t.arms}
    return tuple(
        PartitionTest(t.key, t.arms, t.rows, t.baseline_loss, t.loss, t.z, t.threshold,
                      t.passed and not (set(t.arms) & bad))
        for t in out
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The evaluator: cross-fitted per-row losses of the one model, one model per partition
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    """One partition's rows. `rows` are scored, cross-fitted: each is predicted by a model trained
    on the other folds. `fixed` rows are always trained on and never scored (for confirmation:
    the screening rows). `rule=None` marks the rest: rows no rule covers, served by the global
    model (so its `fixed` rows hold every covered row too); extra rows no rule matches go to it."""

    key: str
    rule: Rule | None
    rows: pd.DataFrame = field(compare=False, repr=False)
    fixed: pd.DataFrame | None = field(default=None, compare=False, repr=False)


@dataclass
class _Part:
    key: str
    rule: Rule | None
    fixed_rows: pd.DataFrame
    X: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    fixed: tuple[np.ndarray, np.ndarray] | None


def _digest(frame: pd.DataFrame) -> bytes:
    if frame.empty:
        return b""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.blake2b(hashed.tobytes(), digest_size=16).digest()


class CrossFitEvaluator:
    """Score = minus the mean cross-fitted loss of every scored row (module doc, "Scores").

    Partitions are scored by their own model trained on their other folds + fixed rows + the extra
    rows routed to them (first matching rule, in partition order; the rest partition takes what no
    rule matches). `losses` gives the per-row vector behind the score (partitions in `keys` order,
    each partition's rows in their given order), the paired test's input; `errors` the 0/1 errors
    beside it. Loss vectors are cached per partition by the content of the extra rows it receives,
    so adding an arm refits only the partitions its rows fall in. Frames are capped by seeded
    samples. Keep the test split out of it. ``folds=1`` scores every row by one model trained on
    the fixed rows plus the extra rows only (a plain holdout, for partitions given `fixed` rows)."""

    def __init__(
        self,
        partitions: Sequence[Partition],
        *,
        target: str,
        encode: Callable[[pd.DataFrame], np.ndarray],
        model: ModelSpec,
        folds: int = 5,
        max_rows: int | None = 20_000,
        seed: int = 42,
    ) -> None:
        if not partitions:
            raise InputError("the evaluator needs at least one partition")
        self.target = target
        self.task = model.task
        self.encode = encode
        self.model = model
        self.k = folds
        self.seed = seed
        self.fits = 0
        self._cache: dict[tuple[int, bytes, bool], np.ndarray] = {}
        self._parts: list[_Part] = []
        keys: set[str] = set()
        columns: list[str] | None = None
        for p in partitions:
            if p.key in keys:
                raise InputError(f"partition key {p.key!r} appears twice")
            keys.add(p.key)
            fixed = p.fixed if p.fixed is not None else p.rows.iloc[:0]
            for name, frame in (("scored", p.rows), ("fixed", fixed)):
                if target not in frame.columns:
                    raise InputError(f"partition {p.key!r} {name} rows lack the target {target!r}")
            rows = _cap(p.rows, max_rows, seed).reset_index(drop=True)
            fixed = _cap(fixed, max_rows, seed).reset_index(drop=True)
            columns = columns or list(rows.columns)
            self._parts.append(
                _Part(
                    p.key,
                    p.rule,
                    fixed,
                    self._x(rows),
                    rows[target].to_numpy(),
                    fold_ids(rows, folds, seed)
                    if folds >= 2 and len(rows) >= 2
                    else np.zeros(len(rows), int),
                    (self._x(fixed), fixed[target].to_numpy()) if len(fixed) else None,
                )
            )
        self.columns = columns or []
        self.weights = np.array([len(p.y) for p in self._parts], dtype=float)
        if self.weights.sum() <= 0:
            raise InputError("no partition has rows to score; nothing can score the arms")

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self._parts]

    def scored_rows(self, j: int) -> int:
        return len(self._parts[j].y)

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        feats = frame.drop(columns=[self.target])
        arr = np.asarray(self.encode(feats), dtype=float)
        return arr.reshape(len(frame), -1) if arr.ndim == 1 and len(frame) else arr

    def route(self, frame: pd.DataFrame) -> np.ndarray:
        """Partition index of each row (first matching rule, else the rest partition, else -1)."""
        out = np.full(len(frame), -1, dtype=int)
        left = np.ones(len(frame), dtype=bool)
        rest = -1
        for j, p in enumerate(self._parts):
            if p.rule is None:
                rest = j if rest < 0 else rest
                continue
            m = p.rule.mask(frame).to_numpy(dtype=bool) & left
            out[m] = j
            left &= ~m
        out[left] = rest
        return out

    def _own_fixed(self, j: int) -> np.ndarray:
        """Which of partition j's fixed rows are its own (the rest's fixed rows hold every
        covered row too; only those no rule matches are its own)."""
        p = self._parts[j]
        if len(p.fixed_rows) and p.rule is None:
            return np.asarray(self.route(p.fixed_rows) == j)
        return np.ones(len(p.fixed_rows), dtype=bool)

    def placebo(self, j: int, budget: int, seed: int) -> pd.DataFrame:
        """As many of partition j's own fixed rows (drawn again, seeded) as the budget could add:
        the refit noise of an arm of that size, for the minimum detectable effect."""
        pool = self._parts[j].fixed_rows[self._own_fixed(j)]
        if pool.empty:
            return pool
        n = min(budget, len(pool))
        return pool.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)

    def ceiling(self, j: int, budget: int, seed: int) -> tuple[int, np.ndarray]:
        """Partition j's losses from models trained without n of its own fixed rows (n = the
        budget, at most half of them; seeded): compared with `partition_loss_vector(j, None)`, what
        its last n real rows bought, the most n new rows of the real distribution could buy.
        Returns (n, losses); n = 0 when the partition has fewer than 2 fixed rows of its own."""
        p = self._parts[j]
        own = self._own_fixed(j)
        n = min(budget, int(own.sum()) // 2)
        if n < 1 or p.fixed is None:
            return 0, np.zeros(0)
        rng = np.random.default_rng(seed)
        drop = rng.choice(np.flatnonzero(own), size=n, replace=False)
        keep = np.ones(len(own), dtype=bool)
        keep[drop] = False
        fx, fy = p.fixed
        loss = crossfit_losses(self.model, p.X, p.y, p.folds, fixed=(fx[keep], fy[keep]))
        self.fits += len(np.unique(p.folds))
        return n, loss

    def partition_loss_vector(
        self, j: int, extra: pd.DataFrame | None, errors: bool = False
    ) -> np.ndarray:
        """Partition j's per-row losses with `extra` (rows already routed to it); cached."""
        extra = extra if extra is not None else pd.DataFrame(columns=self.columns)
        key = (j, _digest(extra), errors)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        p = self._parts[j]
        fixed = p.fixed
        more = (self._x(extra), extra[self.target].to_numpy()) if len(extra) else None
        loss = crossfit_losses(
            self.model, p.X, p.y, p.folds, fixed=fixed, extra=more, errors=errors
        )
        self.fits += len(np.unique(p.folds))
        loss.setflags(write=False)  # shared by every caller that hits the cache
        self._cache[key] = loss
        return loss

    def _routed(self, extra: pd.DataFrame | None) -> list[tuple[int, pd.DataFrame]]:
        if extra is None or extra.empty:
            extra = pd.DataFrame(columns=self.columns)
        missing = [c for c in self.columns if c not in extra.columns]
        if missing:
            raise InputError(f"extra rows lack columns {missing}; pass the input columns")
        extra = extra[self.columns]
        idx = self.route(extra) if len(extra) else np.zeros(0, dtype=int)
        out: list[tuple[int, pd.DataFrame]] = []
        for j in range(len(self._parts)):
            if self.weights[j] > 0:
                sub = extra[idx == j] if len(extra) else extra
                out.append((j, sub.reset_index(drop=True)))
        return out

    def partition_losses(self, extra: pd.DataFrame | None = None) -> dict[str, float]:
        """Mean loss per partition key (partitions without scored rows omitted)."""
        return {
            self._parts[j].key: float(np.mean(self.partition_loss_vector(j, sub)))
            for j, sub in self._routed(extra)
        }

    def losses(self, extra: pd.DataFrame | None = None) -> np.ndarray:
        """Per-row losses with `extra` added: partitions in `keys` order, each one's rows in their
        given order; always the same rows. ``score == -losses.mean()`` (up to rounding)."""
        parts = [self.partition_loss_vector(j, sub) for j, sub in self._routed(extra)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def errors(self, extra: pd.DataFrame | None = None) -> np.ndarray:
        """The 0/1 errors (squared errors for regression) of the same rows, beside the loss."""
        parts = [self.partition_loss_vector(j, sub, True) for j, sub in self._routed(extra)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def baseline(self) -> float:
        return self.score(pd.DataFrame(columns=self.columns))

    def score(self, extra: pd.DataFrame) -> float:
        return -float(np.mean(self.losses(extra)))


def _cap(frame: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    if cap is None or len(frame) <= cap:
        return frame
    return frame.sample(n=cap, random_state=seed).sort_index()
