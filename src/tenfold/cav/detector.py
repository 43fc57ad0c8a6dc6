"""A small CenterNet-style BEV car detector with early and intermediate fusion.

Points are rasterised on a grid centred on the victim (world-aligned, +-40 m, 0.5 m cells) as two
channels: log(1 + points per cell) and occupancy. An encoder (two 3x3 convolutions, the first with stride 2) turns a
raster into a 1 m feature map; a head predicts per cell a centre heatmap, the sub-cell offset, log length
and width, and (cos 2 yaw, sin 2 yaw) (a box is the same turned by 180 degrees).

- single-vehicle: the victim's own points;
- early fusion: every vehicle's points merged in the common frame, one raster, one encoder pass;
- intermediate fusion: one encoder pass per vehicle on its own points, then the element-wise max of
  the feature maps (the fusion the paper's intermediate setting shares), then the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tenfold.core.errors import TenfoldError

MODES = ("single", "early", "intermediate")


@dataclass(frozen=True)
class GridConfig:
    half_range: float = 40.0  # metres each side of the victim
    cell: float = 0.5  # input raster cell; the feature map is 2x coarser

    @property
    def size(self) -> int:
        return int(round(2 * self.half_range / self.cell))

    @property
    def feat_cell(self) -> float:
        return 2 * self.cell

    @property
    def feat_size(self) -> int:
        return self.size // 2


def rasterize(points: np.ndarray, centre: np.ndarray, grid: GridConfig) -> np.ndarray:
    """(2, S, S) float32 raster of world-frame points around `centre`; row = y, column = x."""
    s = grid.size
    rel = (np.asarray(points, dtype=np.float64).reshape(-1, 2) - centre[:2] + grid.half_range) / grid.cell
    ij = np.floor(rel).astype(np.int64)
    keep = (ij >= 0).all(1) & (ij < s).all(1)
    counts = np.bincount(ij[keep, 1] * s + ij[keep, 0], minlength=s * s).reshape(s, s).astype(np.float32)
    return np.stack([np.log1p(counts), (counts > 0).astype(np.float32)])


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@dataclass(frozen=True)
class DetectorConfig:
    width: int = 32
    head_width: int = 48


class BEVDetector(nn.Module):
    """encoder(raster) -> features (B, C, S/2, S/2); head(features) -> 7 maps per feature cell."""

    def __init__(self, cfg: DetectorConfig | None = None):
        super().__init__()
        cfg = cfg or DetectorConfig()
        w = cfg.width
        self.encoder = nn.Sequential(_block(2, w * 3 // 4, stride=2), _block(w * 3 // 4, w))
        self.head = nn.Sequential(
            _block(w, cfg.head_width, dilation=2),
            _block(cfg.head_width, cfg.head_width),
            nn.Conv2d(cfg.head_width, 7, 1),
        )
        with torch.no_grad():  # CenterNet's prior: start with a low centre probability everywhere
            self.head[-1].bias[0].fill_(-2.19)

    def encode(self, raster: torch.Tensor) -> torch.Tensor:
        return self.encoder(raster)

    def forward(self, rasters: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """rasters (B, 2, S, S) -> maps; or (B, V, 2, S, S) -> maps after intermediate fusion."""
        if rasters.dim() == 4:
            return self.head(self.encode(rasters))
        b, v = rasters.shape[:2]
        if present is None:
            present = torch.ones(b, v, dtype=torch.bool)
        enc = self.encode(rasters[present])  # only the vehicles that exist: padding costs nothing
        feats = enc.new_full((b, v, *enc.shape[1:]), float("-inf"))
        feats[present] = enc
        return self.head(feats.amax(1))


def make_targets(boxes: np.ndarray, centre: np.ndarray, grid: GridConfig) -> dict[str, np.ndarray]:
    """CenterNet targets on the feature grid: Gaussian heatmap, and box values at each centre cell."""
    fs, fc = grid.feat_size, grid.feat_cell
    heat = np.zeros((fs, fs), np.float32)
    reg = np.zeros((6, fs, fs), np.float32)
    mask = np.zeros((fs, fs), np.float32)
    ys, xs = np.mgrid[0:fs, 0:fs]
    for b in np.atleast_2d(boxes):
        u = (b[0] - centre[0] + grid.half_range) / fc
        v = (b[1] - centre[1] + grid.half_range) / fc
        i, j = int(np.floor(v)), int(np.floor(u))
        if not (0 <= i < fs and 0 <= j < fs):
            continue
        sigma = 0.8
        g = np.exp(-((xs + 0.5 - u) ** 2 + (ys + 0.5 - v) ** 2) / (2 * sigma**2))
        heat = np.maximum(heat, g.astype(np.float32))
        heat[i, j] = 1.0
        reg[:, i, j] = [
            u - j - 0.5,
            v - i - 0.5,
            np.log(b[2]),
            np.log(b[3]),
            np.cos(2 * b[4]),
            np.sin(2 * b[4]),
        ]
        mask[i, j] = 1.0
    return {"heat": heat, "reg": reg, "mask": mask}


def detection_loss(
    maps: torch.Tensor, heat: torch.Tensor, reg: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on the heatmap plus L1 on the box values at centres."""
    logit = maps[:, 0]
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p**2 * (1 - heat) ** 4 * (1 - pos)).sum()
    n = pos.sum().clamp(min=1)
    reg_loss = (F.l1_loss(maps[:, 1:], reg, reduction="none").sum(1) * mask).sum() / n
    return (pos_loss + neg_loss) / n + reg_loss


def decode(
    maps: torch.Tensor, centre: np.ndarray, grid: GridConfig, threshold: float = 0.3, top_k: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """One sample's maps (7, H, W) -> world-frame boxes (N, 5) and scores (N,): 3x3 peaks above threshold."""
    heat = torch.sigmoid(maps[0])
    peaks = heat == F.max_pool2d(heat[None, None], 3, 1, 1)[0, 0]
    score = torch.where(peaks, heat, torch.zeros_like(heat)).flatten()
    vals, idx = score.topk(min(top_k, score.numel()))
    keep = vals >= threshold
    vals, idx = vals[keep].numpy(), idx[keep].numpy()
    fs, fc = grid.feat_size, grid.feat_cell
    i, j = idx // fs, idx % fs
    r = maps[1:, i, j].detach().numpy()
    x = (j + 0.5 + r[0]) * fc - grid.half_range + centre[0]
    y = (i + 0.5 + r[1]) * fc - grid.half_range + centre[1]
    yaw = 0.5 * np.arctan2(r[5], r[4])
    boxes = np.stack([x, y, np.exp(r[2]), np.exp(r[3]), yaw], -1) if len(idx) else np.zeros((0, 5))
    return boxes.astype(np.float64), vals.astype(np.float64)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise TenfoldError(f"unknown fusion mode {mode!r}; choose from {', '.join(MODES)}")
    return mode
