"""The systems' networks: small ReLU MLPs trained here by imitation of the logged decisions, exported to
ONNX (the format verifiers read). Inputs are standardised inside the network (a first Linear layer with
fixed weights), so specifications and verifiers work in the system's own units.

`flawed_labels` corrupts the labels in one region of a system's input space; a network trained on them
is the deliberately flawed network whose violations specifications should catch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from tenfold.autospec.systems import Dataset
from tenfold.core.errors import TenfoldError


def mlp(d_in: int, d_out: int, hidden: int, mean: np.ndarray, std: np.ndarray) -> nn.Sequential:
    norm = nn.Linear(d_in, d_in)
    with torch.no_grad():
        norm.weight.copy_(torch.diag(torch.tensor(1.0 / std, dtype=torch.float32)))
        norm.bias.copy_(torch.tensor(-mean / std, dtype=torch.float32))
    norm.requires_grad_(False)
    return nn.Sequential(
        norm,
        nn.Linear(d_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, d_out),
    )


def train_net(
    data: Dataset, hidden: int = 32, steps: int = 1500, seed: int = 0, lr: float = 3e-3
) -> nn.Sequential:
    """Imitation: cross-entropy for classification, MSE for regression (Adam, full-batch steps)."""
    torch.manual_seed(seed)
    X = torch.tensor(data.X, dtype=torch.float32)
    std = data.X.std(0)
    std[std < 1e-6] = 1.0
    out = data.classes if data.task == "classification" else 1
    net = mlp(X.shape[1], out, hidden, data.X.mean(0), std)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    if data.task == "classification":
        y = torch.tensor(data.y, dtype=torch.long)
        loss_fn = lambda o: nn.functional.cross_entropy(o, y)  # noqa: E731
    else:
        y = torch.tensor(data.y, dtype=torch.float32).unsqueeze(1)
        loss_fn = lambda o: nn.functional.mse_loss(o, y)  # noqa: E731
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(X)).backward()
        opt.step()
    return net.eval()


def predict(net: nn.Module, X: np.ndarray, task: str) -> np.ndarray:
    with torch.no_grad():
        out = net(torch.tensor(np.asarray(X), dtype=torch.float32))
    return out.argmax(1).numpy() if task == "classification" else out[:, 0].numpy()


def linear_layers(net: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) of each Linear layer in order; a ReLU sits between consecutive ones except after the
    first (the fixed input standardisation). Raises for anything else."""
    layers, prev_linear = [], False
    for m in net:
        if isinstance(m, nn.Linear):
            layers.append(
                (m.weight.detach().numpy().astype(np.float64), m.bias.detach().numpy().astype(np.float64))
            )
            prev_linear = True
        elif isinstance(m, nn.ReLU) and prev_linear:
            prev_linear = False
        else:
            raise TenfoldError(f"unsupported layer {m!r}: only Linear and ReLU are supported")
    return layers


def export_onnx(net: nn.Module, d_in: int | tuple[int, ...], path: str | Path) -> Path:
    """`net` as ONNX, input "X" of shape (1, d_in), or of the full shape `d_in` when it is a tuple."""
    from tenfold.autospec.verify import require

    require("onnx")  # torch's exporter writes the file with it
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        net,
        (torch.zeros(d_in if isinstance(d_in, tuple) else (1, d_in)),),
        str(path),
        input_names=["X"],
        output_names=["Y"],
        dynamo=False,
    )
    return path


# The deliberately flawed networks: labels replaced by `label` inside a box of the input space (feature
# -> (lo, hi)), chosen so that no hand-written rule of `baselines.HAND_RULES` flags the flawed output:
# either no rule covers the box, or (throughput) the covering rule's interval is too loose to exclude it.
FLAWS: dict[str, tuple[dict[str, tuple[float, float]], float]] = {
    "abr": (
        {"throughput_hm3": (3.0, 1e9), "buffer_s": (8.0, 16.0)},
        0,
    ),  # good network, mid buffer: lowest bitrate
    "cc": (
        {"delivery_ratio": (-1e9, 0.6), "rtt_ratio": (-1e9, 1.8), "loss_rate": (-1e9, 0.05)},
        0.4,
    ),  # overshoot: speed up
    "throughput": (
        {f"throughput_t-{k}": (0.9, 1.5) for k in (1, 2)},
        2.7,
    ),  # a steady 1.2 Mbps link predicted at more than twice its rate (inside the hand-written 0.4-2.9)
    "scheduler": (
        {"job0_remaining": (1.0, 2.5)},
        3,
    ),  # job 0 nearly done, job 3 run instead
}


def flaw_box(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The flawed region of `data.system` as an input box (unbounded sides at ±1e9)."""
    if data.system not in FLAWS:
        raise TenfoldError(f"no flaw defined for system {data.system!r}")
    lo, hi = np.full(len(data.features), -1e9), np.full(len(data.features), 1e9)
    for name, (a, b) in FLAWS[data.system][0].items():
        f = data.features.index(name)
        lo[f], hi[f] = a, b
    return lo, hi


def flawed_labels(data: Dataset) -> tuple[Dataset, np.ndarray]:
    """Labels corrupted in the system's flaw box; returns the corrupted data and the box's mask."""
    lo, hi = flaw_box(data)
    region = np.all((data.X >= lo) & (data.X <= hi), axis=1)
    y = data.y.copy()
    y[region] = FLAWS[data.system][1]
    return Dataset(data.system, data.X, y, data.trace, data.features, data.task, data.classes), region
