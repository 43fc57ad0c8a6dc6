"""Specification generators: AutoSpec's (our reconstruction) and the two data-driven baselines.

The paper's generator is not public. Ours, as the brief sketches it: split the input space recursively
(axis-aligned, a decision tree on the logged decisions, impurity-reducing splits at data quantiles, a
minimum leaf size); for each leaf keep the tightest output set that holds for a share τ of its points
(classification: the fewest classes covering τ; regression: the [q_α, q_1-α] interval); emit the
leaf's cell as a spec when that set is informative; then merge sibling specs whose union stays tight.
Cells (not the data's bounding boxes) are kept by default, so the specs tile the space seen in the
data and held-out points inside it are covered.

Baselines with the same output-set rule: a uniform grid over the data's range, and k-means clusters'
bounding boxes. Hand-written specs are in `baselines.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tenfold.autospec.spec import Spec
from tenfold.autospec.systems import Dataset
from tenfold.core.errors import TenfoldError


@dataclass
class GenConfig:
    min_leaf: int = 30  # points per leaf at least
    max_depth: int = 10
    tau: float = 0.95  # share of a region's points its output set must hold
    max_class_share: float = 0.5  # classification: allow at most this share of the classes
    alpha: float = 0.025  # regression: interval [q_alpha, q_1-alpha]
    max_width: float = 0.35  # regression: interval at most this share of the output range
    merge: bool = True
    shrink: bool = False  # shrink each spec's box to the support of its generation points
    polytope: bool = False  # cut each box to a polytope: bounds on every pairwise difference x_i - x_j
    margin: float = 0.05  # the root cell extends the data's range by this share on each side

    def validate(self) -> GenConfig:
        if not (0.5 <= self.tau <= 1.0 and 0 <= self.alpha < 0.5 and self.min_leaf >= 1):
            raise TenfoldError(f"bad generator config: {self}")
        return self


def data_box(data: Dataset, margin: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = data.X.min(0).astype(np.float64), data.X.max(0).astype(np.float64)
    pad = (hi - lo) * margin + 1e-6
    # features that are never negative (rates, sizes, times) stay so: no spec about impossible inputs
    return np.where(lo >= 0, np.maximum(lo - pad, 0.0), lo - pad), hi + pad


def output_set(y: np.ndarray, data: Dataset, cfg: GenConfig) -> dict | None:
    """The tightest output set holding for a share tau of `y`, or None when it is not informative."""
    if len(y) == 0:
        return None
    if data.task == "classification":
        counts = np.bincount(y, minlength=data.classes)
        order = np.argsort(-counts, kind="stable")
        need, got, chosen = cfg.tau * len(y), 0, []
        for c in order:
            chosen.append(int(c))
            got += counts[c]
            if got >= need:
                break
        if len(chosen) > max(1, int(cfg.max_class_share * data.classes)):
            return None
        return {"classes": frozenset(chosen)}
    lo, hi = np.quantile(y, [cfg.alpha, 1 - cfg.alpha])
    span = float(data.y.max() - data.y.min()) or 1.0
    if hi - lo > cfg.max_width * span:
        return None
    return {"interval": (float(lo), float(hi))}


def _impurity(y: np.ndarray, task: str, classes: int) -> float:
    if task == "classification":
        p = np.bincount(y, minlength=classes) / len(y)
        return float(1.0 - (p * p).sum())
    return float(y.var())


def _tight(y: np.ndarray, data: Dataset, cfg: GenConfig) -> bool:
    s = output_set(y, data, cfg)
    if s is None:
        return False
    if "classes" in s:
        return len(s["classes"]) == 1
    span = float(data.y.max() - data.y.min()) or 1.0
    return s["interval"][1] - s["interval"][0] <= 0.25 * cfg.max_width * span


def _best_split(X: np.ndarray, y: np.ndarray, data: Dataset, cfg: GenConfig):
    best, base = None, _impurity(y, data.task, data.classes)
    for f in range(X.shape[1]):
        for t in np.unique(np.quantile(X[:, f], np.linspace(0.05, 0.95, 19))):
            left = X[:, f] <= t
            nl = int(left.sum())
            if nl < cfg.min_leaf or len(y) - nl < cfg.min_leaf:
                continue
            imp = (
                nl * _impurity(y[left], data.task, data.classes)
                + (len(y) - nl) * _impurity(y[~left], data.task, data.classes)
            ) / len(y)
            if best is None or imp < best[0]:
                best = (imp, f, float(t))
    if best is None or best[0] >= base - 1e-12:
        return None
    return best[1], best[2]


def autospec(data: Dataset, cfg: GenConfig | None = None) -> list[Spec]:
    """Specs from the generation data (see the module docstring)."""
    cfg = (cfg or GenConfig()).validate()
    if len(data) == 0:
        raise TenfoldError("no generation data: the traces are empty")
    lo, hi = data_box(data, cfg.margin)

    def build(idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, depth: int) -> list[Spec]:
        X, y = data.X[idx], data.y[idx]
        split = None if depth >= cfg.max_depth or _tight(y, data, cfg) else _best_split(X, y, data, cfg)
        if split is None:
            s = output_set(y, data, cfg)
            return [Spec(tuple(lo), tuple(hi), support=len(idx), **s)] if s else []
        f, t = split
        left = X[:, f] <= t
        lhi, rlo = hi.copy(), lo.copy()
        lhi[f], rlo[f] = t, t
        a = build(idx[left], lo, lhi, depth + 1)
        b = build(idx[~left], rlo, hi, depth + 1)
        if (
            cfg.merge
            and len(a) == 1
            and len(b) == 1
            and _same_cell(a[0], lo, lhi)
            and _same_cell(b[0], rlo, hi)
        ):
            s = output_set(y, data, cfg)  # the two children tile the parent: one spec if it stays tight
            if s and _no_looser(s, a[0], b[0]):
                return [Spec(tuple(lo), tuple(hi), support=len(idx), **s)]
        return a + b

    specs = build(np.arange(len(data)), lo, hi, 0)
    if cfg.shrink:
        specs = [_shrunk(s, data, cfg.margin) for s in specs]
    if cfg.polytope:
        specs = [_difference_polytope(s, data, cfg.margin) for s in specs]
    return specs


def _difference_polytope(s: Spec, data: Dataset, margin: float) -> Spec:
    """The spec cut to the pairwise differences its generation points show (plus a margin of each
    difference's range over all data): lo_ij <= x_i - x_j <= hi_ij. Where features move together
    (a throughput history, queued jobs), a box claims many combinations no trace produces; these
    rows take them out, and with them most of the box corners a verifier finds counterexamples at."""
    X = data.X[s.covers(data.X)].astype(np.float64)
    if len(X) == 0:
        return s
    d = X.shape[1]
    A, b = [], []
    for i in range(d):
        for j in range(i + 1, d):
            diff = X[:, i] - X[:, j]
            every = data.X[:, i].astype(np.float64) - data.X[:, j]
            pad = (every.max() - every.min()) * margin + 1e-6
            row = np.zeros(d)
            row[i], row[j] = 1.0, -1.0
            A += [tuple(row), tuple(-row)]
            b += [float(diff.max() + pad), float(-(diff.min() - pad))]
    return Spec(s.lo, s.hi, s.classes, s.interval, s.support, A=tuple(A), b=tuple(b))


def _shrunk(s: Spec, data: Dataset, margin: float) -> Spec:
    """The spec's box cut down to the bounding box of the generation points it covers (plus a margin
    of the data's range), so it claims nothing about regions no data came from."""
    X = data.X[s.covers(data.X)].astype(np.float64)
    pad = (data.X.max(0) - data.X.min(0)) * margin
    lo = np.maximum(np.array(s.lo), X.min(0) - pad)
    hi = np.minimum(np.array(s.hi), X.max(0) + pad)
    return Spec(tuple(lo), tuple(hi), s.classes, s.interval, s.support)


def _same_cell(s: Spec, lo: np.ndarray, hi: np.ndarray) -> bool:
    return np.allclose(s.lo, lo) and np.allclose(s.hi, hi)


def _no_looser(s: dict, a: Spec, b: Spec) -> bool:
    """The parent's set is no looser than the children's union (same classes, or a no wider interval)."""
    if "classes" in s:
        return s["classes"] == (a.classes | b.classes) and a.classes == b.classes
    lo, hi = s["interval"]
    return lo >= min(a.interval[0], b.interval[0]) and hi <= max(a.interval[1], b.interval[1])


def grid(data: Dataset, cfg: GenConfig | None = None, max_cells: int = 4096) -> list[Spec]:
    """Uniform grid over the data's range, the same output-set rule per non-empty cell."""
    cfg = (cfg or GenConfig()).validate()
    d = data.X.shape[1]
    g = max(2, int(math.floor(max_cells ** (1.0 / d))))
    lo, hi = data_box(data, cfg.margin)
    edges = [np.linspace(lo[f], hi[f], g + 1) for f in range(d)]
    cell = np.stack(
        [np.clip(np.searchsorted(edges[f], data.X[:, f], side="right") - 1, 0, g - 1) for f in range(d)], 1
    )
    specs = []
    keys, inv = np.unique(cell, axis=0, return_inverse=True)
    for k, key in enumerate(keys):
        idx = np.nonzero(inv.reshape(-1) == k)[0]
        if len(idx) < max(1, cfg.min_leaf // 3):
            continue
        s = output_set(data.y[idx], data, cfg)
        if s:
            specs.append(
                Spec(
                    tuple(edges[f][key[f]] for f in range(d)),
                    tuple(edges[f][key[f] + 1] for f in range(d)),
                    support=len(idx),
                    **s,
                )
            )
    return specs


def clusters(
    data: Dataset, cfg: GenConfig | None = None, k: int | None = None, seed: int = 0, iters: int = 30
) -> list[Spec]:
    """k-means (on standardised inputs) clusters' bounding boxes, the same output-set rule per cluster."""
    cfg = (cfg or GenConfig()).validate()
    k = k or max(2, len(data) // (3 * cfg.min_leaf))
    Z = (data.X - data.X.mean(0)) / (data.X.std(0) + 1e-9)
    rng = np.random.default_rng(seed)
    centers = Z[rng.choice(len(Z), size=min(k, len(Z)), replace=False)]
    for _ in range(iters):
        assign = ((Z[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
        for c in range(len(centers)):
            if (assign == c).any():
                centers[c] = Z[assign == c].mean(0)
    specs = []
    for c in range(len(centers)):
        idx = np.nonzero(assign == c)[0]
        if len(idx) < 2:
            continue
        s = output_set(data.y[idx], data, cfg)
        if s:
            X = data.X[idx].astype(np.float64)
            specs.append(Spec(tuple(X.min(0)), tuple(X.max(0)), support=len(idx), **s))
    return specs
