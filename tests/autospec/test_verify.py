"""Verification against hand-built networks whose outputs are known in closed form."""

import numpy as np
import pytest
import torch
from torch import nn

from tenfold.autospec.nets import export_onnx
from tenfold.autospec.spec import Spec
from tenfold.autospec.verify import bounds_prove, interval_proves, load_net, verify
from tenfold.core.errors import TenfoldError


def net_two_classes() -> nn.Sequential:
    """Identity input layer, then y0 = relu(x) - relu(-x) ≈ x (class 0 wins for x > 0), y1 = 0."""
    first = nn.Linear(1, 1)
    hidden = nn.Linear(1, 2)
    mid = nn.Linear(2, 2)
    out = nn.Linear(2, 2)
    with torch.no_grad():
        first.weight.fill_(1.0), first.bias.zero_()
        hidden.weight.copy_(torch.tensor([[1.0], [-1.0]])), hidden.bias.zero_()
        mid.weight.copy_(torch.eye(2)), mid.bias.zero_()
        out.weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 0.0]])), out.bias.zero_()
    return nn.Sequential(first, hidden, nn.ReLU(), mid, nn.ReLU(), out)


def test_interval_check_proves_and_marabou_refutes_with_a_real_counterexample(tmp_path):
    path = export_onnx(net_two_classes(), 1, tmp_path / "n.onnx")
    net = load_net(path)
    holds = Spec((0.5,), (2.0,), classes=frozenset({0}))  # x > 0 there: class 0 always
    broken = Spec((-1.0,), (2.0,), classes=frozenset({0}))  # x < 0 part: class 1
    assert interval_proves(holds, net) and not interval_proves(broken, net)
    v_hold, v_broken = verify([holds, broken], path, timeout_s=10)
    assert (v_hold.status, v_hold.method) == ("verified", "interval")
    assert v_broken.status == "refuted" and v_broken.rechecked and v_broken.counterexample[0] < 0


def test_linear_bounds_prove_what_intervals_cannot(tmp_path):
    # y0 = relu(x) + relu(-x) = |x|: on [-1, 1] intervals give y0 in [0, 2]; CROWN's chords give
    # (x + 1)/2 + (1 - x)/2 = 1, the true maximum
    net = net_two_classes()
    with torch.no_grad():
        net[5].weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    path = export_onnx(net, 1, tmp_path / "abs.onnx")
    spec = Spec((-1.0,), (1.0,), interval=(-0.1, 1.05))
    assert not interval_proves(spec, load_net(path)) and bounds_prove(spec, load_net(path))
    (v,) = verify([spec], path, timeout_s=10)
    assert (v.status, v.method) == ("verified", "bounds")
    (w,) = verify([Spec((-1.0,), (1.0,), interval=(-0.1, 0.9))], path, timeout_s=10)
    assert w.status == "refuted" and w.rechecked and abs(w.counterexample[0]) > 0.9


def test_a_spec_the_bounds_cannot_prove_goes_to_the_complete_engine(tmp_path):
    # y0 = relu(relu(x) - relu(x - 0.5)): on [-1, 1] the truth is [0, 0.5]; CROWN over the whole box
    # bounds it by the chord of relu(x), up to 1; split boxes make the ReLUs stable and the bounds exact
    first, hidden, mid, out = nn.Linear(1, 1), nn.Linear(1, 2), nn.Linear(2, 1), nn.Linear(1, 1)
    with torch.no_grad():
        first.weight.fill_(1.0), first.bias.zero_()
        hidden.weight.copy_(torch.tensor([[1.0], [1.0]])), hidden.bias.copy_(torch.tensor([0.0, -0.5]))
        mid.weight.copy_(torch.tensor([[1.0, -1.0]])), mid.bias.zero_()
        out.weight.fill_(1.0), out.bias.zero_()
    path = export_onnx(nn.Sequential(first, hidden, nn.ReLU(), mid, nn.ReLU(), out), 1, tmp_path / "v.onnx")
    spec = Spec((-1.0,), (1.0,), interval=(-0.1, 0.55))
    assert not bounds_prove(spec, load_net(path))
    (v,) = verify([spec], path, timeout_s=10)
    assert (v.status, v.method) == ("verified", "splitting")
    (w,) = verify([Spec((-1.0,), (1.0,), interval=(-0.1, 0.45))], path, timeout_s=10)
    assert w.status == "refuted" and w.rechecked and w.counterexample[0] > 0.45


def test_onnx_with_unsupported_ops_is_a_clear_error(tmp_path):
    net = nn.Sequential(nn.Linear(2, 4), nn.Sigmoid(), nn.Linear(4, 1))
    path = export_onnx(net, 2, tmp_path / "sig.onnx")
    with pytest.raises(TenfoldError, match="Sigmoid"):
        load_net(path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(TenfoldError):
        load_net(tmp_path / "junk.onnx")


def test_onnx_reader_matches_torch(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(3, 3), nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)
    )
    path = export_onnx(net, 3, tmp_path / "r.onnx")
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    assert np.allclose(load_net(path).forward(x), net(torch.tensor(x)).detach().numpy(), atol=1e-5)
