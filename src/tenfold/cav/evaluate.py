"""Run one attack case under one setting, and collect CAD's evidence for it and for its benign frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tenfold.cav.attack import (
    Fabrication,
    Patch,
    WhiteBoxConfig,
    apply,
    naive_spoof,
    optimise_patch,
    raycast_remove,
    raycast_spoof,
    shape_remove,
    success,
    zero_patch,
)
from tenfold.cav.cases import Case
from tenfold.cav.defense import CADConfig, Errors, OccupancyMap, errors, occupancy_map
from tenfold.cav.geometry import box_iou, box_mask
from tenfold.cav.lidar import Scan
from tenfold.cav.perception import Perception, observe, visible_cars
from tenfold.cav.world import CAR, Scene, generate_scene
from tenfold.core.errors import TenfoldError

# (fusion mode, attack) pairs the benchmark runs
SETTINGS = (
    ("early", "naive"),
    ("early", "raycast"),
    ("early", "raycast-async"),
    ("early", "shape"),
    ("intermediate", "raycast"),
    ("intermediate", "whitebox"),
    ("intermediate", "whitebox-async"),
    ("intermediate", "whitebox-online"),
)
ONLY = {"naive": "spoof", "shape": "remove"}  # attacks that exist for one kind only
MATCH_RADIUS = 2.0  # an error counts for an object when its centroid lies this close (the paper's 2 m)


def applicable(kind: str, attack: str) -> bool:
    return ONLY.get(attack, kind) == kind


def fabricate(case: Case, scene: Scene, frame: int, scan: Scan) -> Fabrication:
    """The ray-cast edit of the attacker's scan of `frame`, for the target's box on that frame."""
    box = case.box_at(frame, scene)
    if case.kind == "spoof":
        return raycast_spoof(scan, box, np.random.default_rng([case.seed, frame, 99]))
    return raycast_remove(scan, scene.frames[frame], case.target_id, box)


def _async_edit(case: Case, scene: Scene, t: int, scans_t: dict[int, Scan]) -> Scan:
    """Computed on frame t-1, applied at t: spoofed points follow the fake car's motion; for a removal the
    deleted region follows the target (the attacker tracks it) while its background points stay put."""
    prev = observe(scene, t - 1)[case.attacker]
    fab = fabricate(case, scene, t - 1, prev)
    return apply(scans_t[case.attacker], fab.shifted(case.velocity * scene.config.dt, case.kind == "spoof"))


@dataclass
class Attacked:
    """What the victim perceives under attack, and what CAD needs about it."""

    scans: dict[int, Scan]  # with the attacker's edited scan (the true ones are in `true_scans`)
    true_scans: dict[int, Scan]
    boxes: np.ndarray
    scores: np.ndarray
    success: bool
    patch: Patch | None = None


def run_attack(
    perception: Perception,
    case: Case,
    mode: str,
    attack: str,
    wb: WhiteBoxConfig | None = None,
    scene: Scene | None = None,
) -> Attacked:
    """Attack the victim's perception of the case's last frame; `attack` is one of the SETTINGS names."""
    if (mode, attack) not in SETTINGS:
        raise TenfoldError(
            f"unknown setting {mode}/{attack}; choose from {', '.join('/'.join(s) for s in SETTINGS)}"
        )
    if attack == "naive" and case.kind != "spoof":
        raise TenfoldError("the naive blob attack only spoofs")
    if attack == "shape" and case.kind != "remove":
        raise TenfoldError("the adversarial-shape attack only removes")
    wb = wb or WhiteBoxConfig()
    scene = scene or generate_scene(case.seed)
    t = len(scene.frames) - 1
    true_scans = observe(scene, t)
    att = case.attacker
    target = case.box_at(t, scene)
    offline = fabricate(case, scene, t, true_scans[att])
    if attack == "naive":
        edited = naive_spoof(
            true_scans[att], target, len(offline.points), np.random.default_rng([case.seed, 5])
        )
    elif attack == "shape":
        centre_v = scene.pose(t, case.victim)

        def score(fab: Fabrication) -> float:
            trial = dict(true_scans)
            trial[att] = apply(true_scans[att], fab)
            return perception.target_confidence(trial, case.victim, mode, centre_v, target)

        edited = apply(
            true_scans[att],
            shape_remove(
                true_scans[att],
                scene.frames[t],
                case.target_id,
                target,
                score,
                np.random.default_rng([case.seed, 13]),
            ),
        )
    elif attack.endswith("async") or attack.endswith("online"):
        edited = _async_edit(case, scene, t, true_scans)
    else:
        edited = apply(true_scans[att], offline)
    scans = dict(true_scans)
    scans[att] = edited
    centre = scene.pose(t, case.victim)
    patch = None
    if attack.startswith("whitebox"):
        if attack == "whitebox":
            patch = optimise_patch(
                perception,
                scans,
                att,
                case.victim,
                centre,
                case.kind,
                target,
                zero_patch(perception, wb),
                wb.steps,
                wb.lr,
            )
        elif attack == "whitebox-async":
            prev = dict(observe(scene, t - 1))
            prev[att] = apply(prev[att], fabricate(case, scene, t - 1, prev[att]))
            patch = optimise_patch(
                perception,
                prev,
                att,
                case.victim,
                scene.pose(t - 1, case.victim),
                case.kind,
                case.box_at(t - 1, scene),
                zero_patch(perception, wb),
                wb.steps,
                wb.lr,
            )
        else:  # online: from the first frame on, a few warm-started steps per frame, each used one frame later
            patch = zero_patch(perception, wb)
            for k in range(1, t):
                obs = dict(observe(scene, k))
                obs[att] = apply(obs[att], fabricate(case, scene, k, obs[att]))
                patch = optimise_patch(
                    perception,
                    obs,
                    att,
                    case.victim,
                    scene.pose(k, case.victim),
                    case.kind,
                    case.box_at(k, scene),
                    patch,
                    wb.online_steps,
                    wb.online_lr,
                )
        p = patch
        boxes, scores = perception.detect(
            scans, case.victim, mode, centre, edit=(att, lambda f: f + p.place(target, centre, perception))
        )
    else:
        boxes, scores = perception.detect(scans, case.victim, mode, centre)
    return Attacked(scans, true_scans, boxes, scores, success(case.kind, boxes, target), patch)


# ------------------------------------------------------------------------------------------------ CAD


def merged_map(
    scene: Scene, scans: dict[int, Scan], centre: np.ndarray, cfg: CADConfig, skip: int | None = None
) -> OccupancyMap | None:
    f = scene.frames[-1]
    maps = [
        occupancy_map(s, scene, centre, cfg, f.boxes[f.index_of(v)]) for v, s in scans.items() if v != skip
    ]
    if not maps:
        return None
    out = maps[0]
    for m in maps[1:]:
        out = out.union(m)
    return out


def region_score(err: Errors, xy: np.ndarray) -> float:
    """The largest unexplained-occupancy region whose centroid lies within 2 m of `xy`."""
    near = [a for a, c in err.regions if np.hypot(*(c - xy[:2])) <= MATCH_RADIUS]
    return max(near, default=0.0)


def spoof_score(err: Errors, boxes: np.ndarray, target: np.ndarray) -> float:
    """The largest spoof error among the detections that overlap the fake box."""
    if len(boxes) == 0:
        return 0.0
    hit = box_iou(boxes, target[None])[:, 0] > 0
    return float(err.spoof[hit].max()) if hit.any() else 0.0


@dataclass
class Evidence:
    """CAD scores of the attack (positive) and of the benign frame's legitimate objects (negatives)."""

    positive: float  # the attack's error, m^2
    positive_forged: float  # the same when the attacker's occupancy map is built from its edited scan
    observed: bool  # some benign vehicle saw (free or occupied) part of the target box
    negatives: dict[str, list[float]]  # "spoof": errors of real detected cars; "remove": regions at real cars
    benign_errors: int  # the detector's own mistakes in the benign frame (unmatched boxes, missed cars)


def collect_evidence(
    perception: Perception,
    case: Case,
    attacked: Attacked,
    mode: str,
    cfg: CADConfig | None = None,
    scene: Scene | None = None,
) -> Evidence:
    cfg = cfg or CADConfig()
    scene = scene or generate_scene(case.seed)
    t = len(scene.frames) - 1
    centre = scene.pose(t, case.victim)
    target = case.box_at(t, scene)
    honest = merged_map(scene, attacked.true_scans, centre, cfg)
    forged = merged_map(scene, attacked.scans, centre, cfg)
    benign = merged_map(scene, attacked.true_scans, centre, cfg, skip=case.attacker)

    def score(m: OccupancyMap) -> float:
        e = errors(m, attacked.boxes)
        return spoof_score(e, attacked.boxes, target) if case.kind == "spoof" else region_score(e, target)

    xs, ys = benign.cell_centres()
    cells = box_mask(target[None], xs, ys)
    seen = (benign.free | benign.occupied)[cells].mean() if cells.any() else 0.0
    # the benign frame: the same victim with nobody attacking
    boxes, _ = perception.detect(attacked.true_scans, case.victim, mode, centre)
    e = errors(honest, boxes)
    cars = scene.frames[t].boxes[scene.frames[t].kinds == CAR]
    truth = visible_cars(scene, t, attacked.true_scans, case.victim, perception.grid)
    iou_pred = box_iou(boxes, cars) if len(boxes) and len(cars) else np.zeros((len(boxes), len(cars)))
    real = iou_pred.max(1) > 0 if len(cars) else np.zeros(len(boxes), bool)
    iou_truth = box_iou(truth, boxes) if len(truth) and len(boxes) else np.zeros((len(truth), len(boxes)))
    found = iou_truth.max(1) > 0 if len(boxes) else np.zeros(len(truth), bool)
    negatives = {
        "spoof": [float(x) for x in e.spoof[real]],
        "remove": [region_score(e, b) for b in truth[found]],
    }
    return Evidence(
        score(honest), score(forged), bool(seen >= 0.1), negatives, int((~real).sum() + (~found).sum())
    )


def pick_threshold(pos: list[float], neg: list[float]) -> tuple[float, float, float]:
    """Threshold maximising TPR * (1 - FPR) (the paper's operating point): (threshold, TPR, FPR).

    An item is flagged when its error is strictly above the threshold."""
    pos_a, neg_a = np.asarray(pos, float), np.asarray(neg, float)
    cands = np.unique(np.concatenate([[0.0], pos_a, neg_a]))
    best = (0.0, -1.0, 0.0, 0.0)
    for th in cands:
        tpr = (pos_a > th).mean() if len(pos_a) else 0.0
        fpr = (neg_a > th).mean() if len(neg_a) else 0.0
        if tpr * (1 - fpr) > best[1]:
            best = (float(th), tpr * (1 - fpr), float(tpr), float(fpr))
    return best[0], best[2], best[3]
