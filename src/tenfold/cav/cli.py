"""`tenfold cav ...`: simulate scenes, train the victim's detectors, attack, detect, benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tenfold.core.benchkit import JsonOpt, PlotOpt, QuickOpt, QuietOpt, WorkersOpt, finish_bench

app = typer.Typer(
    help="Data-fabrication attacks on collaborative LiDAR perception and collaborative anomaly detection.",
    no_args_is_help=True,
)

KindOpt = Annotated[str, typer.Option(help="spoof (a phantom car) or remove (hide a real one)")]
ModeOpt = Annotated[str, typer.Option(help="victim's fusion: early or intermediate")]
AttackOpt = Annotated[
    str,
    typer.Option(
        help="naive, raycast, raycast-async (early); raycast, whitebox, whitebox-async, whitebox-online (intermediate)"
    ),
]


@app.command()
def simulate(
    seed: int = 0,
    frame: Annotated[int, typer.Option(help="frame to render (-1 = last)")] = -1,
    out: Annotated[Path, typer.Option(help="PNG rendering")] = Path("cav_scene.png"),
) -> None:
    """Generate a scene, scan it with every CAV's LiDAR, render one frame."""
    from tenfold.cav.perception import observe
    from tenfold.cav.render import render
    from tenfold.cav.world import CAR, generate_scene
    from tenfold.core.errors import TenfoldError

    scene = generate_scene(seed)
    if not -len(scene.frames) <= frame < len(scene.frames):
        raise TenfoldError(f"frame {frame} is out of range for a {len(scene.frames)}-frame scene")
    t = frame % len(scene.frames)
    scans = observe(scene, t)
    f = scene.frames[t]
    render(out, scene, t, scans, title=f"scene {seed}, frame {t}: {len(scene.cav_ids)} CAVs")
    print(
        f"scene {seed}: {(f.kinds == CAR).sum()} cars ({len(scene.cav_ids)} connected), "
        f"{(f.kinds != CAR).sum()} buildings, {len(scene.frames)} frames; "
        f"returns per CAV: {[len(s.points) for s in scans.values()]} -> {out}"
    )


@app.command()
def train(
    retrain: bool = False,
    steps: Annotated[
        int | None, typer.Option(help="training steps per detector (default: the recipe's)")
    ] = None,
    eval_scenes: int = 30,
    quiet: bool = False,
) -> None:
    """Train (or load from the cache) the early and intermediate detectors; print AP per fusion mode."""
    from dataclasses import replace

    from tenfold.cav.train import TEST_SEED_OFFSET, TrainConfig, evaluate_ap, load_perception

    cfg = TrainConfig() if steps is None else replace(TrainConfig(), steps=steps)
    perception = load_perception(cfg, retrain=retrain, quiet=quiet)
    ap = evaluate_ap(perception, [TEST_SEED_OFFSET + i for i in range(eval_scenes)], quiet=quiet)
    for mode, v in ap.items():
        print(f"{mode:13s} AP@0.5 {v['ap50']:.3f}  AP@0.7 {v['ap70']:.3f}")


@app.command()
def attack(
    seed: int = 0,
    kind: KindOpt = "spoof",
    mode: ModeOpt = "early",
    method: AttackOpt = "raycast",
    out: Annotated[Path | None, typer.Option(help="PNG rendering of the attacked frame")] = None,
) -> None:
    """Attack the victim of scene SEED; print whether it worked; optionally render it."""
    from tenfold.cav.api import attack_scene as run

    case, a = run(seed, kind, mode, method)
    print(
        f"scene {seed}: attacker {case.attacker} -> victim {case.victim}, {kind} at "
        f"({case.box[0]:.1f}, {case.box[1]:.1f}), {mode}/{method}: "
        f"{'SUCCESS' if a.success else 'failed'} ({len(a.boxes)} detections)"
    )
    if out:
        from tenfold.cav.render import render_case
        from tenfold.cav.world import generate_scene

        status = "success" if a.success else "failed"
        render_case(out, generate_scene(seed), case, a, f"scene {seed}: {kind} via {mode}/{method}: {status}")
        print(f"-> {out}")


@app.command()
def detect(
    seed: int = 0,
    kind: KindOpt = "spoof",
    mode: ModeOpt = "early",
    method: AttackOpt = "raycast",
    spoof_threshold: Annotated[
        float, typer.Option(help="m^2 of observed free space a detection may hold (default: validation pick)")
    ] = 6.3,
    remove_threshold: Annotated[
        float, typer.Option(help="m^2 of unexplained occupied space allowed (default: validation pick)")
    ] = 4.1,
    forged: Annotated[
        bool, typer.Option(help="the attacker builds its occupancy map from its fabricated scan")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="PNG rendering with the flagged regions")] = None,
) -> None:
    """Attack scene SEED, then run collaborative anomaly detection (CAD) on the victim's frame."""
    import numpy as np

    from tenfold.cav.api import attack_scene as run
    from tenfold.cav.api import check_frame as cad
    from tenfold.cav.world import generate_scene

    case, a = run(seed, kind, mode, method)
    scene = generate_scene(seed)
    d = cad(
        scene, a.scans if forged else a.true_scans, case.victim, a.boxes, spoof_threshold, remove_threshold
    )
    near = [c for _, c in d.flagged_regions if np.hypot(*(c - case.box[:2])) <= 2.0]
    from tenfold.cav.geometry import box_iou

    caught_box = len(d.flagged_boxes) and box_iou(d.flagged_boxes, case.box[None]).max() > 0
    caught = bool(caught_box) if kind == "spoof" else bool(near)
    print(
        f"attack {'succeeded' if a.success else 'failed'}; CAD flagged {len(d.flagged_boxes)} detections and "
        f"{len(d.flagged_regions)} unexplained regions; the attack is {'DETECTED' if caught else 'not detected'}"
    )
    if out:
        from tenfold.cav.render import render_case

        pts = np.array([c for _, c in d.flagged_regions]) if d.flagged_regions else None
        title = f"scene {seed}: {kind} via {mode}/{method}; CAD: {'detected' if caught else 'missed'}"
        render_case(out, scene, case, a, title, d.flagged_boxes, pts)
        print(f"-> {out}")


@app.command()
def bench(
    quick: QuickOpt = True,
    json_path: JsonOpt = None,
    plot_path: PlotOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="write cav_bench.json, .md and .png into this folder")
    ] = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """AP per fusion mode, attack success per setting, CAD's TPR/FPR; JSON, markdown table and plot."""
    from tenfold.cav import api
    from tenfold.cav.bench import BenchConfig, markdown, plot

    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg.workers = workers
    result = api.bench(cfg, quiet=quiet)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        json_path, plot_path = json_path or out / "cav_bench.json", plot_path or out / "cav_bench.png"
        (out / "cav_bench.md").write_text(markdown(result) + "\n")
    finish_bench(result, markdown(result), json_path, plot_path, plot)
    print(json.dumps({"seconds": round(result["seconds"], 1)}))
