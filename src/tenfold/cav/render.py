"""PNG renderings of a frame: roads, buildings, true cars, each CAV's returns, the victim's detections,
the fabricated object and CAD's flagged regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tenfold.cav.geometry import corners
from tenfold.cav.lidar import Scan
from tenfold.cav.world import CAR, Scene
from tenfold.core.benchkit import save_figure


def render(
    path: str | Path,
    scene: Scene,
    frame: int,
    scans: dict[int, Scan],
    victim: int | None = None,
    attacker: int | None = None,
    detections: np.ndarray | None = None,
    target: np.ndarray | None = None,
    target_kind: str = "",
    flagged_boxes: np.ndarray | None = None,
    flagged_points: np.ndarray | None = None,
    title: str = "",
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon, Rectangle

    cfg = scene.config
    h, r = cfg.half_size, cfg.road_half_width
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.add_patch(Rectangle((-h, -r), 2 * h, 2 * r, color="0.88", zorder=0))
    ax.add_patch(Rectangle((-r, -h), 2 * r, 2 * h, color="0.88", zorder=0))
    f = scene.frames[frame]

    def draw(box, **kw):
        ax.add_patch(Polygon(corners(box)[0], closed=True, **kw))

    for b, k, i in zip(f.boxes, f.kinds, f.ids, strict=True):
        if k != CAR:
            draw(b, color="0.45", zorder=1)
        elif i == attacker:
            draw(b, fc="tab:red", ec="k", lw=0.8, zorder=2)
        elif i in scene.cav_ids:
            draw(b, fc="tab:green" if i != victim else "tab:cyan", ec="k", lw=0.8, zorder=2)
        else:
            draw(b, fill=False, ec="tab:blue", lw=1.2, zorder=2)
    colours = [
        "tab:green",
        "tab:purple",
        "tab:olive",
        "tab:brown",
        "tab:pink",
        "tab:gray",
    ]  # red: the attacker
    for n, (v, s) in enumerate(scans.items()):
        p = s.points
        ax.scatter(
            p[:, 0], p[:, 1], s=1.5, color="tab:red" if v == attacker else colours[n % len(colours)], zorder=3
        )
    for b in detections if detections is not None else []:
        draw(b[None], fill=False, ec="tab:orange", lw=1.5, ls="--", zorder=4)
    if target is not None:
        draw(target[None], fill=False, ec="magenta", lw=2.2, zorder=5)
        ax.annotate(target_kind, target[:2] + 2.5, color="magenta", fontsize=9)
    for b in flagged_boxes if flagged_boxes is not None else []:
        draw(b[None], fc=(1, 0, 0, 0.35), ec="red", lw=2, zorder=6)
    if flagged_points is not None and len(flagged_points):
        ax.scatter(
            flagged_points[:, 0],
            flagged_points[:, 1],
            s=250,
            facecolors="none",
            edgecolors="red",
            lw=2,
            zorder=6,
        )
    ax.set_xlim(-h, h)
    ax.set_ylim(-h, h)
    ax.set_aspect("equal")
    ax.set_title(title or f"scene {scene.seed}, frame {frame}", fontsize=10)
    ax.plot([], [], color="tab:blue", label="car")
    ax.plot([], [], color="tab:green", lw=6, label="CAV")
    ax.plot([], [], color="tab:cyan", lw=6, label="victim")
    ax.plot([], [], color="tab:red", lw=6, label="attacker")
    ax.plot([], [], color="tab:orange", ls="--", label="victim's detections")
    ax.plot([], [], color="magenta", label="attack target")
    ax.plot([], [], color="red", lw=4, alpha=0.5, label="flagged by CAD")
    ax.legend(loc="upper right", fontsize=7)
    return save_figure(fig, path, dpi=100)


def render_case(
    path, scene: Scene, case, attacked, title: str, flagged_boxes=None, flagged_points=None
) -> Path:
    """An attacked frame: the attacker's edited returns, the victim's detections, the target."""
    t = len(scene.frames) - 1
    return render(
        path,
        scene,
        t,
        attacked.scans,
        case.victim,
        case.attacker,
        attacked.boxes,
        case.box,
        case.kind,
        flagged_boxes,
        flagged_points,
        title,
    )
