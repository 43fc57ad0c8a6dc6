"""Competition-style verification instances built here: ACAS-Xu-shaped controller networks and
VNN-LIB properties in the competitions' forms, with an `onnx,vnnlib,timeout` CSV.

The networks copy the shape of the ACAS Xu benchmark (5 inputs, 6 hidden ReLU layers of 50, 5
advisory scores) and its graph plumbing (inputs normalised inside the graph by Add and Mul before the
first Gemm), written in the ONNX subset plain Marabou's reader accepts so that both verifiers run on
the same files. They are trained for a few seconds to imitate a synthetic advisory function (turn
away from an intruder the closer it is), which gives them the structure of a trained controller rather
than random weights. The properties follow ACAS Xu's forms:
  * `upper`: in a region, output 0 stays below a threshold (counterexample: Y_0 >= t);
  * `not-max`: the advisory the network picks least often in the region is never the largest score
    (counterexample: Y_c >= Y_j for every other j);
  * `one-of`: the chosen advisory is one of the two it picks most often (a disjunction: some other
    advisory scores at least both).
Thresholds and advisories are set from a dense sample of the network on the region, so that some
properties hold by a small margin (hard) and others are broken only in a small part of it.

The image family is mnist_fc's form at 8 x 8: a fully connected classifier of noisy template images
and L-infinity robustness properties around held-out images, one disjunct per other class.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tenfold.autospec.nets import export_onnx

N_IN, N_OUT = 5, 5
LO, HI = np.zeros(N_IN), np.array([10.0, 6.28, 6.28, 10.0, 10.0])  # range, bearing, heading, speeds


def advisory_scores(X: np.ndarray) -> np.ndarray:
    """The synthetic teacher: five advisory scores (clear, weak left/right, strong left/right); the
    closer the intruder and the more head-on, the stronger the turn away from its bearing."""
    rng_, bearing, heading, v_own, v_int = X.T
    threat = np.exp(-rng_ / 3.0) * (1 + 0.3 * np.cos(heading)) * (1 + 0.05 * (v_own + v_int))
    side = np.sin(bearing)  # > 0: intruder on the left, turn right
    return np.stack(
        [
            1.5 - 2.5 * threat,
            threat * (0.8 - side) * 0.8,
            threat * (0.8 + side) * 0.8,
            threat * (1.4 - 2 * side) - 0.4,
            threat * (1.4 + 2 * side) - 0.4,
        ],
        1,
    )


class Controller(nn.Module):
    """Add(-mean) and Mul(scale) in the graph, then 6 x 50 ReLU layers (Gemm)."""

    def __init__(self, hidden: int = 50, layers: int = 6, sub: bool = False):
        super().__init__()
        # x + (-mean), not x - mean, unless `sub`: maraboupy 2.0.0 encodes Sub by a constant as x + c
        # (checked with its own evaluateWithMarabou), so plain Marabou would verify another network
        self.sub = sub
        self.register_buffer("mean", torch.tensor(((LO + HI) / 2)[None], dtype=torch.float32))
        self.register_buffer("shift", -self.mean.clone())
        self.register_buffer("scale", torch.tensor(0.25))  # one scalar: what Marabou's Mul reads
        sizes = [N_IN] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False))
        self.out = nn.Linear(hidden, N_OUT)

    def forward(self, x):
        h = ((x - self.mean) if self.sub else (x + self.shift)) * self.scale
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return self.out(h)


def train_controller(
    seed: int, steps: int = 600, hidden: int = 50, layers: int = 6, sub: bool = False
) -> Controller:
    g = np.random.default_rng(seed)
    X = g.uniform(LO, HI, (4000, N_IN))
    Y = advisory_scores(X)
    torch.manual_seed(seed)
    net = Controller(hidden, layers, sub)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(net(xt), yt).backward()
        opt.step()
    return net.eval()


def _header(lo: np.ndarray, hi: np.ndarray) -> list[str]:
    lines = [f"(declare-const X_{i} Real)" for i in range(N_IN)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(N_OUT)]
    for i in range(N_IN):
        lines += [f"(assert (>= X_{i} {lo[i]:.6f}))", f"(assert (<= X_{i} {hi[i]:.6f}))"]
    return lines


@dataclass
class Made:
    name: str
    text: str  # the VNN-LIB property


def properties(net: nn.Module, seed: int, per_kind: int = 2) -> list[Made]:
    """`per_kind` properties of each form on random regions of the input space."""
    g = np.random.default_rng(1000 + seed)
    out: list[Made] = []

    def forward(X):
        with torch.no_grad():
            return net(torch.tensor(X, dtype=torch.float32)).numpy().astype(np.float64)

    for k in range(per_kind):
        for kind in ("upper", "not-max", "one-of"):
            width = g.uniform(0.08, 0.25) * (HI - LO)
            lo = g.uniform(LO, HI - width)
            hi = lo + width
            Y = forward(g.uniform(lo, hi, (20000, N_IN)))
            lines = _header(lo, hi)
            tight = k % 2 == 0  # every other property: a tight margin, so bounds alone do not prove it
            if kind == "upper":
                span = Y[:, 0].max() - Y[:, 0].min()
                t = Y[:, 0].max() + (0.02 if tight else 0.15) * span
                lines.append(f"(assert (>= Y_0 {t:.6f}))")
            elif kind == "not-max":
                cls = int(np.bincount(Y.argmax(1), minlength=N_OUT).argmin())  # the rarest winner
                lines.append(
                    "(assert (and " + " ".join(f"(>= Y_{cls} Y_{j})" for j in range(N_OUT) if j != cls) + "))"
                )
            else:
                top = np.argsort(-np.bincount(Y.argmax(1), minlength=N_OUT))[:2]
                others = [j for j in range(N_OUT) if j not in top]
                terms = ["(and " + " ".join(f"(>= Y_{j} Y_{a})" for a in top) + ")" for j in others]
                lines.append("(assert (or " + " ".join(terms) + "))")
            out.append(Made(f"prop_{kind}_{k}", "\n".join(lines) + "\n"))
    return out


# --- the image family: L-infinity robustness of a small fully connected classifier (mnist_fc's shape) ---

IMG, CLASSES = 8, 10  # 8 x 8 images, 10 classes


class ImageClassifier(nn.Module):
    """(1, 1, 8, 8) image -> Flatten -> Add(-0.5) -> Mul(2) -> 2 x 32 ReLU (Gemm) -> 10 scores."""

    def __init__(self, hidden: int = 32, layers: int = 2):
        super().__init__()
        self.register_buffer("shift", torch.tensor(-0.5))
        self.register_buffer("scale", torch.tensor(2.0))
        sizes = [IMG * IMG] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False))
        self.out = nn.Linear(hidden, CLASSES)

    def forward(self, x):
        h = (x.flatten(1) + self.shift) * self.scale
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return self.out(h)


def images(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of ten fixed random 8 x 8 templates (pixels in [0, 1]), and their classes."""
    templates = np.random.default_rng(7).uniform(0, 1, (CLASSES, IMG * IMG))
    g = np.random.default_rng(seed)
    y = g.integers(0, CLASSES, n)
    X = np.clip(templates[y] + g.normal(0, 0.35, (n, IMG * IMG)), 0, 1)
    return X, y


def train_classifier(seed: int, steps: int = 300) -> ImageClassifier:
    X, y = images(seed, 3000)
    torch.manual_seed(seed)
    net = ImageClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt = torch.tensor(X, dtype=torch.float32).reshape(-1, 1, IMG, IMG)
    yt = torch.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return net.eval()


def robustness(net: nn.Module, seed: int, count: int, eps: tuple[float, ...]) -> list[Made]:
    """L-infinity robustness around correctly classified held-out images, the competitions' form:
    the box [x - eps, x + eps] clipped to [0, 1], counterexample when another class scores at least
    the true one (a disjunction over the other classes)."""
    X, y = images(10_000 + seed, 200)
    with torch.no_grad():
        pred = net(torch.tensor(X, dtype=torch.float32).reshape(-1, 1, IMG, IMG)).argmax(1).numpy()
    picks = np.flatnonzero(pred == y)[:count]
    out = []
    for n, i in enumerate(picks):
        e = eps[n % len(eps)]
        lo, hi = np.clip(X[i] - e, 0, 1), np.clip(X[i] + e, 0, 1)
        lines = [f"(declare-const X_{k} Real)" for k in range(IMG * IMG)]
        lines += [f"(declare-const Y_{j} Real)" for j in range(CLASSES)]
        for k in range(IMG * IMG):
            lines += [f"(assert (>= X_{k} {lo[k]:.6f}))", f"(assert (<= X_{k} {hi[k]:.6f}))"]
        terms = [f"(and (>= Y_{j} Y_{y[i]}))" for j in range(CLASSES) if j != y[i]]
        lines.append("(assert (or " + " ".join(terms) + "))")
        out.append(Made(f"robust_{n}_eps{e:g}", "\n".join(lines) + "\n"))
    return out


def build(
    out_dir: str | Path,
    controllers: int = 3,
    per_kind: int = 2,
    images: int = 1,
    robust: int = 8,
    eps: tuple[float, ...] = (0.02, 0.05, 0.08, 0.12, 0.2),
    sub_controllers: int = 0,
    timeout_s: int = 60,
    seed: int = 0,
    steps: int = 600,
    hidden: int = 50,
    layers: int = 6,
) -> Path:
    """Write the networks, their properties and `instances.csv` (onnx,vnnlib,timeout) to out_dir:
    `controllers` ACAS-shaped networks with `per_kind` properties of each form, `images` image
    classifiers with `robust` robustness properties each (eps cycling through `eps`). With
    `sub_controllers`, also Sub-normalised controllers and their properties in `instances_sub.csv`
    (the files on which plain Marabou 2.0.0 reads another network)."""
    out = Path(out_dir)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "vnnlib").mkdir(parents=True, exist_ok=True)
    rows, sub_rows = [], []

    def add(rows, onnx_path: Path, made: list[Made], prefix: str):
        for p in made:
            v = out / "vnnlib" / f"{prefix}_{p.name}.vnnlib"
            v.write_text(p.text)
            rows.append([str(onnx_path.relative_to(out)), str(v.relative_to(out)), timeout_s])

    for n in range(controllers):
        net = train_controller(seed + n, steps, hidden, layers)
        add(
            rows,
            export_onnx(net, N_IN, out / "onnx" / f"controller_{n}.onnx"),
            properties(net, seed + n, per_kind),
            f"controller_{n}",
        )
    for n in range(images):
        net = train_classifier(seed + n)
        add(
            rows,
            export_onnx(net, (1, 1, IMG, IMG), out / "onnx" / f"image_{n}.onnx"),
            robustness(net, seed + n, robust, eps),
            f"image_{n}",
        )
    for n in range(sub_controllers):
        net = train_controller(seed + 100 + n, steps, hidden, layers, sub=True)
        path = export_onnx(net, N_IN, out / "onnx" / f"subnorm_{n}.onnx")
        add(sub_rows, path, properties(net, seed + 100 + n, per_kind), f"subnorm_{n}")
    for name, rs in (("instances.csv", rows), ("instances_sub.csv", sub_rows)):
        if rs:
            with open(out / name, "w", newline="") as f:
                csv.writer(f).writerows(rs)
    return out / "instances.csv"
