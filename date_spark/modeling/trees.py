"""Decision trees as rules: split nodes -> predicate pairs, root-to-leaf paths -> DNF rules.

Discovery splits a candidate conjunction with the split nodes of a tree fitted on its rows;
generation groups generated rows by the root-to-leaf path of a tree. Both need the tree's tests
written as exact `date_spark.rules` predicates over the original columns.

Boundary semantics (exact, no row in both children, none in neither):
- numeric / date / timestamp: sklearn sends a row left when ``float32(x) <= t``. Over the training
  matrix the left values end at `a` and the right values start at `b > a`; the rule threshold `d` is
  the shortest decimal (an integer for integral columns, a day for dates) with ``a < d <= b``, so
  ``x < d`` / ``x >= d`` split the training rows exactly as the tree did and read well in prompts.
- categorical: codes are re-ordered per tree (by mean target, Breiman's optimal binary partition,
  or by `score_order` for residual trees), so a threshold is a *set* S of domain values:
  ``col in S`` / ``col not in S`` (``=`` / ``!=`` for one value; `Split.pair` writes the smaller
  set explicitly). Values outside the domain go with the side the tree sends nulls to.
- boolean: ``b = false`` / ``b = true``.
- nulls: a comparison never matches null (SQL semantics, see `rules`). A `Split` therefore states
  its two non-null sides and where the tree sends missing values; discovery adds an explicit
  ``col is null`` child, while a `TreePath` ORs ``col is null`` into the side the tree sends nulls
  to. That is why a path is a `Rule` (DNF): it is a single conjunction unless a split on its way
  routes nulls along with one side, and it matches exactly the rows `tree.apply` sends to its leaf
  (for training values, unknown categories and nulls; for a new value strictly between two training
  values the rule's threshold is authoritative). A null in a column that had no null in the
  training matrix matches no path: the tree's choice there is arbitrary.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from date_spark.errors import DiscoveryError
from date_spark.modeling.features import FeatureEncoder
from date_spark.rules import Conjunction, Predicate, Rule
from date_spark.schema import Kind

__all__ = [
    "RuleTree",
    "Split",
    "TreeModel",
    "TreePath",
    "category_order",
    "score_order",
    "shortest_between",
    "split_nodes",
    "tree_paths",
]

TreeModel: TypeAlias = DecisionTreeClassifier | DecisionTreeRegressor


@dataclass(frozen=True)
class Split:
    """One split node. `left` / `right` are the non-null values each side of the tree takes
    (exactly as `tree.apply` routes them); `nulls_left` says where the tree sends missing values.
    `pair` is the same non-null partition written for a rule (for categoricals the smaller value
    set explicit, its complement as ``not in``). `gain` is the node's weighted impurity decrease
    as a share of the root's weight (sklearn's feature-importance term); `frac_left` /
    `frac_right` the share of the reference rows on each non-null side. A split of missing vs
    present values (sklearn's threshold = inf) has ``right is None`` and ``left = is not null``."""

    column: str
    left: Predicate
    right: Predicate | None
    nulls_left: bool
    gain: float
    depth: int
    node: int
    frac_left: float = 0.0
    frac_right: float = 0.0
    pair: tuple[Predicate, Predicate] | None = None

    @property
    def is_null_split(self) -> bool:
        return self.right is None

    def partition(self, with_nulls: bool) -> tuple[Predicate, ...]:
        """Predicates that put every row into exactly one child. With `with_nulls`, an explicit
        ``is null`` child takes the missing values (a null split already is that pair)."""
        null = Predicate(self.column, "is null")
        if self.right is None:
            return (self.left, null)
        pair = self.pair or (self.left, self.right)
        return (*pair, null) if with_nulls else pair

    def side_rules(self, nulls: bool = True) -> tuple[Rule, Rule]:
        """The rows the tree itself sends left and right, nulls included (a DNF per side). With
        ``nulls=False`` (the column had no nulls when the tree was fitted, so the tree's choice
        for them is arbitrary) null rows match neither side."""
        null = Conjunction((Predicate(self.column, "is null"),))
        if not nulls and self.right is not None:
            return Rule.of(self.left), Rule.of(self.right)
        if self.right is None:
            if self.nulls_left:  # degenerate: everything goes left
                return Rule.true(), Rule.false()
            return Rule.of(self.left), Rule((null,))
        left_r, right_r = Rule.of(self.left), Rule.of(self.right)
        if self.nulls_left:
            left_r = left_r.or_(null)
        else:
            right_r = right_r.or_(null)
        return left_r, right_r


@dataclass(frozen=True)
class TreePath:
    """A leaf and the rule of its root-to-leaf path (see the module doc on nulls)."""

    leaf: int
    rule: Rule
    n_samples: int
    prediction: Any
    depth: int

    @property
    def conjunctions(self) -> tuple[Conjunction, ...]:
        return self.rule.conjunctions


def _set_pred(column: str, values: Sequence[Any], negate: bool) -> Predicate:
    vals = tuple(values)
    if len(vals) == 1:
        return Predicate(column, "!=" if negate else "=", vals[0])
    return Predicate(column, "not in" if negate else "in", vals)


# ------------------------------------------------------------------------------------------------
# Thresholds
# ------------------------------------------------------------------------------------------------


def shortest_between(a: float, b: float, integral: bool = False) -> float:
    """The shortest decimal d with a < d <= b (an integer when `integral`)."""
    if not a < b:
        raise ValueError(f"need a < b, got {a!r}, {b!r}")
    if integral:
        d = math.floor(a) + 1
        if d <= b:
            return float(d)
    da, db = Decimal(repr(a)), Decimal(repr(b))
    for places in range(-15, 18):
        q = Decimal(1).scaleb(-places)
        cand = (da / q).to_integral_value(rounding=ROUND_FLOOR) * q + q  # smallest multiple > a
        if cand <= db:
            f = float(cand)
            if a < f <= b:
                return f
    return float(b)


def _threshold_value(encoder: FeatureEncoder, j: int, a: float, b: float) -> Any:
    f = encoder.features[j]
    if f.kind is Kind.DATE:
        return encoder.value(j, math.floor(a) + 1.0)  # day ordinals: the day after a, <= b
    if f.kind is Kind.TIMESTAMP:
        return encoder.value(j, b)
    d = shortest_between(a, b, integral=f.integral)
    return encoder.value(j, d)


# ------------------------------------------------------------------------------------------------
# A fitted tree with its category order
# ------------------------------------------------------------------------------------------------


@dataclass
class RuleTree:
    """A sklearn tree fitted on `encoder` features whose categorical codes were re-ordered by
    `recode` (feature index -> rank of each code). `transform` applies the same re-ordering, so
    `predict` / `apply` take the encoder's matrix."""

    tree: TreeModel
    encoder: FeatureEncoder
    recode: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        encoder: FeatureEncoder,
        task: str,
        *,
        max_depth: int | None,
        min_samples_leaf: int = 1,
        seed: int = 0,
        order_categories: bool = True,
        criterion: str | None = None,
        recode: dict[int, np.ndarray] | None = None,
    ) -> RuleTree:
        """Fit on the encoder matrix `X`. Categorical codes are ranked by `recode` when given,
        else by mean target (`order_categories`), else kept in domain order."""
        if recode is None:
            recode = category_order(X, y, encoder, task) if order_categories else {}
        model: TreeModel
        if task == "regression":
            model = DecisionTreeRegressor(
                max_depth=max_depth,
                min_samples_leaf=min_samples_leaf,
                random_state=seed,
                criterion=criterion or "squared_error",
            )
        else:
            model = DecisionTreeClassifier(
                max_depth=max_depth,
                min_samples_leaf=min_samples_leaf,
                random_state=seed,
                criterion=criterion or "entropy",
            )
        rt = cls(model, encoder, recode)
        model.fit(rt.transform(X), y)
        return rt

    def transform(self, X: np.ndarray) -> np.ndarray:
        if not self.recode:
            return X
        out = X.copy()
        for j, rank in self.recode.items():
            col = X[:, j]
            ok = ~np.isnan(col)
            vals = np.full(len(col), np.nan)
            vals[ok] = rank[col[ok].astype(np.int64)]
            out[:, j] = vals
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.tree.predict(self.transform(X)))

    def apply(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.tree.apply(self.transform(X)))

    def splits(self, X: np.ndarray) -> list[Split]:
        """Every split node as a `Split`, thresholds placed in the gaps of `X` (the training
        matrix, encoder codes)."""
        return split_nodes(self.tree, self.encoder, self.transform(X), self.recode)

    def paths(self, X: np.ndarray) -> list[TreePath]:
        return tree_paths(self.tree, self.encoder, self.transform(X), self.recode)

    def route(self, pdf: pd.DataFrame, paths: Sequence[TreePath]) -> np.ndarray:
        """Leaf id of each row, by the path rules' masks (-1: no path, e.g. a value outside a
        closed category set). This is the rule-side twin of `apply`."""
        out = np.full(len(pdf), -1, dtype=np.int64)
        for p in paths:
            m = p.rule.mask(pdf).to_numpy(dtype=bool)
            out[m] = p.leaf
        return out


def category_order(
    X: np.ndarray, y: np.ndarray, encoder: FeatureEncoder, task: str
) -> dict[int, np.ndarray]:
    """Per categorical feature, the rank of each code when codes are sorted by mean target (for
    classification: the share of the most frequent class). One threshold on these ranks is the
    best binary partition of the values for two classes or squared error (Breiman)."""
    out: dict[int, np.ndarray] = {}
    if task == "regression":
        target = np.asarray(y, dtype=np.float64)
        if target.ndim == 2:  # multi-output (e.g. class residuals): the most varying output
            target = target[:, int(np.argmax(target.var(axis=0)))] if target.shape[1] else target
    else:
        labels, counts = np.unique(y, return_counts=True)
        target = (np.asarray(y) == labels[int(np.argmax(counts))]).astype(np.float64)
    for j, k, ok, codes in _category_codes(X, encoder, encoder.categorical_indices):
        sums = np.bincount(codes, weights=target[ok], minlength=k)
        cnt = np.bincount(codes, minlength=k)
        mean = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.inf)  # unseen codes sort last
        out[j] = _ranks(mean)
    return out


def _category_codes(
    X: np.ndarray, encoder: FeatureEncoder, indices: Sequence[int]
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Per categorical feature with categories: its index, how many, which rows hold a value and
    their codes."""
    for j in indices:
        k = len(encoder.features[j].categories)
        if k == 0:
            continue
        ok = ~np.isnan(X[:, j])
        yield j, k, ok, X[ok, j].astype(np.int64)


def _ranks(key: np.ndarray) -> np.ndarray:
    """Each code's rank when codes are sorted by `key` (ties: the lower code first)."""
    k = len(key)
    order = np.lexsort((np.arange(k), key))
    rank = np.empty(k, dtype=np.float64)
    rank[order] = np.arange(k, dtype=np.float64)
    return rank


def score_order(
    X: np.ndarray, residual: np.ndarray, encoder: FeatureEncoder
) -> dict[int, np.ndarray]:
    """Per categorical feature, the rank of each code along the first principal component of the
    per-category mean score vectors (residual x standardised numeric features, plus the residual
    itself). Categories where a model misses in the same direction rank together, so one threshold
    separates groups that need different models, even when the model's own category effects left
    every category's mean residual at zero (model-based recursive partitioning's score idea)."""
    cats = encoder.categorical_indices
    if not cats:
        return {}
    num = [j for j in range(X.shape[1]) if j not in set(cats)]
    Z = X[:, num]
    mu = np.nanmean(Z, axis=0) if len(num) else np.zeros(0)
    sd = np.nanstd(Z, axis=0) if len(num) else np.zeros(0)
    Z = np.where(np.isnan(Z), 0.0, (Z - mu) / np.where(sd > 0, sd, 1.0))
    Z = np.column_stack([np.ones(len(X)), Z])
    R = residual.reshape(len(X), -1)
    psi = (R[:, :, None] * Z[:, None, :]).reshape(len(X), -1)
    out: dict[int, np.ndarray] = {}
    for j, k, ok, codes in _category_codes(X, encoder, cats):
        cnt = np.bincount(codes, minlength=k).astype(np.float64)
        G = np.zeros((k, psi.shape[1]))
        np.add.at(G, codes, psi[ok])
        seen = cnt > 0
        G[seen] /= cnt[seen, None]
        proj = np.full(k, np.inf)  # unseen codes sort last
        if seen.sum() >= 2:
            w = cnt[seen] / cnt[seen].sum()
            C = (G[seen] - w @ G[seen]) * np.sqrt(w)[:, None]
            _, _, vt = np.linalg.svd(C, full_matrices=False)
            v = vt[0]
            v = v if v[int(np.argmax(np.abs(v)))] >= 0 else -v  # a deterministic sign
            proj[seen] = G[seen] @ v
        else:
            proj[seen] = 0.0
        out[j] = _ranks(proj)
    return out


# ------------------------------------------------------------------------------------------------
# Extraction
# ------------------------------------------------------------------------------------------------


def _node_split(
    tree: TreeModel,
    encoder: FeatureEncoder,
    Xr: np.ndarray,
    recode: dict[int, np.ndarray],
    node: int,
    depth: int = 0,
    gain: float = 0.0,
) -> Split:
    """`node` as a `Split`; `Xr` is the (re-coded) matrix the tree was fitted on."""
    t = tree.tree_
    j = int(t.feature[node])
    thr = float(t.threshold[node])
    nulls_left = bool(t.missing_go_to_left[node])
    f = encoder.features[j]
    col = Xr[:, j]
    present = col[~np.isnan(col)]
    n = max(len(Xr), 1)
    if f.kind in (Kind.NUMERIC, Kind.DATE, Kind.TIMESTAMP):
        # sklearn compares float32(x) <= threshold (in double precision).
        goes_left = present.astype(np.float32).astype(np.float64) <= thr
    else:
        goes_left = present <= thr
    fl, fr = float(goes_left.sum()) / n, float((~goes_left).sum()) / n

    def make(
        left: Predicate, right: Predicate | None, pair: tuple[Predicate, Predicate] | None
    ) -> Split:
        return Split(f.name, left, right, nulls_left, gain, depth, node, fl, fr, pair)

    if math.isinf(thr):
        return make(Predicate(f.name, "is not null"), None, None)
    if f.kind is Kind.CATEGORICAL:
        k = len(f.categories)
        rank = recode.get(j, np.arange(k, dtype=np.float64))
        left_vals = [f.categories[c] for c in range(k) if rank[c] <= thr]
        right_vals = [f.categories[c] for c in range(k) if rank[c] > thr]
        if not left_vals or not right_vals:
            return make(Predicate(f.name, "is not null"), None, None)
        small = left_vals if len(left_vals) <= len(right_vals) else right_vals
        pair = (_set_pred(f.name, small, False), _set_pred(f.name, small, True))
        if nulls_left:
            # Unknown values encode as NaN and follow the nulls: left is "not in right".
            return make(
                _set_pred(f.name, right_vals, True), _set_pred(f.name, right_vals, False), pair
            )
        return make(_set_pred(f.name, left_vals, False), _set_pred(f.name, left_vals, True), pair)
    if f.kind is Kind.BOOLEAN:
        lo, hi = Predicate(f.name, "=", False), Predicate(f.name, "=", True)
        return make(lo, hi, (lo, hi))
    if goes_left.any() and (~goes_left).any():
        a, b = float(present[goes_left].max()), float(present[~goes_left].min())
        d = _threshold_value(encoder, j, a, b)
        lo, hi = Predicate(f.name, "<", d), Predicate(f.name, ">=", d)
        return make(lo, hi, (lo, hi))
    # The reference rows do not straddle the threshold (they are not the training matrix):
    # fall back to sklearn's own test, exact up to float32 rounding.
    v = float(thr) if f.kind is Kind.NUMERIC else encoder.value(j, thr)
    lo, hi = Predicate(f.name, "<=", v), Predicate(f.name, ">", v)
    return make(lo, hi, (lo, hi))


def split_nodes(
    tree: TreeModel,
    encoder: FeatureEncoder,
    X: np.ndarray,
    recode: dict[int, np.ndarray] | None = None,
) -> list[Split]:
    """All split nodes of a fitted tree, highest gain first. `X` is the matrix the tree was fitted
    on (already re-coded when `recode` is given)."""
    recode = recode or {}
    t = tree.tree_
    if t.node_count <= 1:
        return []
    w = t.weighted_n_node_samples
    imp = t.impurity
    depth = _depths(tree)
    out: list[Split] = []
    for node in range(t.node_count):
        lc, rc = int(t.children_left[node]), int(t.children_right[node])
        if lc < 0:
            continue
        gain = (w[node] * imp[node] - w[lc] * imp[lc] - w[rc] * imp[rc]) / w[0]
        out.append(
            _node_split(tree, encoder, X, recode, node, int(depth[node]), float(max(gain, 0.0)))
        )
    out.sort(key=lambda s: (-s.gain, s.depth, s.node))
    return out


def _depths(tree: TreeModel) -> np.ndarray:
    t = tree.tree_
    depth = np.zeros(t.node_count, dtype=np.int64)
    for node in range(t.node_count):
        for ch in (t.children_left[node], t.children_right[node]):
            if ch >= 0:
                depth[ch] = depth[node] + 1
    return depth


def tree_paths(
    tree: TreeModel,
    encoder: FeatureEncoder,
    X: np.ndarray,
    recode: dict[int, np.ndarray] | None = None,
) -> list[TreePath]:
    """One `TreePath` per leaf, in leaf id order. The path rules are disjoint and route every row
    exactly as `tree.apply` does, for the values in `X`, unknown categories and nulls; a null in a
    column that held no null in `X` matches no path (the tree's choice for it would be arbitrary,
    and the rules stay short)."""
    recode = recode or {}
    has_nulls = np.isnan(X).any(axis=0) if len(X) else np.zeros(X.shape[1], dtype=bool)
    t = tree.tree_
    classes = getattr(tree, "classes_", None)
    out: list[TreePath] = []
    sides: dict[int, tuple[Rule, Rule]] = {}

    def walk(node: int, acc: Rule, d: int) -> None:
        lc, rc = int(t.children_left[node]), int(t.children_right[node])
        if lc < 0:
            value = t.value[node]
            if classes is not None:
                pred: Any = classes[int(np.argmax(value[0]))]
                pred = pred.item() if hasattr(pred, "item") else pred
            else:
                pred = float(value[0][0])
            out.append(TreePath(node, acc.simplify(), int(t.n_node_samples[node]), pred, d))
            return
        if node not in sides:
            j = int(t.feature[node])
            sides[node] = _node_split(tree, encoder, X, recode, node, d).side_rules(
                nulls=bool(has_nulls[j])
            )
        lr, rr = sides[node]
        walk(lc, acc.and_(lr).simplify(), d + 1)
        walk(rc, acc.and_(rr).simplify(), d + 1)

    if t.node_count == 0:
        raise DiscoveryError("the decision tree is not fitted")
    walk(0, Rule.true(), 0)
    out.sort(key=lambda p: p.leaf)
    return out
