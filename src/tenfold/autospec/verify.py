"""Verify specifications against a ReLU network: a fast pre-check here, Marabou for the rest, and every
counterexample re-checked by running the network.

Per spec, in order:
1. interval bound propagation through the network (IBP; the last layer is applied symbolically to the
   output differences y_i - y_j, which is exact for that layer) proves it when the bounds suffice;
2. random points and the corners of the box, run through the network, refute it when one violates;
3. otherwise Marabou decides it from the ONNX file and the VNN-LIB property (`unsat`: holds; `sat`:
   a counterexample), within a time limit (`unknown` past it).
A counterexample (from 2 or 3) counts only if the network, run on it, really leaves the allowed set.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tenfold.autospec.spec import Spec, read_vnnlib_box, read_vnnlib_polytope, strip_linear_rows, to_vnnlib
from tenfold.core.errors import TenfoldError

SUPPORTED_OPS = {"Gemm", "Relu", "Flatten", "Identity", "MatMul", "Add"}


@dataclass
class Verdict:
    status: str  # "verified", "refuted" or "unknown"
    method: str  # "interval", "sampling" or "marabou"
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


def onnx_layers(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) per affine layer of an ONNX MLP (Gemm, or MatMul + Add), ReLU between layers. Raises a
    TenfoldError naming the first unsupported operator."""
    onnx = require("onnx")
    numpy_helper = require("onnx.numpy_helper")

    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise TenfoldError(f"ONNX file {path} does not exist") from None
    except Exception as e:  # onnx raises DecodeError and others for non-ONNX files
        raise TenfoldError(f"{path} is not an ONNX model: {e}") from None
    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    pending: np.ndarray | None = None
    for node in model.graph.node:
        if node.op_type not in SUPPORTED_OPS:
            raise TenfoldError(
                f"unsupported ONNX operator {node.op_type!r} in {path}; supported: {sorted(SUPPORTED_OPS)}"
            )
        if node.op_type == "Identity" and node.input[0] in init:  # the exporter shares equal tensors
            init[node.output[0]] = init[node.input[0]]
        elif node.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            w = init[node.input[1]]
            w = w if attrs.get("transB", 0) else w.T
            b = init[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0])
            layers.append((w * attrs.get("alpha", 1.0), b * attrs.get("beta", 1.0)))
        elif node.op_type == "MatMul":
            pending = init[node.input[1]].T
        elif node.op_type == "Add" and pending is not None:
            bias = init.get(node.input[1], init.get(node.input[0]))
            layers.append((pending, bias))
            pending = None
    if not layers:
        raise TenfoldError(f"{path}: no affine layers found")
    return layers


def _forward(layers, X: np.ndarray) -> np.ndarray:
    h = np.asarray(X, np.float64)
    for k, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if 0 < k < len(layers) - 1:  # no ReLU after the fixed standardisation layer, nor the output
            h = np.maximum(h, 0.0)
    return h


def _relu_after(layers) -> list[bool]:
    """Which affine layers are followed by a ReLU (our MLPs: all but the first and the last)."""
    return [0 < k < len(layers) - 1 for k in range(len(layers))]


def interval_proves(spec: Spec, layers, relu_after: list[bool] | None = None) -> bool:
    relu_after = relu_after or _relu_after(layers)
    lo, hi = np.array(spec.lo, np.float64), np.array(spec.hi, np.float64)
    for k, (w, b) in enumerate(layers[:-1]):
        c, r = (lo + hi) / 2, (hi - lo) / 2
        mid, rad = w @ c + b, np.abs(w) @ r
        lo, hi = mid - rad, mid + rad
        if relu_after[k]:
            lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
    w, b = layers[-1]

    def lower(v: np.ndarray, c0: float) -> float:  # min over the box of v·h + c0
        return float(np.where(v > 0, v * lo, v * hi).sum() + c0)

    if spec.classes is not None:
        others = [j for j in range(w.shape[0]) if j not in spec.classes]
        return all(any(lower(w[i] - w[j], b[i] - b[j]) > 0 for i in spec.classes) for j in others)
    ylo = lower(w[0], b[0])
    yhi = -lower(-w[0], -b[0])
    return spec.interval[0] <= ylo and yhi <= spec.interval[1]


def violates(spec: Spec, y_row: np.ndarray, tol: float = 1e-6) -> bool:
    """Does this output break the spec by more than float noise (`tol`, relative to the bound)?"""
    if spec.classes is not None:
        allowed = max(y_row[i] for i in spec.classes)
        return bool(max(y_row) > allowed + tol * max(1.0, abs(allowed)))
    lo, hi = spec.interval
    return bool(y_row[0] < lo - tol * max(1.0, abs(lo)) or y_row[0] > hi + tol * max(1.0, abs(hi)))


def sample_refute(spec: Spec, layers, n: int = 512, seed: int = 0) -> np.ndarray | None:
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
    out = _forward(layers, pts)
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


@contextlib.contextmanager
def _quiet_fd():
    """Marabou's C++ core prints to the process's stdout; silence it for the call."""
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def marabou_check_file(
    onnx_path: str | Path, property_path: str | Path, timeout_s: int = 30
) -> tuple[str, np.ndarray | None]:
    """Marabou on an ONNX network and a VNN-LIB property: ("verified" | "refuted" | "unknown", input).

    Marabou's own VNN-LIB reader rejects general linear input constraints such as
    (<= (+ (* 0.5 X_0) (* -1 X_1)) 2); those rows are read here, taken out of the file Marabou sees
    and given to it through its API (`addInequality`) instead."""
    import warnings

    with warnings.catch_warnings():  # Marabou only warns when its ONNX reader lacks onnx or onnxruntime
        warnings.simplefilter("ignore")
        require("onnx")
        require("onnxruntime")
        Marabou = require("maraboupy.Marabou")

    text = Path(property_path).read_text()
    read_vnnlib_box(text)  # a clear error for a malformed property before Marabou sees it
    A, b = read_vnnlib_polytope(text)
    with tempfile.TemporaryDirectory() as tmp:
        prop = Path(property_path)
        if len(A):
            prop = Path(tmp) / "box.vnnlib"
            prop.write_text(strip_linear_rows(text))
        with _quiet_fd():
            net = Marabou.read_onnx(str(onnx_path))
            xs = [int(v) for v in np.asarray(net.inputVars[0]).flatten()]
            for row, bound in zip(A, b, strict=True):
                nz = [i for i, a in enumerate(row) if a != 0]
                net.addInequality([xs[i] for i in nz], [float(row[i]) for i in nz], float(bound))
            code, vals, _ = net.solve(
                propertyFilename=str(prop),
                options=Marabou.createOptions(timeoutInSeconds=timeout_s, verbosity=0),
                verbose=False,
            )
    if code == "unsat":
        return "verified", None
    if code == "sat":
        return "refuted", np.array([vals[i] for i in xs])
    return "unknown", None


def marabou_check(
    spec: Spec, onnx_path: str | Path, n_out: int, timeout_s: int = 30, margin: float = 0.0
) -> tuple[str, np.ndarray | None]:
    with tempfile.TemporaryDirectory() as tmp:
        prop = Path(tmp) / "p.vnnlib"
        prop.write_text(to_vnnlib(spec, n_out, margin))
        return marabou_check_file(onnx_path, prop, timeout_s)


def verify_spec(
    spec: Spec,
    layers,
    onnx_path: str | Path | None,
    n_out: int,
    timeout_s: int = 30,
    use_marabou: bool = True,
) -> Verdict:
    t0 = time.perf_counter()
    if interval_proves(spec, layers):
        return Verdict("verified", "interval", time.perf_counter() - t0)
    x = sample_refute(spec, layers)
    method = "sampling"
    if x is None and use_marabou and onnx_path is not None:
        status, x = marabou_check(spec, onnx_path, n_out, timeout_s)
        method = "marabou"
        if status != "refuted":
            return Verdict(status, method, time.perf_counter() - t0)
    if x is None:
        return Verdict("unknown", method, time.perf_counter() - t0)
    confirmed = _confirms(spec, layers, x)
    if not confirmed and method == "marabou":
        # VNN-LIB negations are non-strict (y <= lo, Y_j >= Y_i), so Marabou may return a point where
        # the output only touches a bound or two scores tie. Ask again for a violation by a hair:
        # unsat there means the spec holds (up to that tolerance); a new point must pass the re-check.
        # the margin sits well above `violates`' float-noise tolerance and Marabou's own precision
        scale = max([1.0] + [abs(v) for v in (spec.interval or ()) if math.isfinite(v)])
        margin = 1e-3 if spec.classes is not None else 1e-4 * scale
        status, x2 = marabou_check(spec, onnx_path, n_out, timeout_s, margin=margin)
        if status == "verified":
            return Verdict("verified", "marabou", time.perf_counter() - t0)
        if status == "refuted" and x2 is not None and _confirms(spec, layers, x2):
            return Verdict("refuted", method, time.perf_counter() - t0, [float(v) for v in x2], True)
        return Verdict("unknown", method, time.perf_counter() - t0)
    return Verdict("refuted", method, time.perf_counter() - t0, [float(v) for v in x], confirmed)


def _confirms(spec: Spec, layers, x: np.ndarray) -> bool:
    """The counterexample re-check: x lies in the spec's input region and the network breaks it there."""
    inside = bool(np.all((x >= np.array(spec.lo) - 1e-6) & (x <= np.array(spec.hi) + 1e-6)))
    if spec.A:
        inside &= bool(np.all(np.array(spec.A) @ x <= np.array(spec.b) + 1e-6))
    return inside and violates(spec, _forward(layers, x[None])[0])


def verify(
    specs: list[Spec], onnx_path: str | Path, timeout_s: int = 30, use_marabou: bool = True
) -> list[Verdict]:
    """Every informative spec against the network in `onnx_path`."""
    layers = onnx_layers(onnx_path)
    n_out = layers[-1][0].shape[0]
    out = []
    for s in specs:
        if s.is_unbounded(n_out if s.classes is not None else 0):
            out.append(Verdict("verified", "trivial", 0.0))
            continue
        if len(s.lo) != layers[0][0].shape[1]:
            raise TenfoldError(f"spec has {len(s.lo)} inputs, the network {layers[0][0].shape[1]}")
        out.append(verify_spec(s, layers, onnx_path, n_out, timeout_s, use_marabou))
    return out
