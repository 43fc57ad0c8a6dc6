import math

import numpy as np
import pytest
import torch

from tenfold.autospec.generate import GenConfig, autospec
from tenfold.autospec.nets import export_onnx
from tenfold.autospec.spec import Spec, to_vnnlib
from tenfold.autospec.systems import simulate
from tenfold.autospec.verify import verify
from tenfold.autospec.vnnlib import parse_vnnlib
from tenfold.core.errors import TenfoldError

HALF_SUM = dict(A=((1.0, 1.0),), b=(1.0,))  # x0 + x1 <= 1 inside [0, 1]^2


def test_polytope_covers_round_trips_and_validates():
    s = Spec((0.0, 0.0), (1.0, 1.0), interval=(-math.inf, 1.2), **HALF_SUM)
    X = np.array([[0.2, 0.3], [0.9, 0.9], [1.5, 0.0]])
    assert s.covers(X).tolist() == [True, False, False]
    assert Spec.from_dict(s.to_dict()) == s
    text = to_vnnlib(s, 1)
    prop = parse_vnnlib(text)
    (region,) = prop.regions
    assert prop.n_outputs == 1 and np.allclose(region.A_in, [[1.0, 1.0]]) and np.allclose(region.b_in, [1.0])
    with pytest.raises(TenfoldError):
        Spec((0.0, 0.0), (1.0, 1.0), classes=frozenset({0}), A=((1.0,),), b=(1.0,))


def test_marabou_and_sampling_respect_the_polytope(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0]]))
        net[0].bias.zero_()
    path = export_onnx(net, 2, tmp_path / "sum.onnx")
    box_only = Spec((0.0, 0.0), (1.0, 1.0), interval=(-math.inf, 1.2))
    cut = Spec((0.0, 0.0), (1.0, 1.0), interval=(-math.inf, 1.2), **HALF_SUM)
    v_box, v_cut = verify([box_only, cut], path, timeout_s=20)
    assert v_box.status == "refuted" and v_box.rechecked  # (1, 1) gives 2 > 1.2
    # inside x0 + x1 <= 1 it holds: the bounds over the box cannot see that, the complete engine can
    assert v_cut.status == "verified" and v_cut.method in ("splitting", "marabou")


def test_generated_polytopes_cover_the_generation_points_they_came_from():
    data = simulate("throughput", 20, 60, 0)
    boxes = autospec(data)
    polys = autospec(data, GenConfig(polytope=True))
    assert len(boxes) == len(polys)
    for b, p in zip(boxes, polys, strict=True):
        assert p.A and (b.covers(data.X) == p.covers(data.X)).all()  # same points, smaller region


def test_margin_asks_for_a_strict_violation():
    s = Spec((0.0,), (1.0,), interval=(0.5, 2.0))
    assert "(<= Y_0 0.500000000)" in to_vnnlib(s, 1)
    text = to_vnnlib(s, 1, margin=0.01)
    assert "(<= Y_0 0.490000000)" in text and "(>= Y_0 2.010000000)" in text
    c = Spec((0.0,), (1.0,), classes=frozenset({0}))
    assert "(>= (- Y_1 Y_0) 0.010000000)" in to_vnnlib(c, 2, margin=0.01)


def test_output_touching_a_bound_is_not_a_counterexample(tmp_path):
    # y = x0 + x1 inside x0 + x1 <= 1: the spec y in [0, 1] holds, though y reaches 1 exactly; interval
    # bounds over the box ([0, 2]) cannot show it and sampling cannot refute it, so Marabou decides
    net = torch.nn.Sequential(torch.nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0]]))
        net[0].bias.zero_()
    path = export_onnx(net, 2, tmp_path / "sum.onnx")
    cut = Spec((0.0, 0.0), (1.0, 1.0), interval=(0.0, 1.0), **HALF_SUM)
    (v,) = verify([cut], path, timeout_s=20)
    assert v.status == "verified" and v.method == "marabou"
