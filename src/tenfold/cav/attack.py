"""Data-fabrication attacks on collaborative perception (Zhang et al., USENIX Security 2024).

Black-box, early fusion (the attacker edits only its own scan, consistently with its own rays):
- ray-cast spoof: put a car-sized box at the target and cast the attacker's rays against it; a ray's
  return is replaced by the box hit whenever the box is nearer (a fake object can only shorten returns);
- ray-cast remove: every return inside the target box grown by 0.6 m is replaced by what the same ray
  hits when the target is taken out of the scene (here: nothing, or another object behind it);
- naive spoof (for contrast): a Gaussian blob of as many points as the ray-cast spoof would add, with
  no regard for the rays.
White-box, intermediate fusion: a perturbation patch delta (C x 20 x 20 feature cells, in the target's
frame, placed with sub-pixel accuracy by `affine_grid`/`grid_sample`) is added to the attacker's shared
feature map, clipped to +-clip, optimised with Adam on  sum_cells w * log(1 - p)  (spoof) or its
negation (remove), w a Gaussian weight around the target centre (the paper weights anchors by IoU);
it starts from the ray-cast edit. By default the spoof loss also pulls the box regression toward the
fake car (`box_weight`; 0 gives the paper's loss), so the phantom has a car's footprint.
Real time: `async` computes the edit on frame t-1 and applies it at t (fabricated points shifted by the
object's motion; the patch follows the target); `online` warm-starts delta from the previous frame and
takes a few Adam steps per frame.
Success (the paper's rule): a spoof succeeds when any victim box has IoU > 0 with the fake box; a
removal when no victim box overlaps the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from tenfold.cav.geometry import box_iou, points_in_boxes, ray_box_distances, to_box_frame
from tenfold.cav.lidar import Scan, cast
from tenfold.cav.perception import Perception
from tenfold.cav.world import Frame
from tenfold.core.errors import TenfoldError

FAKE_ID = -2  # hit id of a fabricated return
KINDS = ("spoof", "remove")
REMOVE_MARGIN = 0.6  # metres: the target box is grown by this much before its returns are replaced


@dataclass
class Fabrication:
    """An edit of one scan, computed at some frame: returns to delete and fabricated points to insert."""

    kind: str
    box: np.ndarray  # the fake (spoof) or removed (remove) box, when computed
    points: np.ndarray  # (K, 2) world-frame fabricated returns
    delete_box: np.ndarray | None = None  # remove: returns inside this box are deleted

    def shifted(self, delta: np.ndarray, shift_points: bool) -> Fabrication:
        box = self.box.copy()
        box[:2] += delta
        pts = self.points + delta if shift_points else self.points
        dbox = None
        if self.delete_box is not None:
            dbox = self.delete_box.copy()
            dbox[:2] += delta
        return Fabrication(self.kind, box, pts, dbox)


def raycast_spoof(scan: Scan, fake: np.ndarray, rng: np.random.Generator, noise: float = 0.03) -> Fabrication:
    """Returns the attacker's own rays would give if a car stood at `fake`."""
    d = ray_box_distances(scan.origin, scan.angles, fake[None])[:, 0]
    nearer = np.isfinite(d) & (d <= scan.max_range) & (d < scan.ranges)
    r = d[nearer] + rng.normal(0, noise, size=int(nearer.sum()))
    pts = scan.origin + scan.directions()[nearer] * r[:, None]
    return Fabrication("spoof", fake.copy(), pts)


def raycast_remove(scan: Scan, frame: Frame, target_id: int, target: np.ndarray) -> Fabrication:
    """Replacement returns for rays that end in the grown target box: what lies behind it."""
    pts = scan.ray_points
    hit_rays = np.nonzero(scan.valid)[0][points_in_boxes(pts, target[None], REMOVE_MARGIN)[:, 0]]
    others = frame.ids != target_id
    d, _ = cast(scan.origin, scan.angles[hit_rays], frame.boxes[others], frame.ids[others], scan.max_range)
    keep = np.isfinite(d)
    repl = scan.origin + scan.directions()[hit_rays[keep]] * d[keep, None]
    grown = target.copy()
    grown[2:4] += 2 * REMOVE_MARGIN
    return Fabrication("remove", target.copy(), repl, grown)


def naive_spoof(scan: Scan, fake: np.ndarray, n_points: int, rng: np.random.Generator) -> Scan:
    """A point blob at the fake box (its size as the spread), added without any ray consistency."""
    local = rng.normal(0, 1, size=(max(n_points, 1), 2)) * [fake[2] / 4, fake[3] / 4]
    c, s = np.cos(fake[4]), np.sin(fake[4])
    blob = fake[:2] + local @ np.array([[c, s], [-s, c]])
    out = scan.copy()
    out.extra = blob if out.extra is None else np.concatenate([out.extra, blob])
    return out


def apply(scan: Scan, fab: Fabrication) -> Scan:
    """Insert a fabrication into a scan, ray by ray.

    Each fabricated point goes to the attacker's azimuth bin that contains it. A spoofed point replaces
    the bin's return only when it is nearer; for a removal, returns in `delete_box` are deleted first and
    the replacement points fill those bins. At the frame the fabrication was computed for, this gives
    back the exact ray-cast edit; on a later frame (the async attack) it is the shifted, stale edit.
    """
    out = scan.copy()
    if fab.delete_box is not None:
        pts = out.ray_points
        rays = np.nonzero(out.valid)[0][points_in_boxes(pts, fab.delete_box[None])[:, 0]]
        out.ranges[rays] = np.inf
        out.hit_ids[rays] = -1
    if len(fab.points) == 0:
        return out
    rel = fab.points - out.origin
    ang = np.arctan2(rel[:, 1], rel[:, 0])
    step = 2 * np.pi / len(out.angles)
    bins = np.floor(((ang - out.angles[0] + step / 2) % (2 * np.pi)) / step).astype(int) % len(out.angles)
    rng_ = np.hypot(rel[:, 0], rel[:, 1])
    order = np.argsort(-rng_)  # nearest written last, so it wins a shared bin
    for b, r in zip(bins[order], rng_[order], strict=True):
        if r <= out.max_range and (
            fab.kind == "remove" and not np.isfinite(out.ranges[b]) or r < out.ranges[b]
        ):
            out.ranges[b] = r
            out.hit_ids[b] = FAKE_ID
    return out


def success(kind: str, boxes: np.ndarray, target: np.ndarray) -> bool:
    """The paper's rule: spoof -> some box has IoU > 0 with the fake; remove -> none overlaps the target."""
    overlap = bool(len(boxes) > 0 and box_iou(boxes, target[None]).max() > 0)
    return overlap if kind == "spoof" else not overlap


# --------------------------------------------------------------------------------- white-box (intermediate)


@dataclass(frozen=True)
class WhiteBoxConfig:
    patch: int = 20  # feature cells per side (1 m cells: a 20 m patch around the target)
    clip: float = 10.0  # the paper's +-10 bound on the perturbation
    lr: float = 0.05  # offline: Adam lr 0.05 for 100 steps (the paper's setting)
    steps: int = 100
    online_lr: float = 1.0  # online: the paper's single-step lr 1-2, warm-started every frame
    online_steps: int = 2
    sigma_spoof: float = 1.0  # Gaussian weight (feature cells) around the target centre
    sigma_remove: float = 2.5
    # a stronger attacker than the paper's: also pull the spoofed box's regression (offset, size, yaw)
    # toward the fake car, so the phantom has a car's footprint; 0 = the paper's loss
    box_weight: float = 1.0


@dataclass
class Patch:
    """A perturbation in the target's own frame; `place` turns it into a full-map additive term."""

    delta: torch.Tensor  # (C, P, P)
    cfg: WhiteBoxConfig = field(default_factory=WhiteBoxConfig)

    def place(self, target: np.ndarray, centre: np.ndarray, perception: Perception) -> torch.Tensor:
        g = perception.grid
        fs, fc = g.feat_size, g.feat_cell
        xs = (torch.arange(fs, dtype=torch.float64) + 0.5) * fc - g.half_range + float(centre[0])
        ys = (torch.arange(fs, dtype=torch.float64) + 0.5) * fc - g.half_range + float(centre[1])
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        local = to_box_frame(np.stack([gx.numpy().ravel(), gy.numpy().ravel()], -1), target)
        half = self.cfg.patch * fc / 2
        grid = (
            torch.from_numpy(local / half).float().reshape(1, fs, fs, 2)
        )  # (x, y) in [-1, 1] inside the patch
        return F.grid_sample(self.delta[None], grid, align_corners=False, padding_mode="zeros")[0]


def _weights(target: np.ndarray, centre: np.ndarray, perception: Perception, sigma: float) -> torch.Tensor:
    g = perception.grid
    fs, fc = g.feat_size, g.feat_cell
    u = (target[0] - centre[0] + g.half_range) / fc
    v = (target[1] - centre[1] + g.half_range) / fc
    ys, xs = np.mgrid[0:fs, 0:fs]
    w = np.exp(-((xs + 0.5 - u) ** 2 + (ys + 0.5 - v) ** 2) / (2 * sigma**2))
    return torch.from_numpy(np.where(w > 0.01, w, 0.0)).float()


def optimise_patch(
    perception: Perception,
    scans: dict[int, Scan],
    attacker: int,
    victim: int,
    centre: np.ndarray,
    kind: str,
    target: np.ndarray,
    patch: Patch,
    steps: int,
    lr: float,
) -> Patch:
    """Adam on the patch against the victim's intermediate-fusion detector (frozen); returns a new patch.

    Only the attacker's map changes, so the other vehicles' fused features are computed once, and the
    head runs on a window around the target wide enough for the weights and its receptive field.
    """
    if kind not in KINDS:
        raise TenfoldError(f"unknown attack kind {kind!r}; choose spoof or remove")
    cfg = patch.cfg
    w = _weights(target, centre, perception, cfg.sigma_spoof if kind == "spoof" else cfg.sigma_remove)
    model = perception.models["intermediate"]
    with torch.no_grad():
        x = perception.inputs(scans, victim, "intermediate", centre)[0]
        feats = model.encode(x)
        k = list(scans).index(attacker)
        others = torch.cat([feats[:k], feats[k + 1 :]]).amax(0) if len(feats) > 1 else None
        own = feats[k]
    g = perception.grid
    ci = int((target[1] - centre[1] + g.half_range) / g.feat_cell)
    cj = int((target[0] - centre[0] + g.half_range) / g.feat_cell)
    half = int(3 * max(cfg.sigma_spoof, cfg.sigma_remove)) + 8
    i0, i1 = max(ci - half, 0), min(ci + half, g.feat_size)
    j0, j1 = max(cj - half, 0), min(cj + half, g.feat_size)
    w = w[i0:i1, j0:j1]
    reg_t = torch.from_numpy(_box_targets(target, centre, perception))[:, i0:i1, j0:j1]
    reg_w = (w > 0.1).float() if kind == "spoof" and cfg.box_weight > 0 else None
    delta = patch.delta.clone().requires_grad_(True)
    opt = torch.optim.Adam([delta], lr=lr)
    for p in model.parameters():
        p.requires_grad_(False)
    for _ in range(steps):
        shared = own + Patch(delta, cfg).place(target, centre, perception)
        fused = shared if others is None else torch.maximum(shared, others)
        out = model.head(fused[None, :, i0:i1, j0:j1])[0]
        log1mp = F.logsigmoid(-out[0])  # log(1 - p), numerically stable
        loss = (w * log1mp).sum() if kind == "spoof" else -(w * log1mp).sum()
        if reg_w is not None:  # once the phantom is confident (p >= 0.95), only its footprint is optimised
            loss = (w * log1mp.clamp(min=float(np.log(0.05)))).sum()
            loss = loss + cfg.box_weight * (reg_w * (out[1:] - reg_t).abs().sum(0)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            delta.clamp_(-cfg.clip, cfg.clip)
    return Patch(delta.detach(), cfg)


def _box_targets(target: np.ndarray, centre: np.ndarray, perception: Perception) -> np.ndarray:
    """(6, H, W): what each feature cell would regress if the target's centre fell in it."""
    g = perception.grid
    fs, fc = g.feat_size, g.feat_cell
    u = (target[0] - centre[0] + g.half_range) / fc
    v = (target[1] - centre[1] + g.half_range) / fc
    ys, xs = np.mgrid[0:fs, 0:fs].astype(np.float32)
    const = [np.log(target[2]), np.log(target[3]), np.cos(2 * target[4]), np.sin(2 * target[4])]
    return np.stack([u - xs - 0.5, v - ys - 0.5, *[np.full((fs, fs), c, np.float32) for c in const]]).astype(
        np.float32
    )


def zero_patch(perception: Perception, cfg: WhiteBoxConfig) -> Patch:
    c = perception.models["intermediate"].head[0][0].in_channels
    return Patch(torch.zeros(c, cfg.patch, cfg.patch), cfg)


# ------------------------------------------------------------------ adversarial-shape removal (black box)


def ray_polygon_distances(origin: np.ndarray, angles: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """(A,) distance along each ray to the closed polygon `poly` (V, 2); inf where it misses."""
    a = poly
    b = np.roll(poly, -1, axis=0)
    d = np.stack([np.cos(angles), np.sin(angles)], -1)  # (A, 2)
    e = b - a  # (V, 2)
    w = a - origin  # (V, 2)
    den = d[:, None, 0] * e[None, :, 1] - d[:, None, 1] * e[None, :, 0]  # cross(d, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[None, :, 0] * e[None, :, 1] - w[None, :, 1] * e[None, :, 0]) / den  # along the ray
        u = (w[None, :, 0] * d[:, None, 1] - w[None, :, 1] * d[:, None, 0]) / den  # along the edge
    ok = (np.abs(den) > 1e-12) & (t > 0) & (u >= 0) & (u <= 1)
    return np.where(ok, t, np.inf).min(1)


@dataclass(frozen=True)
class ShapeConfig:
    """The paper's genetic search: 5 generations of 10 shapes, vertex offsets within +-0.2 m."""

    generations: int = 5
    population: int = 10
    offset: float = 0.2
    vertices_per_side: int = 3  # vertices along each side of the box outline (corners included once)


def _outline(box: np.ndarray, per_side: int) -> np.ndarray:
    c = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=float)  # corners in box units, counter-clockwise
    pts = []
    for i in range(4):
        p, q = c[i], c[(i + 1) % 4]
        for k in range(per_side - 1):
            pts.append(p + (q - p) * k / (per_side - 1))
    local = np.array(pts) * [box[2] / 2, box[3] / 2]
    cs, sn = np.cos(box[4]), np.sin(box[4])
    return box[:2] + local @ np.array([[cs, sn], [-sn, cs]])


def shape_remove(
    scan: Scan,
    frame: Frame,
    target_id: int,
    target: np.ndarray,
    score,
    rng: np.random.Generator,
    cfg: ShapeConfig | None = None,
) -> Fabrication:
    """Removal by an adversarial shape: the target's returns are replaced by hits on a deformed outline of
    the target, whose vertex offsets a genetic search picks to minimise `score(fabrication)` (the victim
    detector's confidence at the target; queried as a black box). Rays that miss the shape get the
    background, as in `raycast_remove`."""
    cfg = cfg or ShapeConfig()
    base = raycast_remove(scan, frame, target_id, target)
    pts = scan.ray_points
    rays = np.nonzero(scan.valid)[0][points_in_boxes(pts, target[None], REMOVE_MARGIN)[:, 0]]
    outline = _outline(target, cfg.vertices_per_side)
    others = frame.ids != target_id
    bg, _ = cast(scan.origin, scan.angles[rays], frame.boxes[others], frame.ids[others], scan.max_range)

    def build(offsets: np.ndarray) -> Fabrication:
        d = ray_polygon_distances(scan.origin, scan.angles[rays], outline + offsets)
        r = np.minimum(d, bg)
        keep = np.isfinite(r)
        p = scan.origin + scan.directions()[rays[keep]] * r[keep, None]
        return Fabrication("remove", target.copy(), p, base.delete_box)

    pop = rng.uniform(-cfg.offset, cfg.offset, size=(cfg.population, *outline.shape))
    scores = np.array([score(build(x)) for x in pop])
    for _ in range(cfg.generations - 1):
        elite = pop[np.argsort(scores)[: cfg.population // 2]]
        kids = []
        for _k in range(cfg.population - len(elite)):
            a, b = elite[rng.integers(len(elite))], elite[rng.integers(len(elite))]
            mix = rng.random(a.shape[0])[:, None] < 0.5
            child = np.where(mix, a, b) + rng.normal(0, cfg.offset / 3, size=a.shape)
            kids.append(np.clip(child, -cfg.offset, cfg.offset))
        kid_scores = np.array([score(build(x)) for x in kids])
        pop = np.concatenate([elite, np.array(kids)])
        scores = np.concatenate([np.sort(scores)[: len(elite)], kid_scores])
    best = build(pop[int(np.argmin(scores))])
    # the plain removal is a candidate too: the search never does worse than deleting
    return best if min(scores) < score(base) else base
