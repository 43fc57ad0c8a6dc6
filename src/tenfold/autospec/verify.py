"""Verify specifications against a ReLU network, every counterexample re-checked by running the network.

Per spec, in order:
1. interval bounds over the box (IBP, the last layer applied symbolically to the output differences
   the spec needs positive) prove it when they suffice: the cheapest check;
2. random points and the corners of the box, run through the network, refute it when one violates
   (most generated specs end here);
3. otherwise the complete engine (`bab.solve`: CROWN bounds on the whole box, input splitting under
   them, then Marabou on the pieces left, in parallel) decides the spec's VNN-LIB property within the
   time limit (`unknown` past it). `bounds_prove` is its first step on its own.
A counterexample (from 2 or 3) counts only if the network, run on it, really leaves the allowed set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tenfold.autospec.bounds import Bounds
from tenfold.autospec.relunet import ReluNet, from_onnx
from tenfold.autospec.spec import Spec, to_vnnlib
from tenfold.core.errors import TenfoldError


@dataclass
class Verdict:
    status: str  # "verified", "refuted" or "unknown"
    method: str  # "interval", "sampling", "bounds" (CROWN), "splitting" (bounds on split boxes), "marabou"
    seconds: float
    counterexample: list[float] | None = None
    rechecked: bool = False  # the network, run on the counterexample, violates the spec

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def require(module: str):
    """Import `module`, one of the packages of the `autospec` extra (onnx, onnxruntime, maraboupy).
    Only autospec uses them, so a plain install leaves them out; without them, one TenfoldError that
    says how to install them rather than an ImportError from deep inside a check."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or module).split(".")[0]
        raise TenfoldError(
            f"autospec needs the optional package {missing!r}, which is not installed: "
            "pip install tenfold[autospec] (from a clone: pip install -e .[autospec])"
        ) from None


def load_net(path: str | Path) -> ReluNet:
    """The network in an ONNX file, compiled to affine layers + ReLU (`relunet.from_onnx`)."""
    return from_onnx(path)


def _proof_rows(spec: Spec, n_out: int) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Rows (C, d) whose lower bounds over the box prove the spec, and how they combine: the spec holds
    when, in every group, some row has  C y + d > 0  (>= 0 for an interval) everywhere. Classes: one
    group per other class j, rows y_i - y_j for the allowed i; interval: y_0 - lo and hi - y_0."""
    if spec.classes is not None:
        allowed = sorted(spec.classes)
        others = [j for j in range(n_out) if j not in spec.classes]
        C = np.zeros((len(others) * len(allowed), n_out))
        for r, (j, i) in enumerate((j, i) for j in others for i in allowed):
            C[r, i], C[r, j] = 1.0, -1.0
        groups = [list(range(g * len(allowed), (g + 1) * len(allowed))) for g in range(len(others))]
        return C, np.zeros(len(C)), groups
    rows, d = [], []
    if math.isfinite(spec.interval[0]):
        rows.append(np.eye(n_out)[0]), d.append(-spec.interval[0])
    if math.isfinite(spec.interval[1]):
        rows.append(-np.eye(n_out)[0]), d.append(spec.interval[1])
    return np.array(rows), np.array(d), [[r] for r in range(len(rows))]


def _proved(spec: Spec, low: np.ndarray, groups: list[list[int]]) -> bool:
    ok = (low > 0) if spec.classes is not None else (low >= 0)
    return all(ok[g].any() for g in groups)


def bounds_prove(spec: Spec, net: ReluNet, bounds: Bounds | None = None) -> bool:
    """Sound proof by bounds over the spec's box: the larger of the CROWN and IBP lower bounds."""
    bounds = bounds or Bounds(net)
    lo, hi = np.array(spec.lo, np.float64), np.array(spec.hi, np.float64)
    C, d, groups = _proof_rows(spec, net.n_outputs)
    low = np.maximum(bounds.lower(lo, hi, C, d)[0][0], bounds.interval_lower(lo, hi, C, d)[0])
    return _proved(spec, low, groups)


def interval_proves(spec: Spec, net: ReluNet, bounds: Bounds | None = None) -> bool:
    """The interval-only proof (IBP, the last layer applied symbolically): the cheap first check."""
    bounds = bounds or Bounds(net)
    lo, hi = np.array(spec.lo, np.float64), np.array(spec.hi, np.float64)
    C, d, groups = _proof_rows(spec, net.n_outputs)
    return _proved(spec, bounds.interval_lower(lo, hi, C, d)[0], groups)


def violates(spec: Spec, y_row: np.ndarray, tol: float = 1e-6) -> bool:
    """Does this output break the spec by more than float noise (`tol`, relative to the bound)?"""
    if spec.classes is not None:
        allowed = max(y_row[i] for i in spec.classes)
        return bool(max(y_row) > allowed + tol * max(1.0, abs(allowed)))
    lo, hi = spec.interval
    return bool(y_row[0] < lo - tol * max(1.0, abs(lo)) or y_row[0] > hi + tol * max(1.0, abs(hi)))


def sample_refute(spec: Spec, net: ReluNet, n: int = 512, seed: int = 0) -> np.ndarray | None:
    lo, hi = np.array(spec.lo), np.array(spec.hi)
    rng = np.random.default_rng(seed)
    d = len(lo)
    corners = np.array([[hi[i] if (m >> i) & 1 else lo[i] for i in range(d)] for m in range(min(2**d, 256))])
    pts = np.vstack([corners, (lo + hi)[None] / 2, rng.uniform(lo, hi, size=(n, d))])
    if spec.A:  # a polytope: only points inside it count (the box is its bounding box)
        pts = np.vstack([pts, _polytope_points(spec, rng, n)])
        pts = pts[spec.covers(pts)]
        if not len(pts):
            return None
    out = net.forward(pts)
    for x, y in zip(pts, out, strict=True):
        if violates(spec, y):
            return x
    return None


def _polytope_points(spec: Spec, rng: np.random.Generator, n: int) -> np.ndarray:
    """Points inside a polytope spec: the box's sample points pulled towards the box centre until
    they satisfy A x <= b (bisection along the ray; the centre itself may lie outside)."""
    lo, hi = np.array(spec.lo), np.array(spec.hi)
    anchor = (lo + hi) / 2
    if not spec.covers(anchor[None])[0]:
        return np.empty((0, len(lo)))
    pts = rng.uniform(lo, hi, size=(n, len(lo)))
    out = []
    for p in pts:
        t_lo, t_hi = 0.0, 1.0  # anchor + t (p - anchor): t=0 inside
        for _ in range(20):
            t = (t_lo + t_hi) / 2
            if spec.covers((anchor + t * (p - anchor))[None])[0]:
                t_lo = t
            else:
                t_hi = t
        out.append(anchor + t_lo * (1 - 1e-6) * (p - anchor))  # strictly inside, not on a face
    return np.array(out)


def verify_spec(
    spec: Spec,
    net: ReluNet,
    onnx_path: str | Path | None,
    timeout_s: float = 30,
    use_marabou: bool = True,
    bounds: Bounds | None = None,
) -> Verdict:
    """One spec: bounds, then sampling, then the complete engine (`bab.solve`: input splitting and
    Marabou on what is left), on the spec's property asked with a small margin (a violation must
    exceed 1e-3 in class scores, 1e-4 of the bound for an interval), because VNN-LIB's negations are
    non-strict and a point that only touches a bound is not a counterexample."""
    t0 = time.perf_counter()
    if interval_proves(spec, net, bounds):
        return Verdict("verified", "interval", time.perf_counter() - t0)
    x = sample_refute(spec, net)
    if x is not None:
        cex = [float(v) for v in x]
        return Verdict("refuted", "sampling", time.perf_counter() - t0, cex, _confirms(spec, net, x))
    if onnx_path is None:
        return Verdict("unknown", "sampling", time.perf_counter() - t0)
    from tenfold.autospec.bab import Instance, SolveConfig, solve
    from tenfold.autospec.vnnlib import parse_vnnlib

    scale = max([1.0] + [abs(v) for v in (spec.interval or ()) if math.isfinite(v)])
    margin = 1e-3 if spec.classes is not None else 1e-4 * scale
    prop = parse_vnnlib(to_vnnlib(spec, net.n_outputs, margin), "spec")
    left = max(1.0, timeout_s - (time.perf_counter() - t0))
    res = solve(Instance(onnx_path, prop, net, bounds), SolveConfig(timeout_s=left, use_marabou=use_marabou))
    method = {"bounds": "bounds", "marabou": "marabou"}.get(res.method, "splitting")
    if res.status == "holds":
        return Verdict("verified", method, time.perf_counter() - t0)
    if res.status == "violated":
        x = np.array(res.counterexample, np.float64)
        cex = [float(v) for v in x]
        return Verdict("refuted", method, time.perf_counter() - t0, cex, _confirms(spec, net, x))
    return Verdict("unknown", method, time.perf_counter() - t0)


def _confirms(spec: Spec, net: ReluNet, x: np.ndarray) -> bool:
    """The counterexample re-check: x lies in the spec's input region and the network breaks it there."""
    lo, hi = np.array(spec.lo), np.array(spec.hi)
    slack = 1e-6 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))  # float32 rounding of the point
    inside = bool(np.all((x >= lo - slack) & (x <= hi + slack)))
    if spec.A:
        A = np.array(spec.A)
        inside &= bool(np.all(A @ x <= np.array(spec.b) + 1e-6 * np.maximum(1.0, np.abs(A) @ np.abs(x))))
    return inside and violates(spec, net.forward(x[None])[0])


def verify(
    specs: list[Spec], onnx_path: str | Path, timeout_s: float = 30, use_marabou: bool = True
) -> list[Verdict]:
    """Every informative spec against the network in `onnx_path`."""
    net = load_net(onnx_path)
    bounds = Bounds(net)
    out = []
    for s in specs:
        if s.is_unbounded(net.n_outputs if s.classes is not None else 0):
            out.append(Verdict("verified", "trivial", 0.0))
            continue
        if len(s.lo) != net.n_inputs:
            raise TenfoldError(f"spec has {len(s.lo)} inputs, the network {net.n_inputs}")
        out.append(verify_spec(s, net, onnx_path, timeout_s, use_marabou, bounds))
    return out
