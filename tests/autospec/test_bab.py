"""The complete engine on networks whose answers are known by construction, the bounds it rests on,
and agreement with plain maraboupy on the same files."""

import numpy as np
import pytest
import torch
from torch import nn

from tenfold.autospec.bab import Instance, SolveConfig, solve
from tenfold.autospec.bounds import Bounds
from tenfold.autospec.nets import export_onnx
from tenfold.autospec.relunet import ReluNet
from tenfold.autospec.vnnlib import parse_vnnlib


class Normalised(nn.Module):
    """y0 = relu(u) - relu(-u) = u and y1 = relu(u) + relu(-u) = |u|, with u = (x0 - 2) / 4 computed in
    the graph (Sub, Div) and x1 unused: outputs known in closed form."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([[2.0, 0.0]]))
        self.register_buffer("std", torch.tensor([[4.0, 1.0]]))
        self.hidden = nn.Linear(2, 2)
        self.out = nn.Linear(2, 2)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])), self.hidden.bias.zero_()
            self.out.weight.copy_(torch.tensor([[1.0, -1.0], [1.0, 1.0]])), self.out.bias.zero_()

    def forward(self, x):
        return self.out(torch.relu(self.hidden((x - self.mean) / self.std)))


@pytest.fixture(scope="module")
def normalised(tmp_path_factory):
    path = tmp_path_factory.mktemp("n") / "norm.onnx"
    return export_onnx(Normalised(), 2, path)


HARD = "(and (>= Y_0 0.45) (<= Y_1 0.3))"


def prop(x0, cond: str) -> str:
    return (
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
        f"(assert (>= X_0 {x0[0]}))\n(assert (<= X_0 {x0[1]}))\n(assert (>= X_1 -1))\n(assert (<= X_1 1))\n"
        f"(assert {cond})\n"
    )


@pytest.mark.parametrize(
    "x0, cond, expected",
    [
        ((0, 4), "(>= Y_0 0.6)", "holds"),  # u <= 0.5 on [0, 4]
        ((0, 5), "(>= Y_0 0.6)", "violated"),  # u = 0.75 at x0 = 5
        # disjunctive: |u| >= 0.6 or u <= -0.45; on [0, 4] u is in [-0.5, 0.5]: the second branch hits
        ((0, 4), "(or (and (>= Y_1 0.6)) (and (<= Y_0 -0.45)))", "violated"),
        ((0.4, 4), "(or (and (>= Y_1 0.6)) (and (<= Y_0 -0.45)))", "holds"),  # u >= -0.4 there
        # |u| >= 0.45 and u >= 0: only x0 >= 3.8, outside [0, 3.7]
        ((0, 3.7), "(and (>= Y_1 0.45) (>= Y_0 0))", "holds"),
    ],
)
def test_known_answers_with_normalisation_and_disjunctions(normalised, x0, cond, expected):
    inst = Instance(normalised, parse_vnnlib(prop(x0, cond)))
    res = solve(inst, SolveConfig(timeout_s=20))
    assert res.status == expected, res
    if expected == "violated":  # the reported point reproduces in onnxruntime and breaks the property
        x = np.array(res.counterexample)
        u = (x[0] - 2) / 4
        assert np.allclose(res.output, [u, abs(u)], atol=1e-5)
        assert u >= 0.6 - 1e-6 or abs(u) >= 0.6 - 1e-6 or u <= -0.45 + 1e-6


def test_unknown_is_never_reported_as_holds(normalised):
    # u >= 0.45 and |u| <= 0.3 at once is impossible, but each row alone is possible somewhere, so
    # bounds on the whole box cannot rule it out: it holds, and only splitting or Marabou show it
    text = prop((0, 4), HARD)
    off = SolveConfig(timeout_s=5, split=False, use_marabou=False)
    res = solve(Instance(normalised, parse_vnnlib(text)), off)
    assert res.status == "unknown" and "Marabou off" in res.reason
    res = solve(Instance(normalised, parse_vnnlib(text)), SolveConfig(timeout_s=1e-6))
    assert res.status == "unknown" and res.reason == "timeout"
    assert solve(Instance(normalised, parse_vnnlib(text)), SolveConfig(timeout_s=20)).status == "holds"


def test_marabou_pieces_decide_what_bounds_and_attack_leave(normalised):
    # without splitting the loose bound leaves the whole box to Marabou, run in a worker process
    res = solve(
        Instance(normalised, parse_vnnlib(prop((0, 4), HARD))), SolveConfig(timeout_s=20, split=False)
    )
    assert (res.status, res.method) == ("holds", "marabou") and res.stats["marabou_pieces"] >= 1


def test_bounds_are_sound_and_crown_is_tighter_than_intervals():
    rng = np.random.default_rng(0)
    sizes = [4, 16, 16, 16, 3]
    W = [rng.normal(size=(b, a)) / np.sqrt(a) for a, b in zip(sizes, sizes[1:], strict=False)]
    B = [rng.normal(size=b) * 0.1 for b in sizes[1:]]
    net, bounds = ReluNet(W, B), Bounds(ReluNet(W, B))
    lo = rng.uniform(-1, 0, (20, 4))
    hi = lo + rng.uniform(0.05, 1.0, (20, 4))
    C, d = rng.normal(size=(5, 3)), rng.normal(size=5)
    crown, _ = bounds.lower(lo, hi, C, d)
    ibp = bounds.interval_lower(lo, hi, C, d)
    for i in range(20):
        vals = net.forward(rng.uniform(lo[i], hi[i], (4000, 4))) @ C.T + d
        assert (vals.min(0) >= crown[i] - 1e-9).all()  # sound
    assert (crown >= ibp - 1e-9).mean() > 0.9 and (crown - ibp).mean() > 0


def test_bounds_are_exact_when_every_relu_is_stable():
    # on a box where every hidden unit stays active the network is affine and CROWN's bound is its minimum
    W = [np.array([[1.0, 2.0], [0.5, -1.0]]), np.array([[1.0, -3.0]])]
    B = [np.array([10.0, 10.0]), np.array([0.0])]
    net = ReluNet(W, B)
    lo, hi = np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]])
    low, _ = Bounds(net).lower(lo, hi, np.eye(1), np.zeros(1))
    corners = np.array([[a, b] for a in (0, 1) for b in (0, 1)], float)
    assert low[0, 0] == pytest.approx(net.forward(corners).min())


def test_agrees_with_plain_marabou_on_competition_style_instances(tmp_path):
    """Both engines on the same ONNX and VNN-LIB files (small controllers so that Marabou is quick):
    wherever plain Marabou decides, the answers match."""
    from tenfold.autospec import competition
    from tenfold.autospec.instances import compare, read_instances, run_instances

    csv_path = competition.build(
        tmp_path, controllers=1, per_kind=2, images=0, timeout_s=20, hidden=12, layers=2, steps=150
    )
    rows = read_instances(csv_path)
    ours = run_instances(rows, "tenfold", quiet=True)
    theirs = run_instances(rows, "marabou", quiet=True)
    agreement = compare(ours, theirs)
    assert agreement["both_decided"] >= 4 and agreement["disagree"] == 0, (ours, theirs)
    assert all(r["rechecked"] for r in ours if r["result"] == "violated")
