"""tenfold-base's public entry points; `tenfold base ...` goes through these."""

from __future__ import annotations

from pathlib import Path

from tenfold.base.probes import ProbeConfig
from tenfold.base.train import MODEL_NAME, STAGE_FOLDERS, BaseRecipe, base_artefact, model_dir
from tenfold.core.errors import TenfoldError

PROBES = ("copy", "recall", "arith", "chat", "loss")


def load(device=None):
    """(model, tokenizer) of tenfold-base, shipped or cached (an error saying how to build it if neither)."""
    from tenfold.core.models import load_model

    return load_model(model_dir(train=False), device)


def pretrain(recipe: BaseRecipe | None = None, retrain: bool = False, quiet: bool = False) -> Path:
    """Checkpoint directory of the recipe's model: shipped, cached, or pretrained now into the cache."""
    return base_artefact(recipe, quiet).path(retrain) / "train" / "last"


def _probe_job(model: str, probe: str, cfg: ProbeConfig) -> dict:
    """One probe family on one model (a job of `evaluate`: it loads the model itself)."""
    from tenfold.base import probes as p
    from tenfold.core.models import load_model

    lm, tok = load_model(model, "cpu")
    if probe == "copy":
        return {
            f"copy@{d}": p.copy_probe(lm, tok, d, cfg.copy_n, cfg.batch_size)["exact"]
            for d in cfg.copy_distances
        }
    if probe == "recall":
        r = p.recall_probe(lm, tok, cfg.recall_episodes, cfg.recall_facts, cfg.recall_context, cfg.batch_size)
        return {"recall": r["exact"], "recall tokens": r["tokens"]}
    if probe == "arith":
        return {f"arith {k}": v for k, v in p.arith_probe(lm, tok, cfg.arith_n, cfg.batch_size).items()}
    if probe == "chat":
        c = p.chat_probe(lm, tok, cfg.chat_n, cfg.batch_size)
        return {"chat valid": c["valid"], "chat exact": c["exact"]}
    return {f"loss/{k}": v for k, v in p.heldout_losses(lm, tok, cfg.loss_docs).items()}


def evaluate(
    model: str | Path = MODEL_NAME, cfg: ProbeConfig | None = None, workers: int | None = None
) -> dict:
    """Every probe (see `tenfold.base.probes`) on a model by name or checkpoint path; probe families run
    side by side in `workers` processes (None: one per core)."""
    from tenfold.core.benchkit import map_jobs

    cfg = (cfg or ProbeConfig()).validate()
    if str(model) == MODEL_NAME:
        model = model_dir(train=False)
    out: dict = {}
    for part in map_jobs(_probe_job, [(str(model), probe, cfg) for probe in PROBES], workers):
        out.update(part)
    return out


def _run_checkpoints(train_dir: Path) -> dict[int, Path]:
    import json

    found = {}
    for d in [*train_dir.glob("step-*"), train_dir / "last"]:
        try:
            found[int(json.loads((d / "trainer.json").read_text())["step"])] = d
        except (OSError, ValueError, KeyError):
            continue
    return found


def checkpoints(train_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, directory) of a training run's checkpoints (`step-N`, and `last` at its recorded step).
    Given a tenfold-base build directory (stage folders `copy`, `mix`, `train`), the stages' checkpoints
    in order, each stage's steps counted after the stages before it."""
    train_dir = Path(train_dir)
    found = _run_checkpoints(train_dir)
    if not found:  # a build directory: its stages one after another
        offset = 0
        for name in STAGE_FOLDERS:
            stage = _run_checkpoints(train_dir / name)
            found |= {offset + step: d for step, d in stage.items()}
            offset += max(stage, default=0)
    if not found:
        raise TenfoldError(
            f"no training checkpoints (step-N or last with trainer.json) in {str(train_dir)!r} "
            f"or its stage folders {list(STAGE_FOLDERS)}"
        )
    return sorted(found.items())


def curve(
    train_dir: str | Path, cfg: ProbeConfig | None = None, workers: int | None = None, every: int = 1
) -> list[dict]:
    """The probes over training: `evaluate` on every `every`-th checkpoint of a run (and its last)."""
    points = checkpoints(train_dir)
    points = [pt for i, pt in enumerate(points) if i % every == 0 or i == len(points) - 1]
    return [{"step": step, **evaluate(d, cfg, workers)} for step, d in points]
