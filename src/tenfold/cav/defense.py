"""Collaborative anomaly detection (CAD): cross-check the victim's detections against every vehicle's
occupancy map.

Per vehicle, from its own returns (rasters of `cell` metres around the victim, world-aligned):
- occupied: points grouped into segments (8-connected cells after one dilation); a segment whose extent
  is <= 8 m and whose convex hull is <= 20 m^2 with its centre on the road is an object; its hull is
  occupied (the paper's rules, with the 0.6-3 m height test dropped: the world is 2D);
- free: every cell a ray crosses before its first return (less 0.3 m), or up to the maximum range when
  it returns nothing, restricted to the road.
Maps are merged by union. For each detection, spoof error = area(box & free); remove error = the area
of each connected region of (occupied - all detected boxes). An error above its threshold is flagged.
Thresholds are chosen on a validation split to maximise TPR * (1 - FPR), the paper's operating point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from tenfold.cav.geometry import box_mask, points_in_boxes
from tenfold.cav.lidar import Scan
from tenfold.cav.world import Scene

FREE_MARGIN = 0.3  # metres short of each return that still counts as free


@dataclass(frozen=True)
class CADConfig:
    half_range: float = 40.0
    cell: float = 0.25
    max_extent: float = 8.0
    max_area: float = 20.0
    dilate: int = 1
    azimuth_bins: int = 360

    @property
    def size(self) -> int:
        return int(round(2 * self.half_range / self.cell))


@dataclass
class OccupancyMap:
    occupied: np.ndarray  # (S, S) bool, row = y
    free: np.ndarray
    centre: np.ndarray
    cfg: CADConfig

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.cfg
        axis = (np.arange(c.size) + 0.5) * c.cell - c.half_range
        return axis + self.centre[0], axis + self.centre[1]

    def union(self, other: OccupancyMap) -> OccupancyMap:
        return OccupancyMap(self.occupied | other.occupied, self.free | other.free, self.centre, self.cfg)


def _cells(points: np.ndarray, centre: np.ndarray, cfg: CADConfig) -> tuple[np.ndarray, np.ndarray]:
    ij = np.floor((points - centre[:2] + cfg.half_range) / cfg.cell).astype(np.int64)
    keep = (ij >= 0).all(1) & (ij < cfg.size).all(1)
    return ij[keep], keep


def _road_mask(scene: Scene, m: OccupancyMap) -> np.ndarray:
    xs, ys = m.cell_centres()
    r = scene.config.road_half_width
    return (np.abs(xs)[None, :] <= r) | (np.abs(ys)[:, None] <= r)


def occupancy_map(
    scan: Scan,
    scene: Scene,
    centre: np.ndarray,
    cfg: CADConfig | None = None,
    own_box: np.ndarray | None = None,
) -> OccupancyMap:
    """One vehicle's occupied and free space from its own returns (see the module docstring).

    `own_box` (the vehicle's own footprint, which it knows) is left out of the free space: rays start
    inside it."""
    cfg = cfg or CADConfig()
    s = cfg.size
    m = OccupancyMap(np.zeros((s, s), bool), np.zeros((s, s), bool), np.asarray(centre, float), cfg)
    road = _road_mask(scene, m)
    # free space per azimuth bin (the paper: 360 bins), up to the bin's first return, or to the maximum
    # range when nothing in the bin returned; every ray of the bin is free up to that distance
    a = len(scan.ranges)
    per_bin = max(a // cfg.azimuth_bins, 1)
    first = scan.ranges[: a - a % per_bin].reshape(-1, per_bin).min(1)
    first = np.concatenate([first, [scan.ranges[a - a % per_bin :].min()] if a % per_bin else []])
    ends = np.repeat(np.where(np.isfinite(first), first - FREE_MARGIN, scan.max_range), per_bin)[:a]
    steps = np.arange(0, scan.max_range, cfg.cell / 2)
    along = steps[None, :] <= ends[:, None]
    dirs = scan.directions()
    samples = scan.origin + dirs[:, None, :] * steps[None, :, None]
    ij, _ = _cells(samples[along], centre, cfg)
    m.free[ij[:, 1], ij[:, 0]] = True
    m.free &= road
    if own_box is not None:
        xs, ys = m.cell_centres()
        m.free &= ~box_mask(own_box[None], xs, ys, margin=cfg.cell)
    # occupied: segments of nearby returns, kept when object-sized and on the road
    pts = scan.points
    ij, keep = _cells(pts, centre, cfg)
    pts = pts[keep]
    if len(pts):
        raster = np.zeros((s, s), bool)
        raster[ij[:, 1], ij[:, 0]] = True
        grown = ndimage.binary_dilation(raster, iterations=cfg.dilate) if cfg.dilate else raster
        labels, _ = ndimage.label(grown, structure=np.ones((3, 3)))
        seg = labels[ij[:, 1], ij[:, 0]]
        xs, ys = m.cell_centres()
        for lab in np.unique(seg):
            p = pts[seg == lab]
            if np.hypot(*(p.max(0) - p.min(0))) > cfg.max_extent:
                continue
            if not scene.on_road(p.mean(0)[None])[0]:
                continue
            m.occupied |= _hull_mask(p, xs, ys, cfg)
    return m


def _hull_mask(p: np.ndarray, xs: np.ndarray, ys: np.ndarray, cfg: CADConfig) -> np.ndarray:
    """Cells inside the convex hull of a segment (a thin segment: the cells of its points)."""
    mask = np.zeros((len(ys), len(xs)), bool)
    lo = np.searchsorted(xs, p.min(0)[0] - cfg.cell), np.searchsorted(ys, p.min(0)[1] - cfg.cell)
    hi = np.searchsorted(xs, p.max(0)[0] + cfg.cell), np.searchsorted(ys, p.max(0)[1] + cfg.cell)
    gx, gy = np.meshgrid(xs[lo[0] : hi[0]], ys[lo[1] : hi[1]])
    cells = np.stack([gx.ravel(), gy.ravel()], -1)
    inside = np.zeros(len(cells), bool)
    try:
        hull = ConvexHull(p)
        if hull.volume > cfg.max_area:
            return mask
        eq = hull.equations  # a.x + b <= 0 inside
        inside = (cells @ eq[:, :2].T + eq[:, 2] <= cfg.cell / 2).all(1)
    except (QhullError, ValueError):  # fewer than 3 points or all on a line
        pass
    ij = np.floor((p - np.array([xs[0], ys[0]]) + cfg.cell / 2) / cfg.cell).astype(int)
    mask[lo[1] : hi[1], lo[0] : hi[0]] = inside.reshape(gx.shape)
    ok = (ij >= 0).all(1) & (ij[:, 0] < len(xs)) & (ij[:, 1] < len(ys))
    mask[ij[ok, 1], ij[ok, 0]] = True
    return mask


@dataclass
class Errors:
    """CAD's evidence for one frame: a spoof error per detection, and the remove-error regions."""

    spoof: np.ndarray  # (N,) m^2 of free space inside each detected box
    regions: list[tuple[float, np.ndarray]]  # (area m^2, centroid (2,)) of unexplained occupied space


def errors(merged: OccupancyMap, boxes: np.ndarray) -> Errors:
    xs, ys = merged.cell_centres()
    gx, gy = np.meshgrid(xs, ys)
    area = merged.cfg.cell**2
    spoof = np.zeros(len(boxes))
    covered = np.zeros(merged.free.shape, bool)
    for k, b in enumerate(np.atleast_2d(boxes) if len(boxes) else []):
        r = np.hypot(b[2], b[3]) / 2 + merged.cfg.cell
        win = (np.abs(gx - b[0]) <= r) & (np.abs(gy - b[1]) <= r)
        idx = np.nonzero(win)
        inside = points_in_boxes(np.stack([gx[idx], gy[idx]], -1), b[None])[:, 0]
        covered[idx[0][inside], idx[1][inside]] = True
        spoof[k] = merged.free[idx[0][inside], idx[1][inside]].sum() * area
    unexplained = merged.occupied & ~covered
    labels, n = ndimage.label(unexplained, structure=np.ones((3, 3)))
    regions = []
    if n:
        idx = np.arange(1, n + 1)
        sizes = ndimage.sum(unexplained, labels, idx)
        cy = ndimage.mean(gy, labels, idx)
        cx = ndimage.mean(gx, labels, idx)
        regions = [(float(sizes[i] * area), np.array([cx[i], cy[i]])) for i in range(n)]
    return Errors(spoof, regions)
