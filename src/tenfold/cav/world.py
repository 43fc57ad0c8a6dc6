"""A generated 2D bird's-eye-view traffic world: roads, vehicles and buildings as oriented boxes.

Each scene is a four-way intersection of two roads (two lanes each way) with buildings in the corner
blocks, 8-16 vehicles driving straight along their lanes, and 3-5 of them connected (CAVs, each with a
LiDAR). A scene has `frames` frames `dt` seconds apart; everything is drawn from one seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tenfold.cav.geometry import box_iou, points_in_boxes
from tenfold.core.errors import TenfoldError

CAR, BUILDING = 0, 1
GENERATOR_VERSION = "cav-world-1"


@dataclass(frozen=True)
class WorldConfig:
    half_size: float = 50.0  # the map is [-half_size, half_size]^2 metres
    lane_width: float = 3.5
    lanes_per_direction: int = 2
    vehicles: tuple[int, int] = (8, 16)  # inclusive range
    cavs: tuple[int, int] = (3, 5)
    buildings_per_block: tuple[int, int] = (1, 3)
    speed: tuple[float, float] = (3.0, 10.0)  # m/s
    frames: int = 10
    dt: float = 0.1
    cav_radius: float = 35.0  # CAVs start within this distance of the intersection centre

    def __post_init__(self):
        lo, hi = self.cavs
        if not 2 <= lo <= hi:
            raise TenfoldError(f"cavs must be a range (lo, hi) with 2 <= lo <= hi, got {self.cavs}")
        if self.vehicles[0] < hi or self.vehicles[0] > self.vehicles[1]:
            raise TenfoldError(
                f"vehicles {self.vehicles} must be a range whose low end is >= cavs' high end {hi}"
            )
        if self.frames < 1 or self.dt <= 0:
            raise TenfoldError(f"need frames >= 1 and dt > 0, got frames={self.frames}, dt={self.dt}")

    @property
    def road_half_width(self) -> float:
        return self.lane_width * self.lanes_per_direction


@dataclass
class Frame:
    """One instant: every object's box, kind (CAR or BUILDING) and stable id."""

    boxes: np.ndarray  # (N, 5)
    kinds: np.ndarray  # (N,)
    ids: np.ndarray  # (N,)

    def index_of(self, obj_id: int) -> int:
        hit = np.nonzero(self.ids == obj_id)[0]
        if len(hit) == 0:
            raise TenfoldError(f"object id {obj_id} is not in this frame")
        return int(hit[0])


@dataclass
class Scene:
    seed: int
    config: WorldConfig
    frames: list[Frame]
    cav_ids: list[int]  # ids of the connected vehicles
    velocities: dict[int, np.ndarray] = field(default_factory=dict)  # id -> (vx, vy)

    def on_road(self, xy: np.ndarray) -> np.ndarray:
        """Whether points lie on the road surface (either road of the intersection)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        r = self.config.road_half_width
        return (np.abs(xy[:, 0]) <= r) | (np.abs(xy[:, 1]) <= r)

    def pose(self, frame: int, obj_id: int) -> np.ndarray:
        """(x, y, yaw) of an object in a frame: a CAV's LiDAR sits at its box centre."""
        f = self.frames[frame]
        b = f.boxes[f.index_of(obj_id)]
        return np.array([b[0], b[1], b[4]])


def lanes(cfg: WorldConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(point on the lane centre line, unit driving direction) for every lane; right-hand traffic."""
    out = []
    for k in range(cfg.lanes_per_direction):
        off = (k + 0.5) * cfg.lane_width
        out += [
            (np.array([0.0, -off]), np.array([1.0, 0.0])),  # east-bound, south half of the x-road
            (np.array([0.0, off]), np.array([-1.0, 0.0])),
            (np.array([off, 0.0]), np.array([0.0, 1.0])),  # north-bound, east half of the y-road
            (np.array([-off, 0.0]), np.array([0.0, -1.0])),
        ]
    return out


def _buildings(cfg: WorldConfig, rng: np.random.Generator) -> list[np.ndarray]:
    r, h = cfg.road_half_width, cfg.half_size
    out: list[np.ndarray] = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            for _ in range(rng.integers(cfg.buildings_per_block[0], cfg.buildings_per_block[1] + 1)):
                for _try in range(20):
                    lx, ly = rng.uniform(6, 22, size=2)
                    setback = rng.uniform(2.5, 12)
                    cx = sx * (r + setback + lx / 2 + rng.uniform(0, h - r - setback - lx / 2 - 2))
                    cy = sy * (r + rng.uniform(2.5, 12) + ly / 2 + rng.uniform(0, h - r - 15 - ly / 2))
                    box = np.array([cx, cy, lx, ly, 0.0])
                    if all(box_iou(box, o)[0, 0] == 0 for o in out):
                        out.append(box)
                        break
    return out


def generate_scene(seed: int, cfg: WorldConfig | None = None) -> Scene:
    """A scene from one seed: buildings, vehicles on lanes with constant velocities, chosen CAVs."""
    cfg = cfg or WorldConfig()
    rng = np.random.default_rng(seed)
    buildings = _buildings(cfg, rng)
    lane_list = lanes(cfg)
    n_veh = int(rng.integers(cfg.vehicles[0], cfg.vehicles[1] + 1))
    n_cav = int(rng.integers(cfg.cavs[0], cfg.cavs[1] + 1))
    times = np.arange(cfg.frames) * cfg.dt
    tracks: list[np.ndarray] = []  # (frames, 5) per vehicle
    vels: list[np.ndarray] = []
    for v in range(n_veh * 20):  # rejection sampling until the scene holds n_veh vehicles
        if len(tracks) == n_veh:
            break
        origin, direction = lane_list[rng.integers(len(lane_list))]
        near = v < n_cav * 20 and len(tracks) < n_cav  # the first vehicles placed become the CAVs
        limit = cfg.cav_radius if near else cfg.half_size - 4
        s0 = rng.uniform(-limit, limit)
        speed = rng.uniform(*cfg.speed)
        length, width = rng.uniform(4.0, 5.0), rng.uniform(1.8, 2.1)
        yaw = float(np.arctan2(direction[1], direction[0]))
        centres = origin + direction * (s0 + speed * times)[:, None]
        track = np.column_stack([centres, np.full((cfg.frames, 3), [length, width, yaw])])
        if np.abs(track[:, :2]).max() > cfg.half_size - 2:
            continue
        grown = track.copy()
        grown[:, 2] += 2.0  # keep a gap to other vehicles, also inside the junction
        grown[:, 3] += 1.0
        if tracks:  # only frames where the circumcircles meet can overlap (box_iou's own pre-check, batched)
            others = np.stack(tracks)  # (vehicles, frames, 5)
            gap = np.hypot(others[..., 0] - grown[:, 0], others[..., 1] - grown[:, 1])
            reach = np.hypot(others[..., 2], others[..., 3]) / 2 + np.hypot(grown[:, 2], grown[:, 3]) / 2
            near = zip(*np.nonzero(gap < reach), strict=True)
            if any(box_iou(grown[t], tracks[k][t])[0, 0] > 0 for k, t in near):
                continue
        tracks.append(track)
        vels.append(direction * speed)
    if len(tracks) < n_cav:
        raise TenfoldError(f"could not place {n_cav} vehicles for seed {seed}; enlarge the map")
    n_b = len(buildings)
    ids = np.arange(len(tracks) + n_b)
    kinds = np.array([CAR] * len(tracks) + [BUILDING] * n_b)
    frames = []
    for t in range(cfg.frames):
        rows = [tr[t] for tr in tracks] + buildings
        frames.append(Frame(np.array(rows), kinds.copy(), ids.copy()))
    return Scene(seed, cfg, frames, list(range(n_cav)), {i: vels[i] for i in range(len(tracks))})


def free_lane_spot(
    scene: Scene, frame: int, near: np.ndarray, rng: np.random.Generator, max_dist: float = 30.0
) -> np.ndarray | None:
    """A car-sized box on a lane, clear of every object, within `max_dist` of `near`; None if none found."""
    f = scene.frames[frame]
    for _ in range(200):
        origin, direction = lanes(scene.config)[rng.integers(len(lanes(scene.config)))]
        s = rng.uniform(-scene.config.half_size + 5, scene.config.half_size - 5)
        c = origin + direction * s
        if np.hypot(*(c - near[:2])) > max_dist or np.hypot(*(c - near[:2])) < 6:
            continue
        box = np.array([c[0], c[1], 4.5, 1.9, float(np.arctan2(direction[1], direction[0]))])
        grown = box.copy()
        grown[2:4] += 2.0
        if box_iou(grown, f.boxes).max() == 0 and not points_in_boxes(c[None], f.boxes, 1.0).any():
            return box
    return None
