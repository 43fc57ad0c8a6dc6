"""Pretraining the tiny LLaVA on the source domain (cached and shipped as `mars-llava`).

One stage, every weight trained (vision tower, projector, language model), on a fresh stream of
source-domain examples: LLaVA trains its projector first and then the LLM, a split that matters with
a frozen pretrained CLIP; here the vision tower starts from scratch, so it must learn with the rest.
The language model starts from tenfold-base (the from-scratch recipe stays selectable), as LLaVA starts
from Vicuna.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tenfold.core.artefacts import register_artefact
from tenfold.core.cache import Artefact
from tenfold.core.errors import TenfoldError
from tenfold.core.progress import progress_bar
from tenfold.core.train import TrainConfig, lr_at
from tenfold.mars import data
from tenfold.mars import model as M

ARTEFACT = "mars-llava"
CHECKPOINT = "model"


@dataclass
class PretrainRecipe:
    language: str = "tenfold-base"  # or "scratch"
    vision: M.VisionSpec = field(default_factory=M.VisionSpec)
    steps: int = 4000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise TenfoldError(f"bad pretraining recipe: steps, batch_size and lr must be positive ({self})")

    def cache_key(self) -> dict:
        key = asdict(self)
        if self.language == "tenfold-base":
            from tenfold.core.models import trained_model_key

            key["language"] = trained_model_key("tenfold-base")
        return key


def pretrain(r: PretrainRecipe, out: Path, quiet: bool = False) -> Path:
    """Train the recipe's model into `out/model`; the loss curve and held-out scores go to
    `out/pretrain.json`."""
    torch.manual_seed(r.seed)
    model, tok = M.build(r.language, r.vision, r.seed)
    image_id = M.image_token_id(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.01, betas=(0.9, 0.98))
    # linear warm-up, then cosine decay to a tenth of the peak
    schedule = TrainConfig(steps=r.steps, lr=r.lr, warmup_steps=r.warmup)
    losses, t0 = [], time.perf_counter()
    with progress_bar("mars pretrain", r.steps, quiet) as bar:
        for step in range(r.steps):
            exs = [
                data.make_example("source", data.split_seed("train", step * r.batch_size + i, r.seed))
                for i in range(r.batch_size)
            ]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, schedule)
            loss = M.batch_loss(model, M.collate(M.encode(exs, tok, image_id), tok.pad_id))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(round(loss.item(), 4))
            bar.advance(1, loss=loss.item())
    held_out = {
        domain: M.score(model, M.encode(data.dataset(domain, 256, "test"), tok, image_id), tok.pad_id)
        for domain in data.DOMAINS
    }
    M.save(model.eval(), tok, out / CHECKPOINT, recipe=asdict(r))
    (out / "pretrain.json").write_text(
        json.dumps({"losses": losses, "held_out": held_out, "seconds": time.perf_counter() - t0}, indent=1)
    )
    return out / CHECKPOINT


def artefact(recipe: PretrainRecipe | None = None, quiet: bool = False) -> Artefact:
    r = recipe or PretrainRecipe()
    return Artefact(ARTEFACT, r.cache_key(), data.DATA_VERSION, lambda out: pretrain(r, out, quiet))


def model_dir(recipe: PretrainRecipe | None = None, retrain: bool = False, quiet: bool = False) -> Path:
    """The pretrained tiny LLaVA's folder: shipped, cached, or pretrained now (a few minutes)."""
    return artefact(recipe, quiet).path(retrain) / CHECKPOINT


def _quality(entry: Path) -> dict:
    info = json.loads((entry / "pretrain.json").read_text())
    out = {f"{d} held-out accuracy": round(s["accuracy"], 3) for d, s in info["held_out"].items()}
    out["final train loss"] = round(sum(info["losses"][-50:]) / 50, 4)
    return out


register_artefact(
    ARTEFACT,
    "mars",
    artefact,
    ship=(CHECKPOINT, "pretrain.json"),
    minutes=8,
    dtype="float16",
    quality=_quality,
    doc="the tiny LLaVA (CLIP tower + tenfold-base) pretrained on source-domain shapes",
)
