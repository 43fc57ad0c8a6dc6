"""Training the victim's detectors on generated scenes, cached under $TENFOLD_CACHE.

Each training sample is (scene, frame, victim, a random subset of the CAVs that includes the victim), so
one early-fusion model also serves single-vehicle input, and the intermediate model sees 1-5 vehicles.
Targets are the cars other than the victim with >= 3 returns from the chosen subset.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tenfold.cav.detector import (
    BEVDetector,
    DetectorConfig,
    GridConfig,
    detection_loss,
    make_targets,
    rasterize,
)
from tenfold.cav.lidar import LidarConfig
from tenfold.cav.metrics import average_precision
from tenfold.cav.perception import Perception, observe, visible_cars
from tenfold.cav.world import GENERATOR_VERSION, WorldConfig, generate_scene
from tenfold.core.artefacts import register_artefact
from tenfold.core.cache import Artefact
from tenfold.core.errors import TenfoldError
from tenfold.core.progress import progress_bar

VAL_SEED_OFFSET = 1_000_000  # validation / test scenes are drawn from seeds far from the training ones
TEST_SEED_OFFSET = 2_000_000


@dataclass(frozen=True)
class TrainConfig:
    scenes: int = 300
    frames: tuple[int, ...] = (0, 3, 6, 9)
    steps: int = 800
    batch: int = 16
    lr: float = 2e-3
    seed: int = 0
    detector: DetectorConfig = DetectorConfig()

    def __post_init__(self):
        if self.scenes < 1 or self.steps < 1 or self.batch < 1 or self.lr <= 0:
            raise TenfoldError(f"bad training config {self}")


class SampleBank:
    """Per (scene, frame): every CAV's points and the per-vehicle return counts of each object."""

    def __init__(self, seeds: list[int], frames: tuple[int, ...], grid: GridConfig, lidar: LidarConfig):
        self.grid, self.items = grid, []
        for seed in seeds:
            scene = generate_scene(seed)
            for t in frames:
                scans = observe(scene, t, lidar)
                self.items.append((scene, t, scans))

    def sample(self, rng: np.random.Generator, fused: bool):
        """One random training example: the input rasters (V, 2, S, S) and the targets."""
        scene, t, scans = self.items[rng.integers(len(self.items))]
        ids = list(scans)
        victim = ids[rng.integers(len(ids))]
        others = [i for i in ids if i != victim]
        k = rng.integers(0, len(others) + 1)
        chosen = [victim] + list(rng.choice(others, size=k, replace=False))
        sub = {i: scans[i] for i in chosen}
        centre = scene.pose(t, victim)
        truth = visible_cars(scene, t, sub, victim, self.grid)
        if fused:
            x = np.concatenate([s.points for s in sub.values()])
            rasters = rasterize(x, centre, self.grid)[None]
        else:
            rasters = np.stack([rasterize(s.points, centre, self.grid) for s in sub.values()])
        return rasters, make_targets(truth, centre, self.grid)


def train_detector(mode: str, cfg: TrainConfig, out: Path, quiet: bool = False) -> dict:
    """Train the early (`mode='early'`) or intermediate detector; writes weights and a log to `out`."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    grid = GridConfig()
    bank = SampleBank(list(range(cfg.scenes)), cfg.frames, grid, LidarConfig())
    model = BEVDetector(cfg.detector)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    fused = mode == "early"
    log, t0 = [], time.time()
    with progress_bar(f"train {mode} detector", cfg.steps, quiet) as bar:
        for _ in range(cfg.steps):
            samples = [bank.sample(rng, fused) for _i in range(cfg.batch)]
            v = max(s[0].shape[0] for s in samples)
            x = np.zeros((cfg.batch, v, 2, grid.size, grid.size), np.float32)
            present = np.zeros((cfg.batch, v), bool)
            for i, (r, _) in enumerate(samples):
                x[i, : len(r)], present[i, : len(r)] = r, True
            tgt = {k: torch.from_numpy(np.stack([s[1][k] for s in samples])) for k in ("heat", "reg", "mask")}
            xt = torch.from_numpy(x)
            maps = model(xt[:, 0]) if fused else model(xt, torch.from_numpy(present))
            loss = detection_loss(maps, tgt["heat"], tgt["reg"], tgt["mask"])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            log.append(float(loss.detach()))
            bar.advance(1, loss=float(np.mean(log[-20:])))
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    info = {
        "mode": mode,
        "seconds": time.time() - t0,
        "final_loss": float(np.mean(log[-50:])),
        "loss": log[::10],
    }
    (out / "train_log.json").write_text(json.dumps(info))
    return info


def trained_detector(
    mode: str, cfg: TrainConfig | None = None, retrain: bool = False, quiet: bool = False
) -> BEVDetector:
    """The cached detector for 'early' or 'intermediate', trained on first use."""
    if mode not in ("early", "intermediate"):
        raise TenfoldError(f"detectors are trained for 'early' or 'intermediate', not {mode!r}")
    cfg = cfg or TrainConfig()
    path = detector_artefact(mode, cfg, quiet).path(retrain)
    model = BEVDetector(cfg.detector)
    model.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    return model.eval()


def detector_artefact(mode: str, cfg: TrainConfig | None = None, quiet: bool = False) -> Artefact:
    cfg = cfg or TrainConfig()
    key = {
        "mode": mode,
        **asdict(cfg),
        "world": asdict(WorldConfig()),
        "lidar": asdict(LidarConfig()),
        "grid": asdict(GridConfig()),
    }
    return Artefact(f"cav-{mode}", key, GENERATOR_VERSION, lambda d: train_detector(mode, cfg, d, quiet))


def _final_loss(entry: Path) -> dict:
    return {"final train loss": round(json.loads((entry / "train_log.json").read_text())["final_loss"], 4)}


for _mode in ("early", "intermediate"):
    register_artefact(
        f"cav-{_mode}",
        "cav",
        lambda mode=_mode: detector_artefact(mode),
        ship=("model.pt", "train_log.json"),
        minutes=12,
        quality=_final_loss,
        doc=f"the victim's {_mode}-fusion BEV detector",
    )


def load_perception(cfg: TrainConfig | None = None, retrain: bool = False, quiet: bool = False) -> Perception:
    return Perception(
        trained_detector("early", cfg, retrain, quiet), trained_detector("intermediate", cfg, retrain, quiet)
    )


def evaluate_ap(
    perception: Perception, seeds: list[int], frame: int = 9, quiet: bool = True
) -> dict[str, dict]:
    """AP@0.5 and AP@0.7 of each mode over (scene, victim) pairs; truth = cars visible to any CAV."""
    preds: dict[str, list] = {m: [] for m in ("single", "early", "intermediate")}
    truths = []
    with progress_bar("evaluate AP", len(seeds), quiet) as bar:
        for seed in seeds:
            scene = generate_scene(seed)
            scans = observe(scene, frame)
            for victim in scene.cav_ids:
                centre = scene.pose(frame, victim)
                truths.append(visible_cars(scene, frame, scans, victim, perception.grid))
                for m in preds:
                    preds[m].append(perception.detect(scans, victim, m, centre))
            bar.advance(1)
    return {
        m: {"ap50": average_precision(p, truths, 0.5), "ap70": average_precision(p, truths, 0.7)}
        for m, p in preds.items()
    }
