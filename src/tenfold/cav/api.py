"""What a user imports: simulate a scene, attack a victim's perception, run CAD on the result, and
benchmark attacks and CAD over many scenes (`bench`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tenfold.cav.attack import WhiteBoxConfig
from tenfold.cav.cases import Case, make_case
from tenfold.cav.defense import CADConfig, errors
from tenfold.cav.evaluate import Attacked, merged_map, run_attack
from tenfold.cav.perception import Perception
from tenfold.cav.train import load_perception
from tenfold.cav.world import Scene, generate_scene
from tenfold.core.errors import TenfoldError

__all__ = [
    "Detection",
    "attack_scene",
    "bench",
    "check_frame",
    "generate_scene",
    "load_perception",
    "make_case",
]


def attack_scene(
    seed: int,
    kind: str = "spoof",
    mode: str = "early",
    method: str = "raycast",
    perception: Perception | None = None,
    whitebox: WhiteBoxConfig | None = None,
) -> tuple[Case, Attacked]:
    """Attack the victim of scene `seed` (its case is drawn from the seed) and report what it perceives."""
    case = make_case(seed, kind)
    if case is None:
        raise TenfoldError(f"scene {seed} has no valid {kind} target; try another seed")
    perception = perception or load_perception()
    return case, run_attack(perception, case, mode, method, whitebox)


@dataclass
class Detection:
    """CAD's verdict on one frame: which detections hold observed free space, which occupied regions no
    detection explains, with the thresholds applied."""

    flagged_boxes: np.ndarray  # (K, 5) detections whose spoof error exceeds the threshold
    spoof_errors: np.ndarray  # per detection, m^2
    flagged_regions: list[tuple[float, np.ndarray]]  # (area m^2, centroid) above the threshold


def check_frame(
    scene: Scene,
    scans: dict,
    victim: int,
    boxes: np.ndarray,
    spoof_threshold: float,
    remove_threshold: float,
    cfg: CADConfig | None = None,
) -> Detection:
    """CAD on a frame: every vehicle's occupancy map from `scans`, merged, checked against `boxes`."""
    if spoof_threshold < 0 or remove_threshold < 0:
        raise TenfoldError(
            f"thresholds are areas in m^2 and must be >= 0, got {spoof_threshold}, {remove_threshold}"
        )
    t = len(scene.frames) - 1
    merged = merged_map(scene, scans, scene.pose(t, victim), cfg or CADConfig())
    e = errors(merged, boxes)
    keep = e.spoof > spoof_threshold
    return Detection(
        np.asarray(boxes)[keep] if len(boxes) else np.zeros((0, 5)),
        e.spoof,
        [(a, c) for a, c in e.regions if a > remove_threshold],
    )


def bench(cfg=None, quiet: bool = False) -> dict:
    """Fusion AP, every attack setting's success and CAD's TPR/FPR (`cfg`: a `cav.bench.BenchConfig`,
    default the full benchmark; `BenchConfig.quick()` is the quick reproduction's)."""
    from tenfold.cav.bench import BenchConfig, run_bench

    return run_bench(cfg or BenchConfig(), quiet=quiet)
