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

Scores (`selection/crossfit.py`): every screening row's cross-fitted loss under the one model
of `date_spark.modeling.models`; the score is minus the mean loss; two selections are compared by
the paired z of their per-row losses.

Screen, then confirm (measured: one small validation split scored by 0/1 flips, with a
Bonferroni-corrected test, kept nothing on every table, and the same rows served discovery, the
candidate filter and the test):

- *Screen.* While searching, a change of the selection (bandit or forward: add an arm;
  backward: remove one) is taken only when the score strictly improves AND the paired z of the
  per-row losses of the two selections (same rows, same order) exceeds ``min(screen_z, min_z)``.
  A screen, not a test: no correction for the
  number of arms; what guards the output is the confirmation.
- *Confirm* (`date_spark/confirmation.py`). The final kept set is tested once, on the
  confirmation rows (the validation split, which discovery, generation and the screen never see):
  one paired test per partition the set adds rows to, Holm's step-down at the level of
  ``min_z``. The arms of the partitions that pass are kept, the others dropped. Measured why not
  one pooled test: on a 5,000-row table with a thin segment, the segment's rows cut its test loss
  by 74% while the pooled test over 976 confirmation rows, diluted by a noisy arm elsewhere, gave
  z = -1.0 and kept nothing.
- ``min_z: 0`` restores the paper's rule (accept any strict improvement, in the search and at
  confirmation); ``confirm: false`` keeps the searched set untested, as the paper does.
- *Power* (`date_spark/confirmation.py`). For every partition, the confirmation reports its
  minimum detectable effect and its ceiling, so a run that keeps nothing says which partitions
  could not have shown a gain of what size.

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
  nothing is selected); overlap is measured by `date_spark/diversity.py`.

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

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from date_spark.columns import ARM
from date_spark.config import SelectionConfig
from date_spark.errors import ConfigError, InputError
from date_spark.rules import View
from date_spark.schema import Kind
from date_spark.selection.confirmation import Confirmation, holm_tests, partition_power
from date_spark.selection.crossfit import MIN_GAIN, CrossFitEvaluator, paired_z
from date_spark.selection.diversity import infer_domains, rule_overlap
from date_spark.selection.result import Arm, Evaluator, Selection, TraceStep

__all__ = ["STRATEGIES", "confirm_selection", "screen_threshold", "select"]

STRATEGIES = ("bandit", "forward", "backward", "topk")
Oversize = Literal["truncate", "skip"]


def _sig_stop(run: _Run) -> str:
    return f" significantly (z > {run.min_z:g}, the screen)" if run.tested else ""


# ----------------------------------------------------------------------------------------------
# Selection machinery
# ----------------------------------------------------------------------------------------------


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
        return gain > MIN_GAIN and (math.isnan(z) or z > self.min_z)

    def sig_note(self, z: float, what: str = "") -> str:
        """The z of an accepted change, for the trace ("significantly" only when tested)."""
        if math.isnan(z):
            return ""
        return f" {'significantly ' if self.tested else ''}({what}{_z_text(z)})"

    def why_not(self, gain: float, z: float) -> str:
        """Why `accepts(gain, z)` is false, for the trace."""
        if gain <= MIN_GAIN:
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
            part[ARM] = self.arms[i].arm_id
            parts.append(part)
        rows = (
            pd.concat(parts, ignore_index=True)
            if parts
            else pd.DataFrame(columns=[*self.columns, ARM])
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


def _drop_oversize(run: _Run, active: set[int], best: float, remaining: int) -> None:
    """Set aside, for good, the arms that no longer fit the remaining budget (oversize="skip")."""
    for i in sorted(active):
        if run.take(i, remaining) is None:
            active.discard(i)
            run.skip_step(
                i,
                best,
                f"skipped: {run.arms[i].size} rows exceed the remaining budget of {remaining}",
            )


def _ucb_pick(
    run: _Run,
    cands: Sequence[int],
    order: Sequence[int],
    tries: Sequence[int],
    gains: Sequence[Sequence[float]],
    t: int,
) -> tuple[float, int]:
    """The candidate with the highest upper confidence bound on its utility (module doc); an arm
    never pulled ranks first, by its generation-time prior. Returns (ucb, arm index)."""
    picked: tuple[float, float, int, int] | None = None
    for i in cands:
        div_now = run.diversity(i, order)
        if tries[i] == 0:
            u_hat = run.utility(run.prior.norm(run.arms[i].gain), div_now)
            ucb = math.inf
        else:
            u_hat = run.utility(run.scale.norm(float(np.mean(gains[i]))), div_now)
            ucb = u_hat + run.cfg.ucb_c * math.sqrt(math.log(t) / tries[i])
        key = (ucb, u_hat, -run.rank[i], i)
        if picked is None or key[:3] > picked[:3]:
            picked = key
    assert picked is not None
    return picked[0], picked[3]


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
        _drop_oversize(run, active, best, remaining)
        cands = [i for i in sorted(active) if i not in tried_now]
        if not cands:
            break
        ucb, i = _ucb_pick(run, cands, order, tries, gains, pulls + 1)
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


def _backward_start(run: _Run) -> dict[int, int]:
    """Every arm that fits the budget on its own (truncated or skipped as `oversize` says)."""
    members: dict[int, int] = {}
    budget = run.cfg.budget_rows
    for i in range(run.k):
        if run.arms[i].size == 0:
            continue
        n = run.take(i, budget)
        if n is None:
            why = f"skipped: {run.arms[i].size} rows exceed the budget of {budget}"
            run.skip_step(i, run.base, why)
            continue
        members[i] = n
    return members


def _backward_trim(run: _Run, members: dict[int, int]) -> None:
    """After `max_steps` rounds still over budget: drop the lowest generation-time gains."""
    while sum(members.values()) > run.cfg.budget_rows:
        drop = min(members, key=lambda j: (_rank_gain(run.arms[j]), -run.rank[j]))
        del members[drop]
        run.skip_step(
            drop,
            run.score(members),
            "dropped unscored: still over budget, lowest generation-time gain",
        )


def _backward(run: _Run) -> Selection:
    cfg = run.cfg
    members = _backward_start(run)
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
                if s - current > MIN_GAIN:
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
    _backward_trim(run, members)
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
        if ARM in a.rows.columns:
            raise InputError(
                f"arm {a.arm_id!r} rows already carry {ARM!r}; pass input columns only"
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
# Confirmation
# ----------------------------------------------------------------------------------------------


def confirm_selection(
    searched: Selection, evaluator: CrossFitEvaluator, cfg: SelectionConfig, *, seed: int = 42
) -> Selection:
    """Test the searched set once on `evaluator`'s rows (confirmation rows, cross-fitted with the
    screening rows in training) and attach the power report. A failed test keeps nothing."""
    parts, mde, mde_rel = partition_power(evaluator, cfg, seed)
    base = evaluator.losses(None)
    rows = searched.rows.drop(columns=[ARM], errors="ignore")
    base_loss = float(np.mean(base)) if len(base) else math.nan
    if rows.empty or not cfg.confirm:
        searched.confirmation = Confirmation(
            False, not rows.empty, len(base), base_loss, base_loss, math.nan, cfg.min_z, mde,
            mde_rel, parts,
        )  # fmt: skip
        return searched
    tests = holm_tests(searched.rows, evaluator, cfg)
    keep = {a for t in tests if t.passed for a in t.arms}
    dropped = [t for t in tests if not t.passed]
    if keep:
        searched.selected = [a for a in searched.selected if a in keep]
        searched.rows = searched.rows[searched.rows[ARM].isin(keep)]
        rows = searched.rows.drop(columns=[ARM], errors="ignore")
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
