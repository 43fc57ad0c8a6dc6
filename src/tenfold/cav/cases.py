"""Attack cases: who attacks, who is the victim, and what is spoofed or removed, drawn from a seed.

The paper's target metadata came from an unpublished generator; ours is stated here:
- the victim and the attacker are two different CAVs; the attack is evaluated on the last frame;
- spoof: a car-sized box on a lane, clear of every object on the last two frames, 6-25 m from the
  victim, within 35 m of the attacker and in its line of sight; it drives along its lane at 3-10 m/s
  (so the real-time variants must follow it);
- remove: among the non-connected cars 25 m or less from the victim with >= 5 of the attacker's returns,
  the one with the fewest returns from the other CAVs (a rational attacker picks the target whose
  evidence it controls most; ties broken at random).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tenfold.cav.geometry import box_iou, box_mask
from tenfold.cav.lidar import LidarConfig, cast
from tenfold.cav.perception import observe
from tenfold.cav.world import CAR, Scene, free_lane_spot, generate_scene
from tenfold.core.errors import TenfoldError

VICTIM_RADIUS = 25.0
ATTACKER_RADIUS = 35.0


@dataclass
class Case:
    seed: int
    kind: str  # "spoof" or "remove"
    attacker: int
    victim: int
    box: np.ndarray  # the target box on the evaluation frame
    velocity: np.ndarray  # (vx, vy) of the target
    target_id: int = -1  # the removed car's id (remove only)
    frame: int = -1  # evaluation frame; -1 = the scene's last

    def box_at(self, frame: int, scene: Scene) -> np.ndarray:
        """The target's box on another frame (constant velocity)."""
        t_eval = self.frame % len(scene.frames)
        b = self.box.copy()
        b[:2] += self.velocity * (frame - t_eval) * scene.config.dt
        return b


def _line_of_sight(scene: Scene, frame: int, origin: np.ndarray, point: np.ndarray) -> bool:
    f = scene.frames[frame]
    rel = point - origin
    d, _ = cast(origin, np.array([np.arctan2(rel[1], rel[0])]), f.boxes, f.ids, 1e9)
    return d[0] >= np.hypot(*rel) - 2.5


def benign_view(scene: Scene, frame: int, scans: dict, attacker: int):
    """`coverage(box)`: the share of a box that some vehicle other than the attacker observed as free or
    occupied space (its maps are built once)."""
    from tenfold.cav.defense import CADConfig, occupancy_map  # defense does not import cases

    f = scene.frames[frame]
    centre = scene.pose(frame, attacker)
    cfg = CADConfig()
    seen = np.zeros((cfg.size, cfg.size), bool)
    for v, s in scans.items():
        if v != attacker:
            m = occupancy_map(s, scene, centre, cfg, f.boxes[f.index_of(v)])
            seen |= m.free | m.occupied
    axis = (np.arange(cfg.size) + 0.5) * cfg.cell - cfg.half_range

    def coverage(box: np.ndarray) -> float:
        cells = box_mask(box[None], axis + centre[0], axis + centre[1])
        return float(seen[cells].mean()) if cells.any() else 0.0

    return coverage


def make_case(seed: int, kind: str, lidar: LidarConfig | None = None, unseen: bool = False) -> Case | None:
    """The case for one scene seed, or None when the scene has no valid target.

    `unseen=True` draws the hard case for CAD instead: a target no benign vehicle observes (spoof: less
    than 10% of the fake box is in their free or occupied space, the fake may be up to 40 m from the
    victim; remove: the target has fewer than 3 returns from other CAVs)."""
    if kind not in ("spoof", "remove"):
        raise TenfoldError(f"unknown attack kind {kind!r}; choose spoof or remove")
    scene = generate_scene(seed)
    rng = np.random.default_rng([seed, 7 if kind == "spoof" else 11])
    t = len(scene.frames) - 1
    attacker, victim = (int(x) for x in rng.choice(scene.cav_ids, size=2, replace=False))
    v_pos, a_pos = scene.pose(t, victim)[:2], scene.pose(t, attacker)[:2]
    if kind == "spoof":
        coverage = benign_view(scene, t, observe(scene, t, lidar), attacker) if unseen else None
        for _ in range(60 if unseen else 30):
            box = free_lane_spot(scene, t, v_pos, rng, 40.0 if unseen else VICTIM_RADIUS)
            if box is None:
                return None
            speed = rng.uniform(3.0, 10.0)
            vel = np.array([np.cos(box[4]), np.sin(box[4])]) * speed
            case = Case(seed, kind, attacker, victim, box, vel)
            prev = case.box_at(t - 1, scene)
            if (
                np.hypot(*(box[:2] - a_pos)) <= ATTACKER_RADIUS
                and _line_of_sight(scene, t, a_pos, box[:2])
                and free_lane_spot_ok(scene, t - 1, prev)
                and (coverage is None or coverage(box) < 0.1)
            ):
                return case
        return None
    scans = observe(scene, t, lidar)
    f = scene.frames[t]
    hits = scans[attacker].hit_ids
    cands = [
        int(i)
        for i, k, b in zip(f.ids, f.kinds, f.boxes, strict=True)
        if k == CAR
        and i not in scene.cav_ids
        and np.hypot(*(b[:2] - v_pos)) <= VICTIM_RADIUS
        and (hits == i).sum() >= 5
    ]
    if not cands:
        return None
    # a rational attacker removes the car whose evidence it controls most: fewest returns from other CAVs
    others = [sum((s.hit_ids == i).sum() for v, s in scans.items() if v != attacker) for i in cands]
    best = [i for i, n in zip(cands, others, strict=True) if n == min(others)]
    if unseen and min(others) >= 3:
        return None
    tid = best[rng.integers(len(best))]
    return Case(
        seed, kind, attacker, victim, f.boxes[f.index_of(tid)].copy(), scene.velocities[tid].copy(), tid
    )


def free_lane_spot_ok(scene: Scene, frame: int, box: np.ndarray) -> bool:
    grown = box.copy()
    grown[2:4] += 2.0
    return frame < 0 or box_iou(grown, scene.frames[frame].boxes).max() == 0


def make_cases(seeds, kind: str, unseen: bool = False) -> list[Case]:
    """Cases for every seed that has a valid target (seeds without one are skipped)."""
    return [c for s in seeds if (c := make_case(int(s), kind, unseen=unseen)) is not None]
