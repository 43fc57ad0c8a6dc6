"""A ReLU network as the verifier sees it: affine layers with a ReLU after all but the last, compiled
from the ONNX graph a user brings.

Verification-competition networks are feed-forward ReLU networks wrapped in graph plumbing: inputs
normalised inside the graph (Sub / Div / Mul / Add with constants), Reshape / Flatten / Transpose of
constant shapes, Gemm with any transpose flags or MatMul + Add, Conv, BatchNormalization. Between two
ReLUs all of that is one affine map, so `from_onnx` runs the graph symbolically: every tensor is either
a constant or an affine function `M z + c` of the last ReLU layer's outputs z (of the input before the
first ReLU). A Relu node closes the current map into a layer (W, b); the graph output closes the last.
The compiled network computes the same function as the graph (checked against onnxruntime in the
tests), and `to_onnx` writes it back as plain Gemm + Relu, which every verifier reads (Marabou, for
one, has no Div).

An operator outside this set, or one applied to a non-constant in a way that is not affine (a product
of two network tensors, a skip connection across a ReLU), is a TenfoldError naming the operator and
the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tenfold.core.errors import TenfoldError

SUPPORTED_OPS = (
    "Add BatchNormalization Cast Concat Constant Conv Div Dropout Flatten Gather Gemm Identity MatMul Mul "
    "Neg Relu Reshape Shape Squeeze Sub Transpose Unsqueeze"
).split()


@dataclass
class ReluNet:
    """y = W_L relu(... relu(W_1 x + b_1) ...) + b_L over the flattened input x."""

    weights: list[np.ndarray]  # W_k: (out_k, in_k), float64
    biases: list[np.ndarray]
    input_shape: tuple[int, ...] = ()  # the ONNX input's shape (batch dims set to 1); x is it flattened
    input_name: str = "X"

    @property
    def n_inputs(self) -> int:
        return self.weights[0].shape[1]

    @property
    def n_outputs(self) -> int:
        return self.weights[-1].shape[0]

    @property
    def hidden_sizes(self) -> list[int]:
        return [w.shape[0] for w in self.weights[:-1]]

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Outputs for a batch of flattened inputs (n, n_inputs), in float64."""
        h = np.asarray(X, np.float64)
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w.T + b
            if k < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h

    def to_onnx(self, path: str | Path) -> Path:
        """The network as plain Gemm + Relu over a (1, n_inputs) input, float32."""
        from tenfold.autospec.verify import require

        onnx = require("onnx")
        helper, numpy_helper = onnx.helper, require("onnx.numpy_helper")
        nodes, inits, prev = [], [], "X"
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            inits += [
                numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
                numpy_helper.from_array(b.astype(np.float32), f"B{k}"),
            ]
            out = "Y" if k == len(self.weights) - 1 else f"h{k}"
            nodes.append(helper.make_node("Gemm", [prev, f"W{k}", f"B{k}"], [out], transB=1))
            if out != "Y":
                nodes.append(helper.make_node("Relu", [out], [f"z{k}"]))
                prev = f"z{k}"
        graph = helper.make_graph(
            nodes,
            "relunet",
            [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [1, self.n_inputs])],
            [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [1, self.n_outputs])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8  # what onnxruntime and Marabou's reader accept
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        return path


@dataclass
class _Affine:
    """A network tensor of shape `shape`: M z + c, with M stored as (n_z, *shape) and c as (*shape)."""

    M: np.ndarray
    c: np.ndarray
    basis: int  # which ReLU layer's outputs z are (0: the network input)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.c.shape

    def map(self, linear) -> _Affine:
        """Apply a linear op (a reshape, a transpose, a negation) to every basis column and to c."""
        # ops are written per tensor and applied to each basis column: cheap for the few hundred
        # columns these networks have, and each op is then written once for constants and columns
        return _Affine(np.stack([linear(m) for m in self.M]), linear(self.c), self.basis)


def load_onnx(path: str | Path):
    """The ONNX model at `path`, with a TenfoldError for a missing or unreadable file."""
    from tenfold.autospec.verify import require

    onnx = require("onnx")
    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise TenfoldError(f"ONNX file {path} does not exist") from None
    except Exception as e:  # onnx raises DecodeError and others for non-ONNX files
        raise TenfoldError(f"{path} is not an ONNX model: {e}") from None


def from_onnx(path: str | Path) -> ReluNet:
    """Compile the ONNX graph at `path` into a ReluNet (see the module docstring)."""
    from tenfold.autospec.verify import require

    onnx = require("onnx")
    numpy_helper = require("onnx.numpy_helper")
    model = load_onnx(path)
    g = model.graph
    env: dict[str, object] = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in env]
    if len(inputs) != 1:
        raise TenfoldError(f"{path}: expected one network input, found {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)  # symbolic (batch) dims -> 1
    n = int(np.prod(shape)) if shape else 1
    env[inputs[0].name] = _Affine(np.eye(n).reshape((n, *shape)), np.zeros(shape), 0)
    layers: list[tuple[np.ndarray, np.ndarray]] = []

    for node in g.node:
        where = f"node {node.name or node.output[0]!r} in {path}"
        if node.op_type not in SUPPORTED_OPS:
            raise TenfoldError(
                f"unsupported ONNX operator {node.op_type!r} ({where}); supported: {sorted(SUPPORTED_OPS)}"
            )
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        args = [env[name] if name else None for name in node.input]
        try:
            if node.op_type == "Relu" and isinstance(args[0], _Affine):
                t = args[0]
                if t.basis != len(layers):
                    raise TenfoldError(f"a ReLU input that skips a layer ({where}) is not supported")
                W = t.M.reshape(t.M.shape[0], -1).T
                layers.append((W, t.c.reshape(-1)))
                k = W.shape[0]
                out = _Affine(np.eye(k).reshape((k, *t.shape)), np.zeros(t.shape), len(layers))
            else:
                out = _apply(node.op_type, args, attrs, onnx, numpy_helper)
        except TenfoldError as e:
            raise TenfoldError(f"{e} ({where})" if where not in str(e) else str(e)) from None
        except (ValueError, IndexError, KeyError, TypeError) as e:  # shape mismatches and the like
            raise TenfoldError(f"cannot apply {node.op_type} ({where}): {e}") from None
        env[node.output[0]] = out

    if len(g.output) != 1:
        raise TenfoldError(f"{path}: expected one network output, found {len(g.output)}")
    y = env.get(g.output[0].name)
    if not isinstance(y, _Affine):
        raise TenfoldError(f"{path}: the output does not depend on the input")
    if y.basis != len(layers):
        raise TenfoldError(f"{path}: the output skips a layer, which is not supported")
    layers.append((y.M.reshape(y.M.shape[0], -1).T, y.c.reshape(-1)))
    return ReluNet([w for w, _ in layers], [b for _, b in layers], shape, inputs[0].name)


def _apply(op: str, args: list, attrs: dict, onnx, numpy_helper):
    """One node: constants are folded, network tensors stay affine in their basis."""
    x = args[0] if args else None
    const = all(a is None or not isinstance(a, _Affine) for a in args)
    if op == "Constant":
        if "value" in attrs:
            return numpy_helper.to_array(attrs["value"]).astype(np.float64)
        for key in ("value_float", "value_floats", "value_int", "value_ints"):
            if key in attrs:
                return np.asarray(attrs[key], np.float64)
        raise TenfoldError(f"Constant without a numeric value (attributes {sorted(attrs)})")
    if op in ("Identity", "Dropout", "Cast"):
        return x
    if op == "Shape":
        return np.array(x.shape, np.float64)
    if op == "Relu":  # of a constant (a network tensor is handled by the caller)
        return np.maximum(x, 0)
    if op == "Neg":
        return -x if const else x.map(lambda m: -m)
    if op in ("Add", "Sub", "Mul", "Div"):
        return _elementwise(op, args[0], args[1])
    if op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"):
        reshape = _shape_op(op, x.shape, args, attrs)
        return reshape(x) if const else x.map(reshape)
    if op == "Gather":
        idx = np.asarray(args[1]).astype(np.int64)
        axis = attrs.get("axis", 0)
        if const:
            return np.take(x, idx, axis=axis)
        return x.map(lambda m: np.take(m, idx, axis=axis))
    if op == "Concat":
        if const:
            return np.concatenate(args, axis=attrs["axis"])
        raise TenfoldError("Concat of network tensors is not supported")
    if op == "MatMul":
        return _matmul(args[0], args[1])
    if op == "Gemm":
        a, b = args[0], args[1]
        if isinstance(b, _Affine):
            raise TenfoldError("Gemm with the network tensor as its second input is not supported")
        if attrs.get("transA", 0):
            a = a.T if not isinstance(a, _Affine) else a.map(lambda m: m.T)
        b = b.T if attrs.get("transB", 0) else b
        y = _matmul(a, b * attrs.get("alpha", 1.0))
        if len(args) > 2 and args[2] is not None:
            y = _elementwise("Add", y, args[2] * attrs.get("beta", 1.0))
        return y
    if op == "BatchNormalization":
        scale, bias, mean, var = (np.asarray(a) for a in args[1:5])
        k = scale / np.sqrt(var + attrs.get("epsilon", 1e-5))
        per_channel = (-1,) + (1,) * (len(x.shape) - 2)  # channels are axis 1 of (N, C, ...)
        y = _elementwise("Mul", x, k.reshape(per_channel))
        return _elementwise("Add", y, (bias - mean * k).reshape(per_channel))
    if op == "Conv":
        return _conv(x, args[1], args[2] if len(args) > 2 else None, attrs)
    raise TenfoldError(f"unsupported ONNX operator {op!r}")


def _elementwise(op: str, a, b):
    fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
    if not isinstance(a, _Affine) and not isinstance(b, _Affine):
        return fn(a, b)
    if isinstance(a, _Affine) and isinstance(b, _Affine):
        if op not in ("Add", "Sub"):
            raise TenfoldError(f"{op} of two network tensors is not affine")
        if a.basis != b.basis:
            raise TenfoldError(f"{op} of tensors from different layers (a skip connection) is not supported")
        shape = np.broadcast_shapes(a.shape, b.shape)
        n_z = a.M.shape[0]
        return _Affine(
            fn(np.broadcast_to(a.M, (n_z, *shape)), np.broadcast_to(b.M, (n_z, *shape))),
            fn(a.c, b.c),
            a.basis,
        )
    if op in ("Div",) and isinstance(b, _Affine):
        raise TenfoldError("division by a network tensor is not affine")
    t, k = (a, np.asarray(b)) if isinstance(a, _Affine) else (b, np.asarray(a))
    shape = np.broadcast_shapes(t.shape, k.shape)
    M = t.M.reshape((t.M.shape[0],) + (1,) * (len(shape) - len(t.shape)) + t.shape)
    M = np.broadcast_to(M, (t.M.shape[0], *shape))
    c = np.broadcast_to(t.c, shape)
    if op in ("Mul", "Div"):
        return _Affine(fn(M, k), fn(c, k), t.basis)
    if op == "Add":
        return _Affine(M.copy(), c + k, t.basis)
    if isinstance(a, _Affine):  # t - k
        return _Affine(M.copy(), c - k, t.basis)
    return _Affine(-M, k - c, t.basis)  # k - t


def _matmul(a, b):
    if not isinstance(a, _Affine) and not isinstance(b, _Affine):
        return np.matmul(a, b)
    if isinstance(a, _Affine) and isinstance(b, _Affine):
        raise TenfoldError("MatMul of two network tensors is not affine")
    if isinstance(a, _Affine):  # (..., n) @ K: numpy broadcasts the basis axis as a batch axis
        return _Affine(np.matmul(a.M, b), np.matmul(a.c, b), a.basis)
    if b.c.ndim == 1:  # K @ t for a vector t
        return _Affine(b.M @ np.asarray(a).T, np.asarray(a) @ b.c, b.basis)
    return _Affine(np.matmul(a, b.M), np.matmul(a, b.c), b.basis)


def _shape_op(op: str, shape: tuple[int, ...], args: list, attrs: dict):
    """The reshaping function of a shape op, for a tensor of `shape` (the basis axis is not in it)."""
    if op == "Reshape":
        target = [int(v) for v in np.asarray(args[1])]
        if not attrs.get("allowzero", 0):
            target = [shape[i] if v == 0 else v for i, v in enumerate(target)]
        return lambda t: t.reshape(target)
    if op == "Flatten":
        axis = attrs.get("axis", 1) % (len(shape) + 1) if shape else 0
        new = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
        return lambda t: t.reshape(new)
    if op == "Transpose":
        perm = attrs.get("perm", list(range(len(shape)))[::-1])
        return lambda t: np.transpose(t, perm)
    axes = attrs.get("axes")
    if axes is None and len(args) > 1 and args[1] is not None:  # opset 13: axes is an input
        axes = [int(v) for v in np.asarray(args[1])]
    if op == "Squeeze":
        axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else [a % len(shape) for a in axes]
        return lambda t: t.reshape([d for i, d in enumerate(shape) if i not in axes])
    rank = len(shape) + len(axes)
    axes = sorted(a % rank for a in axes)

    def unsqueeze(t):
        for a in axes:
            t = np.expand_dims(t, a)
        return t

    return unsqueeze


def _conv(x, w, b, attrs: dict):
    """Conv (1-D or 2-D, NOTSET/VALID padding) of a network tensor with constant weights, via torch."""
    import torch
    import torch.nn.functional as F

    if not isinstance(x, _Affine) or isinstance(w, _Affine):
        raise TenfoldError("Conv needs the network tensor as its input and constant weights")
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        raise TenfoldError(f"Conv auto_pad {attrs['auto_pad']!r} is not supported (use explicit pads)")
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise TenfoldError(f"Conv with {nd} spatial dims is not supported")
    pads = list(attrs.get("pads", [0] * 2 * nd))
    torch_pad = [p for i in reversed(range(nd)) for p in (pads[i], pads[i + nd])]  # F.pad: last dim first
    conv = F.conv1d if nd == 1 else F.conv2d
    weight = torch.tensor(np.asarray(w))
    kw = {
        "stride": attrs.get("strides", [1] * nd),
        "dilation": attrs.get("dilations", [1] * nd),
        "groups": attrs.get("group", 1),
    }

    def run(t: np.ndarray, bias) -> np.ndarray:  # t: (N, C, ...) or a batch of them stacked on N
        out = conv(F.pad(torch.tensor(t), torch_pad), weight, bias, **kw)
        return out.numpy()

    n_z, shape = x.M.shape[0], x.shape
    M = run(x.M.reshape((n_z * shape[0], *shape[1:])), None)
    M = M.reshape((n_z, shape[0], *M.shape[1:]))
    c = run(x.c, None if b is None else torch.tensor(np.asarray(b)))
    return _Affine(M, c, x.basis)
