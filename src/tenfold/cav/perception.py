"""The victim's perception pipeline: every CAV's scan -> the victim's detections, under each fusion mode."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tenfold.cav.detector import BEVDetector, GridConfig, check_mode, decode, rasterize
from tenfold.cav.geometry import box_mask
from tenfold.cav.lidar import LidarConfig, Scan, scan
from tenfold.cav.world import CAR, Scene

# (attacker's feature map (C, H, W)) -> the map it shares instead; used by the white-box attack
FeatureEdit = Callable[[torch.Tensor], torch.Tensor]


def observe(scene: Scene, frame: int, lidar: LidarConfig | None = None) -> dict[int, Scan]:
    """Every CAV's unmodified scan of one frame; the noise is seeded by (scene, frame, vehicle)."""
    lidar = lidar or LidarConfig()
    f = scene.frames[frame]
    out = {}
    for cav in scene.cav_ids:
        rng = np.random.default_rng([scene.seed, frame, cav])
        out[cav] = scan(scene.pose(frame, cav), f.boxes, f.ids, lidar, rng)
    return out


def visible_cars(
    scene: Scene, frame: int, scans: dict[int, Scan], exclude: int, grid: GridConfig, min_points: int = 3
) -> np.ndarray:
    """Ground truth: cars (not `exclude`, the victim) within range with >= `min_points` returns in `scans`."""
    f = scene.frames[frame]
    centre = scene.pose(frame, exclude)
    hits = np.concatenate([s.hit_ids[s.valid] for s in scans.values()]) if scans else np.zeros(0, int)
    counts = np.bincount(hits[hits >= 0], minlength=len(f.ids) + 1)
    keep = (
        (f.kinds == CAR)
        & (f.ids != exclude)
        & (counts[f.ids] >= min_points)
        & (np.abs(f.boxes[:, :2] - centre[:2]) < grid.half_range).all(1)
    )
    return f.boxes[keep]


class Perception:
    """The victim's detectors: `early` (also used for single-vehicle input) and `intermediate`."""

    def __init__(
        self,
        early: BEVDetector,
        intermediate: BEVDetector,
        grid: GridConfig | None = None,
        threshold: float = 0.3,
    ):
        self.models = {"early": early.eval(), "intermediate": intermediate.eval()}
        self.grid = grid or GridConfig()
        self.threshold = threshold

    def inputs(self, scans: dict[int, Scan], victim: int, mode: str, centre: np.ndarray) -> torch.Tensor:
        """The detector input: (1, 2, S, S) for single/early, (1, V, 2, S, S) for intermediate."""
        check_mode(mode)
        if mode == "single":
            return torch.from_numpy(rasterize(scans[victim].points, centre, self.grid))[None]
        if mode == "early":
            pts = np.concatenate([s.points for s in scans.values()])
            return torch.from_numpy(rasterize(pts, centre, self.grid))[None]
        return torch.from_numpy(np.stack([rasterize(s.points, centre, self.grid) for s in scans.values()]))[
            None
        ]

    def maps(
        self,
        scans: dict[int, Scan],
        victim: int,
        mode: str,
        centre: np.ndarray,
        edit: tuple[int, FeatureEdit] | None = None,
    ) -> torch.Tensor:
        """Raw detector output (7, H, W). `edit` = (vehicle id, function) replaces that vehicle's shared
        feature map under intermediate fusion (what a white-box attacker controls)."""
        x = self.inputs(scans, victim, mode, centre)
        if mode != "intermediate":
            return self.models["early"](x)[0]
        model = self.models["intermediate"]
        feats = model.encode(x[0])  # (V, C, H, W)
        if edit is not None:
            k = list(scans).index(edit[0])
            feats = torch.cat([feats[:k], edit[1](feats[k])[None], feats[k + 1 :]])
        return model.head(feats.amax(0, keepdim=True))[0]

    @torch.no_grad()
    def detect(
        self,
        scans: dict[int, Scan],
        victim: int,
        mode: str,
        centre: np.ndarray,
        edit: tuple[int, FeatureEdit] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """World-frame boxes and scores the victim perceives."""
        return decode(self.maps(scans, victim, mode, centre, edit), centre, self.grid, self.threshold)

    @torch.no_grad()
    def target_confidence(
        self,
        scans: dict[int, Scan],
        victim: int,
        mode: str,
        centre: np.ndarray,
        target: np.ndarray,
        margin: float = 1.0,
    ) -> float:
        """The detector's highest centre probability on feature cells within `target` grown by `margin`:
        the score a black-box removal attack drives down."""
        heat = torch.sigmoid(self.maps(scans, victim, mode, centre)[0]).numpy()
        g = self.grid
        axis = (np.arange(g.feat_size) + 0.5) * g.feat_cell - g.half_range
        mask = box_mask(target[None], axis + centre[0], axis + centre[1], margin)
        return float(heat[mask].max()) if mask.any() else 0.0
