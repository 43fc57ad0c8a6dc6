"""The ONNX compiler against onnxruntime on graphs written op by op, and its errors."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from tenfold.autospec.nets import export_onnx
from tenfold.autospec.relunet import from_onnx
from tenfold.core.errors import TenfoldError

RNG = np.random.default_rng(0)


def save(tmp_path, nodes, inits, in_shape, name="g.onnx"):
    """A one-input graph of `nodes`; integer initializers stay int64 (shapes, axes), the rest float32."""

    def tensor(k, v):
        v = np.asarray(v)
        return numpy_helper.from_array(v.astype(np.int64 if v.dtype.kind == "i" else np.float32), k)

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [tensor(k, v) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def agrees_with_onnxruntime(path, in_shape, n=6):
    net = from_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    X = RNG.normal(size=(n, int(np.prod(in_shape)))).astype(np.float32)
    ref = np.stack([sess.run(None, {"X": x.reshape(in_shape)})[0].reshape(-1) for x in X])
    assert np.allclose(net.forward(X), ref, atol=1e-5), np.abs(net.forward(X) - ref).max()
    return net


def test_normalisation_and_shape_ops_and_gemm_flags(tmp_path):
    # (x - m) / s, Transpose to a column, Gemm with transA, transB, alpha and beta, Relu, Unsqueeze,
    # Squeeze, Reshape to a vector, MatMul and Add, Mul and a final Sub of a constant from it
    inits = {
        "m": RNG.normal(size=(1, 4)),
        "s": RNG.uniform(0.5, 2, size=(1, 4)),
        "W": RNG.normal(size=(3, 4)),
        "C": RNG.normal(size=(3,)),
        "axes": np.array([0], np.int64),
        "shape64": np.array([3], np.int64),
        "V": RNG.normal(size=(3, 2)),
        "c": RNG.normal(size=(2,)),
        "k": np.array(1.5),
    }
    nodes = [
        helper.make_node("Sub", ["X", "m"], ["a"]),
        helper.make_node("Div", ["a", "s"], ["b"]),
        helper.make_node("Transpose", ["b"], ["bt"], perm=[1, 0]),
        helper.make_node("Gemm", ["bt", "W", "C"], ["g"], transA=1, transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["g"], ["r"]),
        helper.make_node("Unsqueeze", ["r", "axes"], ["u"]),
        helper.make_node("Squeeze", ["u", "axes"], ["q"]),
        helper.make_node("Reshape", ["q", "shape64"], ["v"]),
        helper.make_node("MatMul", ["v", "V"], ["mm"]),
        helper.make_node("Add", ["mm", "c"], ["o"]),
        helper.make_node("Mul", ["k", "o"], ["o2"]),
        helper.make_node("Sub", ["c", "o2"], ["Y"]),
    ]
    path = save(tmp_path, nodes, inits, [1, 4], "norm.onnx")
    net = agrees_with_onnxruntime(path, (1, 4))
    assert net.hidden_sizes == [3] and (net.n_inputs, net.n_outputs) == (4, 2)


def test_torch_exports_with_conv_batchnorm_flatten(tmp_path):
    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
            self.bn = nn.BatchNorm2d(3)
            self.fc = nn.Linear(3 * 3 * 3, 4)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x / 0.3 - 0.1))).flatten(1))

    torch.manual_seed(0)
    net = ConvNet().eval()
    net.bn.running_mean.normal_(), net.bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "conv.onnx"
    export_onnx(net, (1, 2, 5, 5), path)
    compiled = agrees_with_onnxruntime(path, (1, 2, 5, 5))
    assert compiled.hidden_sizes == [27] and compiled.input_shape == (1, 2, 5, 5)


def test_to_onnx_round_trip(tmp_path):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    path = tmp_path / "m.onnx"
    export_onnx(net, 3, path)
    compiled = from_onnx(path)
    again = agrees_with_onnxruntime(compiled.to_onnx(tmp_path / "plain.onnx"), (1, 3))
    assert again.hidden_sizes == [6, 6]


def test_unsupported_and_non_affine_graphs_name_the_op_and_node(tmp_path):
    sig = save(tmp_path, [helper.make_node("Sigmoid", ["X"], ["Y"], name="squash")], {}, [1, 2], "s.onnx")
    with pytest.raises(TenfoldError, match=r"'Sigmoid'.*squash"):
        from_onnx(sig)
    square = save(tmp_path, [helper.make_node("Mul", ["X", "X"], ["Y"], name="sq")], {}, [1, 2], "m.onnx")
    with pytest.raises(TenfoldError, match=r"not affine.*sq"):
        from_onnx(square)
    skip = save(
        tmp_path,
        [helper.make_node("Relu", ["X"], ["r"]), helper.make_node("Add", ["r", "X"], ["Y"], name="res")],
        {},
        [1, 2],
        "k.onnx",
    )
    with pytest.raises(TenfoldError, match="skip connection"):
        from_onnx(skip)
    with pytest.raises(TenfoldError, match="does not exist"):
        from_onnx(tmp_path / "none.onnx")
