"""The scores selection decides by: cross-fitted per-row losses of the one model, one model per
partition, and the paired z that compares two loss vectors.

Every scored row gets one out-of-fold loss (Brier score or squared error) from the one model of
`date_spark.modeling.models` (``selection.model``, the model the user trains downstream), trained
per partition on the other folds plus the rows under test; the score is minus the mean loss.
Generation's gain is the same measure on the same rows (the prior the bandit starts from
predicts what it then measures). The paired z of two selections on the same rows is
``z = mean(d) / (sd(d) / sqrt(n))``, ``d = old - new`` (``sd`` with ddof 1; 0 when ``sd = 0`` and
``mean = 0``, +-inf when only ``sd = 0``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from date_spark.errors import InputError
from date_spark.modeling.models import ModelSpec, crossfit_losses, fold_ids
from date_spark.rules import Rule

__all__ = ["MIN_GAIN", "CrossFitEvaluator", "Partition", "paired_z"]

MIN_GAIN = 1e-12  # a gain must exceed this to count as an improvement (float noise only)


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
