"""The default keep rule: the expected gain of generated rows for the user's own model.

The user trains *one* model of the configured kind (`selection.model`) on the real rows plus the
kept rows. So that model is what decides: every non-test row (training and validation split) is
scored out of fold, K folds x R repeats, by that model trained on the other folds with and without
the candidate rows, and the gain is the mean per-row loss reduction. Why not the paper's
per-partition models on a small validation split: with a few dozen rows per partition a refit
flips predictions both ways, and a familywise test there can only pass gains of 30-50% (issue 20's
measurements); every non-test row voting, on the model the user actually trains, gives the power.

*Variance that respects folds.* Rows of one fold share one pair of models, so per-row differences
are not independent. The standard error is the Nadeau-Bengio corrected resampled t
(``se^2 = (1/J + n_test/n_train) * s^2``, ``s^2`` the variance of the J = K*R fold means of the
per-row differences), which also charges for the overlap of the training sets.

*A derived row never trains the fold of its parent.* A row copied or interpolated from a real row
would otherwise teach the model the very row it is then scored on, which inflates its gain. When
the generator names a row's parents (the interpolation generator does, in `PARENTS`), those
are used. Otherwise they are unknown (an LLM may copy its examples), so the row is tied to its
`NEAREST` real rows (standardised features): that catches copies and near copies, not
rows between two distant real rows (the calibration's interpolation rows: the nearest two were
the parents for a third of them, and the cross-fit then called rows that raised the held-out
log-loss 5-17% a gain). Either way the row never trains the model of a fold that holds one.

*Volume.* Each partition (a DGR, or the rest) is tried at a few volumes proportional to its real
rows (`selection.volumes`, e.g. 0.3x, 1x, 3x, capped by the rows generated for it). Choosing the
best of several noisy partitions overstates the winner (the winner's curse), so the estimates are
shrunk by empirical Bayes before the choice: a normal prior with mean 0 and variance
``tau^2 = max(0, mean(g_i^2 - se_i^2))``, posterior mean ``g * tau^2 / (tau^2 + se^2)``,
posterior sd ``sqrt(tau^2 se^2 / (tau^2 + se^2))``. With `MIN_PARTITIONS` (3) partitions or more,
tau^2 is learnt from one estimate per partition (its volume nearest 1x), since the volumes of one
partition are nested and move together. With fewer, James-Stein has too little to learn from and
tau^2 comes from every volume tried: nested estimates make it small, so this is conservative,
deliberately. Without any shrinkage the oracle's rows were kept on more seeds of the
calibration, but so were a noise endpoint's rows (permuted targets) on the planted table of
`tests/selection/test_keep_rule.py`, at a raw z of 2.5 for rows that raised the held-out loss
14%: the cross-fit over a few hundred rows is not yet trustworthy enough to be taken raw.
*Several partitions, one bar.* Each partition is a chance for null rows to pass, so a job with m
partitions (and the every-partition candidate) holds each to the one-sided level of `keep_z`
divided by their number (Bonferroni): the share of jobs keeping rows that do nothing stays that of
a one-partition job. Without it the planted table's noise endpoint kept 41 rows of one of two
partitions at a posterior z of 1.83 (bar 1.5); the held-out change of those rows was +0.2%
[-4.8%, +5.1%], no help, and the bar for 3 candidates is 2.01. One partition: the bar is `keep_z`.
A partition is kept at the volume with the highest posterior mean when its posterior z (mean /
sd) exceeds the bar; the kept partitions are then assessed together, and the weakest
dropped while the joint posterior z does not pass. A gain spread thinly over many partitions
shows in none of them alone, so every partition together at each fraction is tried too, and kept
instead when it passes with a larger gain. The reported gain is the kept set's estimate (shrunk
when chosen among partitions), with its interval.

*Known limit.* The real rows scored are the per-partition sample (`generation.
partition_sample_rows`, then `selection.max_rows`); on a table larger than that, a volume's
generated rows weigh more against the sample than they will against the whole table, so the
estimate answers "these rows added to a sample this size". For the small tables where generated
rows can matter the sample is the table.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from date_spark.columns import PARENTS
from date_spark.errors import InputError
from date_spark.modeling.models import ModelSpec, fold_ids
from date_spark.runtime.placement import parallel_map

__all__ = [
    "MIN_PARTITIONS",
    "NEAREST",
    "GainDecision",
    "GainEstimate",
    "GainEvaluator",
    "PartitionChoice",
    "bar",
    "decide",
    "prior_variance",
    "shrink",
]

NEAREST = 2  # nearest real rows a row of unknown parents is tied to (interpolation uses two)
CLOSE = 0.5  # a row nearer a real row than this share of the real rows' median neighbour distance
MIN_PARTITIONS = 3  # fewest independent estimates that empirical Bayes shrinkage can learn from


@dataclass(frozen=True)
class GainEstimate:
    """The cross-fitted gain of adding `rows` generated rows: `gain` is the mean per-row loss
    reduction (loss units, positive = better), `se` its fold-respecting standard error,
    `base_loss` the mean loss without them; `shrunk`/`shrunk_se` the posterior after shrinkage
    (equal to gain/se until `shrink` runs)."""

    rows: int
    gain: float
    se: float
    base_loss: float
    shrunk: float = math.nan
    shrunk_se: float = math.nan

    @property
    def z(self) -> float:
        return _ratio(self.gain, self.se)

    @property
    def shrunk_z(self) -> float:
        return _ratio(self.shrunk, self.shrunk_se)

    @property
    def relative(self) -> float:
        """The shrunk gain as a share of the loss (0.1 = the loss falls by 10%)."""
        return self.shrunk / self.base_loss if self.base_loss > 0 else math.nan

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """The shrunk gain's interval, relative to the loss."""
        q = NormalDist().inv_cdf(0.5 + confidence / 2)
        if not self.base_loss > 0:
            return math.nan, math.nan
        lo, hi = self.shrunk - q * self.shrunk_se, self.shrunk + q * self.shrunk_se
        return lo / self.base_loss, hi / self.base_loss

    def mde(self, keep_z: float, power: float) -> float:
        """The smallest relative gain this test (posterior z > keep_z, at this se) detects with
        probability `power`."""
        if not (self.base_loss > 0 and math.isfinite(self.se)):
            return math.nan
        return (keep_z + NormalDist().inv_cdf(power)) * self.se / self.base_loss


def _ratio(a: float, b: float) -> float:
    if not math.isfinite(a) or not math.isfinite(b):
        return math.nan
    if b <= 0:
        return 0.0 if a == 0 else math.copysign(math.inf, a)
    return a / b


def prior_variance(estimates: Sequence[GainEstimate]) -> float:
    """tau^2 of the prior, ``max(0, mean(g^2 - se^2))`` over `estimates`; infinite (no
    shrinkage) when none is finite."""
    finite = [e for e in estimates if math.isfinite(e.gain) and math.isfinite(e.se)]
    if not finite:
        return math.inf
    return max(0.0, float(np.mean([e.gain**2 - e.se**2 for e in finite])))


def shrink(estimates: Sequence[GainEstimate], tau2: float | None = None) -> list[GainEstimate]:
    """Empirical-Bayes shrinkage of every estimate toward 0 (module doc); `tau2` defaults to
    the prior variance of `estimates` themselves (when they are independent)."""
    if tau2 is None:
        tau2 = prior_variance(estimates)
    out = []
    for e in estimates:
        if not (math.isfinite(e.gain) and math.isfinite(e.se)):
            out.append(e)
        elif e.se <= 0 or math.isinf(tau2):
            out.append(dataclasses.replace(e, shrunk=e.gain, shrunk_se=e.se))
        else:
            w = tau2 / (tau2 + e.se**2)
            post_sd = math.sqrt(tau2 * e.se**2 / (tau2 + e.se**2)) if tau2 > 0 else 0.0
            out.append(dataclasses.replace(e, shrunk=w * e.gain, shrunk_se=post_sd))
    return out


class GainEvaluator:
    """Cross-fitted gains of generated rows for one model trained on all real rows (module doc).

    `rows` are the real non-test rows (input columns with the target); `encode` maps a frame
    without the target to the model's matrix. The baseline (no generated rows) is fitted once
    per fold and repeat; each `assess` fits K x R models, in `workers` processes when more
    than one (the same losses either way). Capped at `max_rows` real rows (a seeded sample) so
    the cost does not grow with the table."""

    def __init__(
        self,
        rows: pd.DataFrame,
        *,
        target: str,
        encode: Callable[[pd.DataFrame], np.ndarray],
        model: ModelSpec,
        folds: int = 5,
        repeats: int = 2,
        seed: int = 42,
        max_rows: int | None = 20_000,
        workers: int = 1,
    ) -> None:
        if target not in rows.columns:
            raise InputError(f"the gain evaluator's rows lack the target {target!r}")
        if len(rows) < 2 * folds:
            raise InputError(
                f"{len(rows)} real rows are too few to cross-fit {folds} folds; the table needs "
                f"at least {2 * folds} non-test rows"
            )
        if max_rows is not None and len(rows) > max_rows:
            rows = rows.sample(n=max_rows, random_state=seed).sort_index()
        # a generated row's known parents (`PARENTS`) name real rows by these labels
        self._position = {str(label): i for i, label in enumerate(rows.index)}
        self.rows = rows.reset_index(drop=True)
        self.columns = list(self.rows.columns)
        self.target = target
        self.encode = encode
        self.k = folds
        self.repeats = repeats
        self.fits = 0
        self.X = self._x(self.rows)
        self.y = self.rows[target].to_numpy()
        feats = self.rows.drop(columns=[target])
        self.folds = [fold_ids(feats, folds, seed + r) for r in range(repeats)]
        self.models = [dataclasses.replace(model, seed=model.seed + r) for r in range(repeats)]
        self.task = model.task
        self._center, self._scale = _standardiser(self.X)
        self._cache: dict[bytes, GainEstimate] = {}
        self._typical: float | None = None
        self.workers = workers
        self.base = self._losses(None)
        self.base_loss = float(np.mean(self.base))

    @property
    def n(self) -> int:
        return len(self.y)

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        arr = np.asarray(self.encode(frame.drop(columns=[self.target])), dtype=float)
        return arr.reshape(len(frame), -1) if arr.ndim == 1 else arr

    def known_parents(self, parents: pd.Series, guessed: np.ndarray) -> np.ndarray:
        """`guessed` with the rows whose parents the generator named ("12.57") replaced by
        those; a named parent outside the scored rows is -1 (it trains every fold)."""
        out = guessed.copy()
        for i, text in enumerate(parents.tolist()):
            if not isinstance(text, str) or not text:
                continue
            named = [self._position.get(t, -1) for t in text.split(".")]
            named = (named + [-1] * out.shape[1])[: out.shape[1]]
            out[i] = named
        return out

    def parents(self, Xe: np.ndarray) -> np.ndarray:
        """Indices of the `NEAREST` real rows of each generated row (standardised), for the
        rows that sit closer to a real row than `CLOSE` times the typical distance between
        real neighbours (copies, near copies, rows derived from one); -1 (no fold barred) for
        the others. A novel row needs no guard, and barring it from the folds of its nearest
        rows would hide exactly its local effect: on a planted table a noise endpoint's rows,
        which raised the held-out loss 14%, scored as a gain when barred from near rows."""
        from sklearn.neighbors import NearestNeighbors

        k = min(NEAREST, self.n)
        real = np.nan_to_num((self.X - self._center) / self._scale)
        gen = np.nan_to_num((Xe - self._center) / self._scale)
        nn = NearestNeighbors(n_neighbors=k).fit(real)
        dist, idx = nn.kneighbors(gen)
        if self._typical is None:
            own = NearestNeighbors(n_neighbors=min(2, self.n)).fit(real).kneighbors(real)[0]
            self._typical = float(np.median(own[:, -1]))
        derived = dist[:, 0] < CLOSE * self._typical
        return np.where(derived[:, None], np.asarray(idx, dtype=int), -1)

    def _losses(self, extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> list[np.ndarray]:
        """Out-of-fold losses of every repeat with `extra` (rows, targets, parents) added to
        training (None: the baseline). The K x R fits are independent: on the driver they run
        in `workers` processes (`placement.parallel_map`), with the same losses."""
        jobs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        for r in range(self.repeats):
            folds = self.folds[r]
            for f in range(self.k):
                held = folds == f
                if not held.any():
                    continue
                tx, ty = self.X[~held], np.asarray(self.y[~held], dtype=object)
                if extra is not None:
                    xe, ye, par = extra
                    pf = np.where(par >= 0, folds[np.maximum(par, 0)], -1)
                    ok = ~(pf == f).any(axis=1)  # never train the fold of a parent
                    if ok.any():
                        tx = np.vstack([tx, xe[ok]])
                        ty = np.concatenate([ty, np.asarray(ye[ok], dtype=object)])
                if self.task == "regression":
                    ty = ty.astype(float)
                jobs.append((r, held, tx, ty))
        fit = functools.partial(_held_out_losses, self.X, self.y, tuple(self.models))
        losses = parallel_map(fit, jobs, self.workers)
        self.fits += len(jobs)
        out = [np.zeros(self.n) for _ in range(self.repeats)]
        for (r, held, _, _), got in zip(jobs, losses, strict=True):
            out[r][held] = got
        return out

    def assess(self, extra: pd.DataFrame) -> GainEstimate:
        """The gain of training with `extra` (input columns with the target) added."""
        if extra.empty:
            return GainEstimate(0, 0.0, 0.0, self.base_loss, 0.0, 0.0)
        key = self._key(extra)
        if key in self._cache:  # the same rows again (another keep_z, another strategy)
            return self._cache[key]
        est = self.estimate(self.differences(extra), len(extra))
        self._cache[key] = est
        return est

    def differences(self, extra: pd.DataFrame) -> np.ndarray:
        """Per-row loss reductions of training with `extra` added, one row per repeat (repeats x
        scored rows; positive = better): what `estimate` summarises, and what a benchmark needs
        to tell the noise of the scored rows from that of the fold draws."""
        missing = [c for c in self.columns if c not in extra.columns]
        if missing:
            raise InputError(f"generated rows lack columns {missing}; pass the input columns")
        named = extra[PARENTS].reset_index(drop=True) if PARENTS in extra.columns else None
        extra = extra[self.columns].reset_index(drop=True)
        xe, ye = self._x(extra), extra[self.target].to_numpy()
        par = self.parents(xe)
        if named is not None:
            par = self.known_parents(named, par)
        with_rows = self._losses((xe, ye, par))
        return np.vstack([self.base[r] - with_rows[r] for r in range(self.repeats)])

    def estimate(self, diffs: np.ndarray, rows: int) -> GainEstimate:
        """The gain of `rows` generated rows and its fold-respecting standard error (module
        doc), from their `differences`."""
        means = [
            float(np.mean(d[self.folds[r] == f]))
            for r, d in enumerate(diffs)
            for f in range(self.k)
            if (self.folds[r] == f).any()
        ]
        gain = float(np.mean(diffs))
        j = len(means)
        s2 = float(np.var(means, ddof=1)) if j > 1 else 0.0
        se = math.sqrt((1.0 / j + 1.0 / (self.k - 1)) * s2) if j else math.nan
        return GainEstimate(rows, gain, se, self.base_loss, gain, se)

    def _key(self, extra: pd.DataFrame) -> bytes:
        cols = [c for c in (*self.columns, PARENTS) if c in extra.columns]
        return _digest(extra[cols].reset_index(drop=True))


def _held_out_losses(
    X: np.ndarray,
    y: np.ndarray,
    models: tuple[ModelSpec, ...],
    job: tuple[int, np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """One fold's fit and the losses of the rows it holds out (a `parallel_map` task)."""
    r, held, tx, ty = job
    return models[r].fit(tx, ty).losses(X[held], y[held])


def _digest(frame: pd.DataFrame) -> bytes:
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.blake2b(hashed.tobytes(), digest_size=16).digest() + str(len(frame)).encode()


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        center = np.nanmean(X, axis=0) if len(X) else np.zeros(X.shape[1])
        scale = np.nanstd(X, axis=0) if len(X) else np.ones(X.shape[1])
    center = np.nan_to_num(center)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return center, scale


@dataclass(frozen=True)
class PartitionChoice:
    """One partition's volumes tried and the one chosen (`rows` 0 = nothing kept)."""

    key: str
    real_rows: int
    generated_rows: int
    tried: tuple[GainEstimate, ...]
    rows: int
    kept: bool
    reason: str

    @property
    def best(self) -> GainEstimate | None:
        """The volume with the highest shrunk gain (ties: the highest raw z)."""
        return max(self.tried, key=lambda e: (e.shrunk, e.z)) if self.tried else None

    def text(self, keep_z: float, power: float) -> str:
        """What this partition's generated rows were worth: the best volume's cross-fitted loss
        change before shrinkage with its interval, and the posterior z the rule judged."""
        best = self.best
        if best is None:
            return f"{self.key} ({self.real_rows} real rows): {self.reason}"
        q = NormalDist().inv_cdf(0.975)
        base = best.base_loss if best.base_loss > 0 else math.nan
        rel, half = best.gain / base, q * best.se / base
        worth = (
            f"{best.rows} rows: loss {-100 * rel:+.1f}% [{-100 * (rel + half):+.1f}%, "
            f"{-100 * (rel - half):+.1f}%], posterior z={best.shrunk_z:.2f}"
        )
        mde = best.mde(keep_z, power)
        seen = f"; a gain below {100 * mde:.1f}% cannot be seen" if math.isfinite(mde) else ""
        verdict = "kept" if self.kept else "not kept"
        return f"{self.key} ({self.real_rows} real rows): {worth}: {verdict}{seen}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tried"] = [asdict(e) for e in self.tried]
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> PartitionChoice:
        tried = tuple(GainEstimate(**e) for e in d.get("tried", ()))
        return PartitionChoice(**{**d, "tried": tried})


@dataclass(frozen=True)
class GainDecision:
    """What the gain rule decided: per partition, and the kept rows together (`joint`)."""

    keep_z: float
    power: float
    folds: int
    repeats: int
    scored_rows: int
    base_loss: float
    partitions: tuple[PartitionChoice, ...] = ()
    joint: GainEstimate | None = None
    fits: int = 0
    dropped_at_joint: tuple[str, ...] = field(default=())
    together: float | None = None  # every partition kept at this fraction of its real rows
    candidates: int = 1  # partitions judged (+1 for every partition together): sets the bar

    @property
    def bar(self) -> float:
        """The posterior z a candidate must pass: `keep_z` over `candidates` (module doc)."""
        return bar(self.keep_z, self.candidates)

    @property
    def kept(self) -> dict[str, int]:
        return {p.key: p.rows for p in self.partitions if p.kept}

    def text(self) -> str:
        """One line: what the kept rows are worth, or why nothing was kept."""
        if self.joint is not None and self.kept:
            lo, hi = self.joint.interval()
            return (
                f"expected loss change {-100 * self.joint.relative:+.1f}% "
                f"[{-100 * hi:+.1f}%, {-100 * lo:+.1f}%] (z={self.joint.shrunk_z:.2f} > "
                f"{self._bar_text()}; {self.folds}-fold x {self.repeats} cross-fit over "
                f"{self.scored_rows} real rows"
                + (", shrunk" if self.joint.shrunk_se != self.joint.se else "")
                + (f"; every partition at {self.together:g}x" if self.together else "")
                + ")"
            )
        shown = "; ".join(p.text(self.bar, self.power) for p in self.partitions if p.tried)
        return "no partition's rows showed a gain" + (f": {shown}" if shown else "")

    def _bar_text(self) -> str:
        if self.candidates <= 1:
            return f"{self.keep_z:g}"
        return f"{self.bar:.2f}, keep_z {self.keep_z:g} over {self.candidates} candidates"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["partitions"] = [p.to_dict() for p in self.partitions]
        d["joint"] = asdict(self.joint) if self.joint else None
        d["dropped_at_joint"] = list(self.dropped_at_joint)
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> GainDecision:
        parts = tuple(PartitionChoice.from_dict(p) for p in d.get("partitions", ()))
        joint = GainEstimate(**d["joint"]) if d.get("joint") else None
        rest = {k: v for k, v in d.items() if k not in ("partitions", "joint", "dropped_at_joint")}
        return GainDecision(
            **rest,
            partitions=parts,
            joint=joint,
            dropped_at_joint=tuple(d.get("dropped_at_joint", ())),
        )


def volumes(real_rows: int, available: int, fractions: Sequence[float], minimum: int) -> list[int]:
    """Distinct row counts to try: each fraction of the partition's real rows, at least
    `minimum`, at most what was generated for it."""
    out = sorted({min(available, max(minimum, round(f * real_rows))) for f in fractions})
    return [v for v in out if v > 0]


def _prior(
    tried: Mapping[str, list[GainEstimate]], pools: Mapping[str, tuple[int, pd.DataFrame]]
) -> float:
    """tau^2 from one estimate per partition (its volume nearest 1x) when there are
    `MIN_PARTITIONS`; with fewer, from every volume tried, which is conservative (module doc)."""
    firsts = [min(es, key=lambda e: abs(e.rows - pools[k][0])) for k, es in tried.items() if es]
    if len(firsts) >= MIN_PARTITIONS:
        return prior_variance(firsts)
    return prior_variance([e for es in tried.values() for e in es])


def _together(
    pools: Mapping[str, tuple[int, pd.DataFrame]],
    evaluator: GainEvaluator,
    fractions: Sequence[float],
    min_rows: int,
) -> list[tuple[float, GainEstimate, dict[str, int]]]:
    """Every partition's rows at once, one candidate per fraction: a gain spread over all
    partitions is diluted in each partition's own estimate (every row's loss is averaged, the
    rows of other partitions only add refit noise) but shows whole in the sum. Not shrunk: the
    prior describes one partition's gain, and these few nested candidates are not chosen among
    partitions (each partition's own z may be 0.8 and the sum's 1.6, while the prior learnt from
    the 0.8s is 0)."""
    out = []
    for f in sorted(set(fractions)):
        counts = {
            k: min(len(rows), max(min_rows, round(f * real)))
            for k, (real, rows) in pools.items()
            if len(rows)
        }
        frame = pd.concat([pools[k][1].iloc[:n] for k, n in counts.items()], ignore_index=True)
        out.append((f, shrink([evaluator.assess(frame)], math.inf)[0], counts))
    return out


def bar(keep_z: float, candidates: int) -> float:
    """The z that holds `candidates` chances to the one-sided level of `keep_z` (Bonferroni)."""
    if candidates <= 1:
        return keep_z
    normal = NormalDist()
    return normal.inv_cdf(1.0 - (1.0 - normal.cdf(keep_z)) / candidates)


def _choice(
    key: str, real: int, rows: pd.DataFrame, es: Sequence[GainEstimate], z_bar: float, min_rows: int
) -> PartitionChoice:
    """One partition on its own: its best shrunk volume, kept when its posterior z passes the
    bar (kept apart from `decide` so the rule reads in one screen)."""
    if not es:
        why = "no generated rows" if rows.empty else f"fewer than {min_rows} generated rows"
        return PartitionChoice(key, real, len(rows), (), 0, False, why)
    best = max(es, key=lambda e: (e.shrunk, e.z))
    ok = best.shrunk > 0 and best.shrunk_z > z_bar
    why = (
        f"{best.rows} rows: posterior z={best.shrunk_z:.2f} > {z_bar:.3g}"
        if ok
        else f"best volume {best.rows} rows: posterior z={best.shrunk_z:.2f} <= {z_bar:.3g}"
    )
    return PartitionChoice(key, real, len(rows), tuple(es), best.rows if ok else 0, ok, why)


def decide(
    pools: Mapping[str, tuple[int, pd.DataFrame]],
    evaluator: GainEvaluator,
    *,
    fractions: Sequence[float],
    keep_z: float,
    power: float = 0.8,
    min_rows: int = 5,
) -> tuple[GainDecision, dict[str, pd.DataFrame]]:
    """The gain rule (module doc). `pools` maps a partition key to (its real rows, its generated
    rows in the order they are taken: the first v rows make volume v). Returns the decision and
    the kept rows per partition."""
    tried: dict[str, list[GainEstimate]] = {}
    for key, (real, rows) in pools.items():
        tried[key] = [
            evaluator.assess(rows.iloc[:v]) for v in volumes(real, len(rows), fractions, min_rows)
        ]
    tau2 = _prior(tried, pools)
    tried = {k: shrink(es, tau2) for k, es in tried.items()}
    judged = sum(1 for es in tried.values() if es)
    candidates = judged + (1 if judged >= 2 else 0)  # + every partition together
    z_bar = bar(keep_z, candidates)
    choices = {
        key: _choice(key, real, rows, tried[key], z_bar, min_rows)
        for key, (real, rows) in pools.items()
    }
    kept = {k: c for k, c in choices.items() if c.kept}
    joint: GainEstimate | None = None
    dropped: list[str] = []
    while kept:
        frame = pd.concat([pools[k][1].iloc[: c.rows] for k, c in kept.items()], ignore_index=True)
        raw = evaluator.assess(frame)
        joint = shrink([raw], tau2)[0]
        if joint.shrunk > 0 and joint.shrunk_z > z_bar:
            break
        weakest = min(kept.values(), key=lambda c: (c.best.shrunk_z if c.best else 0.0, c.key))
        dropped.append(weakest.key)
        del kept[weakest.key]
        choices[weakest.key] = dataclasses.replace(
            weakest, kept=False, rows=0,
            reason=f"dropped: the kept rows together did not pass (z={joint.shrunk_z:.2f})",
        )  # fmt: skip
        joint = None
    together: float | None = None
    if judged >= 2:
        cands = _together(pools, evaluator, fractions, min_rows)
        f, est, counts = max(cands, key=lambda c: (c[1].shrunk, c[1].z))
        if est.shrunk > 0 and est.shrunk_z > z_bar and (joint is None or est.shrunk > joint.shrunk):
            why = (
                f"kept with every partition at {f:g}x (together z={est.shrunk_z:.2f} > {z_bar:.3g})"
            )
            for k, n in counts.items():
                choices[k] = dataclasses.replace(choices[k], kept=True, rows=n, reason=why)
            kept = {k: choices[k] for k in counts}
            joint, together = est, f
    decision = GainDecision(
        keep_z=keep_z,
        power=power,
        folds=evaluator.k,
        repeats=evaluator.repeats,
        scored_rows=evaluator.n,
        base_loss=evaluator.base_loss,
        partitions=tuple(choices[k] for k in pools),
        joint=joint,
        fits=evaluator.fits,
        dropped_at_joint=tuple(dropped),
        together=together,
        candidates=candidates,
    )
    return decision, {k: pools[k][1].iloc[: c.rows] for k, c in kept.items()}
