"""A ray-cast 2D LiDAR: one return per azimuth bin, Gaussian range noise, dropped returns, occlusion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tenfold.cav.geometry import ray_box_distances
from tenfold.core.errors import TenfoldError


@dataclass(frozen=True)
class LidarConfig:
    azimuth_bins: int = 1440  # 0.25 degree
    max_range: float = 50.0
    range_noise: float = 0.03  # metres, standard deviation
    dropout: float = 0.02  # share of returns lost

    def __post_init__(self):
        if self.azimuth_bins < 8 or self.max_range <= 0 or not 0 <= self.dropout < 1:
            raise TenfoldError(
                f"bad LiDAR config {self}: need azimuth_bins >= 8, max_range > 0, 0 <= dropout < 1"
            )

    def angles(self) -> np.ndarray:
        return (np.arange(self.azimuth_bins) + 0.5) * (2 * np.pi / self.azimuth_bins)


@dataclass
class Scan:
    """One sensor's sweep. `ranges` is inf where a ray returned nothing; points are in the world frame."""

    origin: np.ndarray  # (2,) sensor position, world frame
    angles: np.ndarray  # (A,) world-frame azimuth of each ray
    ranges: np.ndarray  # (A,) measured range, inf = no return
    hit_ids: np.ndarray  # (A,) id of the object hit, -1 = none (for ground truth and attacks)
    max_range: float
    extra: np.ndarray | None = None  # (K, 2) points no ray explains (a naive attacker's blob)

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.ranges)

    @property
    def ray_points(self) -> np.ndarray:
        v = self.valid
        r = self.ranges[v]
        return self.origin + np.stack([np.cos(self.angles[v]) * r, np.sin(self.angles[v]) * r], -1)

    @property
    def points(self) -> np.ndarray:
        pts = self.ray_points
        return pts if self.extra is None or len(self.extra) == 0 else np.concatenate([pts, self.extra])

    def directions(self) -> np.ndarray:
        return np.stack([np.cos(self.angles), np.sin(self.angles)], -1)

    def copy(self) -> Scan:
        extra = None if self.extra is None else self.extra.copy()
        return Scan(
            self.origin.copy(),
            self.angles.copy(),
            self.ranges.copy(),
            self.hit_ids.copy(),
            self.max_range,
            extra,
        )


def cast(origin: np.ndarray, angles: np.ndarray, boxes: np.ndarray, ids: np.ndarray, max_range: float):
    """Exact first hit of each ray: (distance, id of the box hit); inf / -1 beyond `max_range`."""
    d = ray_box_distances(origin, angles, boxes)
    if d.shape[1] == 0:
        return np.full(len(angles), np.inf), np.full(len(angles), -1)
    j = d.argmin(1)
    dist = d[np.arange(len(angles)), j]
    hit = np.isfinite(dist) & (dist <= max_range)
    return np.where(hit, dist, np.inf), np.where(hit, np.asarray(ids)[j], -1)


def scan(
    pose: np.ndarray, boxes: np.ndarray, ids: np.ndarray, cfg: LidarConfig, rng: np.random.Generator
) -> Scan:
    """Sweep from `pose` (x, y, yaw) against every box; the sensor's own car is skipped by ray casting."""
    angles = cfg.angles() + pose[2]
    dist, hit = cast(pose[:2], angles, boxes, ids, cfg.max_range)
    noisy = dist + rng.normal(0, cfg.range_noise, size=len(dist))
    lost = rng.random(len(dist)) < cfg.dropout
    ranges = np.where(lost, np.inf, noisy)
    return Scan(
        np.asarray(pose[:2], dtype=np.float64), angles, ranges, np.where(lost, -1, hit), cfg.max_range
    )
