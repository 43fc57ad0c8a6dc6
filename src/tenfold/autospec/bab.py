"""Decide a VNN-LIB property on an ONNX ReLU network: tighten bounds, split the input box where they
are loose, attack what is left, and send only the undecided pieces to Marabou, side by side.

Per region of the property (an input box and the output conditions that make a point a
counterexample, a disjunction of conjunctions A y <= b):
1. CROWN bounds (`bounds.Bounds`) over the box: a conjunction is impossible on a box when one of its
   rows has  min (A_i y - b_i) > 0 there; a box is done when every conjunction is impossible on it.
2. A projected-gradient attack on the boxes not done looks for a point satisfying a conjunction; a
   point it finds is run through the network in onnxruntime (float32, the model as the user has it)
   and counts only if it still satisfies the conjunction there.
3. Boxes not done are split in two along the input dimension with the largest |coefficient| x width
   in the bound's linear function (the dimension the bound is most sensitive to), and the children
   go back to 1. This stops when every box is done, or after `bab_share` of the time limit, or
   `max_boxes` boxes; inputs with more than `max_split_dims` dimensions are not split at all
   (splitting a 784-pixel box does not tighten anything in reasonable time).
4. The boxes left (at most `max_pieces`; more, and the whole region goes instead) become Marabou
   queries, one per box and open conjunction, run in parallel worker processes on the compiled
   network (plain Gemm + Relu, so Marabou reads whatever `relunet` reads); a `sat` answer is
   re-checked in onnxruntime like the attack's.
`holds` needs every piece of every region ruled out; `violated` needs a re-checked counterexample;
anything else is `unknown` with the reason. `unknown` is never turned into `holds`.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tenfold.autospec.bounds import Bounds
from tenfold.autospec.marabou_pool import Piece, run_pieces, solve_piece
from tenfold.autospec.relunet import ReluNet, from_onnx
from tenfold.autospec.vnnlib import Property, Region, property_violated_by, read_vnnlib
from tenfold.core.errors import TenfoldError


@dataclass
class SolveConfig:
    timeout_s: float = 60.0  # per instance, everything included
    workers: int | None = None  # Marabou processes at once (None: one per core)
    split: bool = True  # input splitting (False: bounds and attack on the whole box, then Marabou)
    max_split_dims: int = 16
    bab_share: float = 0.5  # share of the time limit bounds + splitting may use before Marabou
    max_boxes: int = 50_000
    batch: int = 512  # boxes bounded at once
    max_pieces: int = 64  # more undecided boxes than this: Marabou gets the whole region instead
    attack_steps: int = 20
    attack_restarts: int = 4
    use_marabou: bool = True
    seed: int = 0


@dataclass
class Result:
    status: str  # "holds", "violated" or "unknown"
    reason: str = ""  # why unknown (or what decided it)
    method: str = ""  # how it was decided: "bounds", "bounds + splitting", "attack", "marabou", ...
    seconds: float = 0.0
    counterexample: list[float] | None = None  # the input (flattened)
    output: list[float] | None = None  # the network's output there, from onnxruntime
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return self.__dict__.copy()


class Instance:
    """A network and a property, ready to decide: the compiled network, its bounds, an onnxruntime
    session of the original file (for re-checks) and the compiled copy Marabou reads."""

    def __init__(
        self,
        onnx_path: str | Path,
        prop: Property | str | Path,
        net: ReluNet | None = None,
        bounds: Bounds | None = None,
    ):
        self.onnx_path = str(onnx_path)
        self.net = net or from_onnx(onnx_path)
        self.prop = prop if isinstance(prop, Property) else read_vnnlib(prop)
        if (self.prop.n_inputs, self.prop.n_outputs) != (self.net.n_inputs, self.net.n_outputs):
            raise TenfoldError(
                f"{self.prop.source} declares {self.prop.n_inputs} inputs / {self.prop.n_outputs} outputs; "
                f"{onnx_path} has {self.net.n_inputs} / {self.net.n_outputs}"
            )
        self.bounds = bounds or Bounds(self.net)

    def recheck(self, x: np.ndarray) -> tuple[bool, np.ndarray]:
        """`recheck` of x against this instance's file and property."""
        return recheck(self.onnx_path, self.prop, x)


def run_onnx(onnx_path: str | Path, x: np.ndarray) -> np.ndarray:
    """The ONNX model on one flattened input, in onnxruntime (float32), its output flattened. The input
    takes the model's declared shape (symbolic batch dimensions set to 1)."""
    sess = _session(str(onnx_path))
    spec = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
    feed = {spec.name: np.asarray(x, np.float32).reshape(shape)}
    return np.asarray(sess.run(None, feed)[0], np.float64).reshape(-1)


def recheck(onnx_path: str | Path, prop: Property, x: np.ndarray) -> tuple[bool, np.ndarray]:
    """Does the network, run in onnxruntime on x as float32 (the point reported), break the property?
    The comparisons allow 1e-6 relative (`property_violated_by`). Returns (verdict, the output)."""
    x32 = np.asarray(x, np.float32).astype(np.float64)
    y = run_onnx(onnx_path, x32)
    return property_violated_by(prop, x32, y), y


_SESSIONS: dict = {}  # (path, mtime) -> onnxruntime session: one per network, not one per property


def _session(path: str):
    key = (path, os.path.getmtime(path))
    if key not in _SESSIONS:
        from tenfold.autospec.verify import require

        ort = require("onnxruntime")
        if len(_SESSIONS) > 16:
            _SESSIONS.clear()
        _SESSIONS[key] = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


def solve(inst: Instance, cfg: SolveConfig | None = None) -> Result:
    """Decide one instance (see the module docstring)."""
    cfg = cfg or SolveConfig()
    t0 = time.monotonic()
    deadline = t0 + cfg.timeout_s
    stats = {"boxes": 0, "max_depth": 0, "marabou_pieces": 0, "attack_hits_not_reproduced": 0}
    methods = set()
    for region in inst.prop.regions:
        res = _solve_region(inst, region, cfg, deadline, stats)
        if res.status != "holds":
            res.seconds, res.stats = time.monotonic() - t0, stats
            return res
        methods.add(res.method)
    method = (
        "marabou"
        if "marabou" in methods
        else ("bounds + splitting" if stats["boxes"] > len(inst.prop.regions) else "bounds")
    )
    return Result("holds", "", method if inst.prop.regions else "empty", time.monotonic() - t0, stats=stats)


def _solve_region(inst: Instance, region: Region, cfg: SolveConfig, deadline: float, stats: dict) -> Result:
    conj = [(np.atleast_2d(A), np.asarray(b, np.float64)) for A, b in region.outputs]
    if any(len(A) == 0 for A, _ in conj):  # an always-true output condition: any point of the region
        return _try_points(
            inst, region, _points_in(region, 16, np.random.default_rng(cfg.seed)), "attack"
        ) or Result(
            "unknown", "no point of the input region satisfies its linear input rows (not proven empty)"
        )
    C = np.vstack([A for A, _ in conj])  # all rows; lower bound of C y - b > 0 rules a row out
    d = -np.concatenate([b for _, b in conj])
    owner = np.concatenate([np.full(len(A), k) for k, (A, _) in enumerate(conj)])
    # box bounds cannot see linear input rows, so splitting a region that has them only prunes boxes
    # wholly outside; such regions go from the first bounds straight to Marabou, which takes the rows
    splitting = cfg.split and inst.net.n_inputs <= cfg.max_split_dims and not len(region.A_in)
    bab_deadline = time.monotonic() + cfg.bab_share * max(0.0, deadline - time.monotonic())
    rng = np.random.default_rng(cfg.seed)

    lo, hi = region.lo[None].copy(), region.hi[None].copy()
    active = np.ones((1, len(conj)), bool)  # conjunctions not yet ruled out, per open box
    depth = np.zeros(1, int)
    done_boxes: list = []  # (lo, hi, active) boxes left when splitting stopped
    while len(lo):
        if time.monotonic() > deadline:
            return Result("unknown", "timeout", "bounds + splitting")
        take = slice(0, cfg.batch)
        blo, bhi, bact, bdep = lo[take], hi[take], active[take], depth[take]
        lo, hi, active, depth = lo[cfg.batch :], hi[cfg.batch :], active[cfg.batch :], depth[cfg.batch :]
        stats["boxes"] += len(blo)
        stats["max_depth"] = max(stats["max_depth"], int(bdep.max()))
        lower, coef = inst.bounds.lower(blo, bhi, C, d)
        ruled_out = np.zeros_like(bact)
        for k in range(len(conj)):
            ruled_out[:, k] = (lower[:, owner == k] > 0).any(1)
        bact = bact & ~ruled_out
        keep = bact.any(1) & _meets_polytope(blo, bhi, region)
        blo, bhi, bact, bdep, coef = blo[keep], bhi[keep], bact[keep], bdep[keep], coef[keep]
        if not len(blo):
            continue
        hit = _attack(inst, blo, bhi, bact, conj, cfg, rng)
        if hit is not None:
            res = _try_points(inst, region, hit[None], "attack")
            if res is not None:
                return res
            stats["attack_hits_not_reproduced"] += 1
        stop = not splitting or time.monotonic() > bab_deadline or stats["boxes"] >= cfg.max_boxes
        if stop:
            done_boxes.append((blo, bhi, bact))
            if not splitting:
                break
            continue
        # split each box along the dimension its open rows are most sensitive to
        rows_open = bact[:, owner]  # (B, rows)
        score = (np.abs(coef) * rows_open[:, :, None]).sum(1) * (bhi - blo)
        dim = score.argmax(1)
        mid = (blo[np.arange(len(blo)), dim] + bhi[np.arange(len(bhi)), dim]) / 2
        left_hi, right_lo = bhi.copy(), blo.copy()
        left_hi[np.arange(len(blo)), dim] = mid
        right_lo[np.arange(len(blo)), dim] = mid
        lo = np.vstack([lo, blo, right_lo])
        hi = np.vstack([hi, left_hi, bhi])
        active = np.vstack([active, bact, bact])
        depth = np.concatenate([depth, bdep + 1, bdep + 1])

    if not done_boxes:
        return Result("holds", "", "bounds")
    blo = np.vstack([b[0] for b in done_boxes])
    bhi = np.vstack([b[1] for b in done_boxes])
    bact = np.vstack([b[2] for b in done_boxes])
    if not cfg.use_marabou:
        return Result(
            "unknown", f"bounds inconclusive on {len(blo)} boxes (Marabou off)", "bounds + splitting"
        )
    if int(bact.sum()) > cfg.max_pieces:  # too many small pieces: Marabou on the whole region instead
        blo, bhi = region.lo[None], region.hi[None]
        bact = bact.any(0, keepdims=True)
    return _marabou(inst, region, blo, bhi, bact, conj, cfg, deadline, stats)


RETRY_MARGINS = (1e-5, 1e-4)  # relative to the bound: Marabou's points satisfy rows to about 1e-6


def _marabou(inst, region, blo, bhi, bact, conj, cfg: SolveConfig, deadline: float, stats: dict) -> Result:
    """The pieces in parallel. A `sat` point that does not reproduce in float32 (it only touches a
    bound) is polished by a short local attack; failing that, the piece is asked again for a violation
    by a margin (`RETRY_MARGINS`). A piece whose last answer is `unsat` at a margin has violations, if
    any, only that close to the bound: `unknown`, never `holds`."""
    pieces = [
        Piece(blo[i], bhi[i], conj[k][0], conj[k][1], region.A_in, region.b_in)
        for i in range(len(blo))
        for k in np.flatnonzero(bact[i])
    ]
    stats["marabou_pieces"] += len(pieces)
    level = [0] * len(pieces)  # per job: how many margins its piece has been tightened by
    origin = list(range(len(pieces)))  # per job: the piece it asks about
    found: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(inst.net.to_onnx(Path(tmp) / "net.onnx"))

        def on_result(i: int, answer) -> tuple[bool, list]:
            code, x = answer
            if code != "sat":
                return False, []
            res = _try_points(inst, region, x[None], "marabou") or _polish(inst, region, x, conj, cfg)
            if res is not None:
                found.append(res)
                return True, []
            if level[i] >= len(RETRY_MARGINS):
                return False, []
            p = pieces[origin[i]]
            margin = RETRY_MARGINS[level[i]] * np.maximum(1.0, np.abs(p.b))
            level.append(level[i] + 1), origin.append(origin[i])
            stats["marabou_retries"] = stats.get("marabou_retries", 0) + 1
            tighter = Piece(p.lo, p.hi, p.A, p.b - margin, p.A_in, p.b_in)
            return False, [(path, tighter, max(0.0, deadline - time.monotonic()))]

        left = max(0.0, deadline - time.monotonic())
        jobs = [(path, p, left) for p in pieces]
        workers = cfg.workers or os.cpu_count() or 1
        answers = run_pieces(solve_piece, jobs, workers, deadline, on_result)
    if found:
        return found[0]
    last = {}  # each piece's latest answer
    for i, (code, _) in enumerate(answers):
        last[origin[i]] = (code, level[i])
    bad = [code for code, lvl in last.values() if code != "unsat"]
    if bad:
        reason = "timeout" if "timeout" in bad or "unknown" in bad else f"marabou: {bad[0]}"
        if "sat" in bad:
            reason = "Marabou's counterexamples do not reproduce in onnxruntime"
        errors = [x for code, x in answers if code == "error"]
        return Result("unknown", reason + (f" ({errors[0]})" if errors else ""), "marabou")
    if any(lvl > 0 for _, lvl in last.values()):
        return Result(
            "unknown", "violations only within 1e-4 of a bound, none that reproduce in float32", "marabou"
        )
    return Result("holds", "", "marabou")


def _meets_polytope(lo: np.ndarray, hi: np.ndarray, region: Region) -> np.ndarray:
    """False for boxes that miss the region's linear input rows A_in x <= b_in altogether (some row's
    minimum over the box exceeds its bound); the box test is sound, not exact."""
    if not len(region.A_in):
        return np.ones(len(lo), bool)
    A = region.A_in
    row_min = lo @ np.clip(A, 0, None).T + hi @ np.clip(A, None, 0).T
    return ~(row_min > region.b_in + 1e-9).any(1)


def _try_points(inst: Instance, region: Region, X: np.ndarray, method: str) -> Result | None:
    """The first point of X that breaks the property when run in onnxruntime, as a `violated` result."""
    for x in X:
        ok, y = inst.recheck(x)
        if ok:
            return Result(
                "violated",
                "counterexample re-checked in onnxruntime",
                method,
                counterexample=[float(v) for v in np.asarray(x, np.float32)],
                output=[float(v) for v in y],
            )
    return None


def _polish(inst: Instance, region: Region, x: np.ndarray, conj, cfg: SolveConfig) -> Result | None:
    """A solver's point that only touches the boundary (it satisfies the conditions in exact arithmetic
    but not after float32 rounding): a short attack in a small box around it, inside the region, looks
    for a point that breaks the property by more than rounding."""
    width = (region.hi - region.lo) * 1e-3
    lo, hi = np.maximum(region.lo, x - width)[None], np.minimum(region.hi, x + width)[None]
    hit = _attack(inst, lo, hi, np.ones((1, len(conj)), bool), conj, cfg, np.random.default_rng(cfg.seed))
    return None if hit is None else _try_points(inst, region, hit[None], "marabou")


def _points_in(region: Region, n: int, rng) -> np.ndarray:
    pts = np.vstack(
        [(region.lo + region.hi)[None] / 2, rng.uniform(region.lo, region.hi, (n, len(region.lo)))]
    )
    if len(region.A_in):
        pts = pts[(pts @ region.A_in.T <= region.b_in + 1e-9).all(1)]
    return pts


def _attack(inst: Instance, lo, hi, act, conj, cfg: SolveConfig, rng) -> np.ndarray | None:
    """Projected sign-gradient descent on  min over open conjunctions of  max_i (A_i y - b_i)  inside
    each box (random starts plus the centre); returns a point where it is < 0 in float64, or None."""
    B, n = lo.shape
    R = cfg.attack_restarts
    lo_t = torch.as_tensor(np.repeat(lo, R + 1, 0))
    hi_t = torch.as_tensor(np.repeat(hi, R + 1, 0))
    x = torch.as_tensor(rng.uniform(0, 1, (B * (R + 1), n))) * (hi_t - lo_t) + lo_t
    x[:: R + 1] = (lo_t[:: R + 1] + hi_t[:: R + 1]) / 2
    mask = torch.as_tensor(np.repeat(act, R + 1, 0))  # (B(R+1), K)
    W = inst.bounds.W
    bias = inst.bounds.b
    A = [torch.tensor(np.array(a)) for a, _ in conj]
    b = [torch.tensor(np.array(v)) for _, v in conj]

    def objective(x):
        h = x
        for k, (w, c) in enumerate(zip(W, bias, strict=True)):
            h = h @ w.T + c
            if k < len(W) - 1:
                h = h.clamp(min=0)
        per = torch.stack([(h @ a.T - v).max(1).values for a, v in zip(A, b, strict=True)], 1)
        return torch.where(mask, per, torch.inf).min(1).values

    step = (hi_t - lo_t) / 4
    for _ in range(cfg.attack_steps):
        x.requires_grad_(True)
        obj = objective(x)
        if (obj < 0).any():
            break
        (g,) = torch.autograd.grad(obj.sum(), x)
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x - step * g.sign(), lo_t), hi_t)
            step = step * 0.8
    with torch.no_grad():
        obj = objective(x.detach())
    i = int(obj.argmin())
    return x[i].detach().numpy() if obj[i] < 0 else None
