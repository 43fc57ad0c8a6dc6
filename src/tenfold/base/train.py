"""Pretraining tenfold-base: a Llama-architecture model trained from scratch with the core trainer on
the generated mixture (`mixture.py`), shipped as the artefact `tenfold-base`.

The recipe is one dataclass; its fields and the mixture version make the artefact key, so a changed
recipe is a new model (and the shipped one is reported stale). Training keeps a checkpoint every
`ckpt_every` steps: an interrupted build resumes, and `tenfold base eval --over-training` draws the
probes' curves from those checkpoints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from tenfold.base.mixture import DEFAULT_WEIGHTS, MIXTURE_VERSION, check_weights
from tenfold.core.artefacts import register_artefact
from tenfold.core.cache import Artefact
from tenfold.core.errors import TenfoldError

MODEL_NAME = "tenfold-base"
COPY_BATCH = 32  # examples per step of the copy stage (each about 100 tokens)
STAGE_FOLDERS = ("copy", "mix", "train")  # a build directory's stage folders, in training order
# the focus stage's mixture: copy and recall take two thirds of the documents, the rest keep a share so
# that what the first mixture stage taught (arithmetic, chat, games) is not forgotten
FOCUS_WEIGHTS = {
    "text": 0.05,
    "copy": 0.40,
    "recall": 0.25,
    "lists": 0.05,
    "arith": 0.07,
    "programs": 0.06,
    "games": 0.06,
    "chat": 0.06,
}


@dataclass
class BaseRecipe:
    preset: str = "tiny"  # the architecture (core.presets): 4 layers, d=128, ~1.1M parameters
    docs: int = 160_000  # generated documents (about 48M tokens)
    max_len: int = 1024
    steps: int = 3000
    # documents per step, one to a sequence: packed ones put other random strings before a copy's
    # source, which a copying head keyed on the bytes just before it cannot tell apart
    batch_size: int = 24
    packed: bool = False
    lr: float = 1e-3  # the mixture's; the copy stage's is `copy_lr`
    copy_lr: float = 1e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    seed: int = 0
    ckpt_every: int = 500
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    # A first stage of this many steps on repeated random strings alone (`copy_corpus`), before the
    # mixture (0: none): without it the model did not learn to copy (docs/base.md, Deviations)
    copy_steps: int = 600
    # A third stage, the *focus*: the mixture again, `focus_docs` fresh documents with copy and recall
    # weighted up, at `focus_lr` (warm-up, cosine to `min_lr_ratio`); 0 steps: none. After the first
    # mixture stage the copies were near misses and their loss still falling (docs/base.md, Results)
    focus_steps: int = 3000
    focus_docs: int = 72_000  # one pass at `batch_size` 24
    focus_lr: float = 5e-4
    focus_weights: dict[str, float] = field(default_factory=lambda: dict(FOCUS_WEIGHTS))

    def validate(self) -> BaseRecipe:
        from tenfold.core.presets import PRESETS

        if self.preset not in PRESETS or PRESETS[self.preset].experts:
            dense = [n for n, p in PRESETS.items() if not p.experts]
            raise TenfoldError(f"preset must be a dense preset {dense}, got {self.preset!r}")
        for name in ("docs", "max_len", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise TenfoldError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("copy_steps", "focus_steps"):
            if getattr(self, name) < 0:
                raise TenfoldError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.focus_steps and self.focus_docs < 1:
            raise TenfoldError(f"focus_docs must be >= 1, got {self.focus_docs}")
        check_weights(self.weights)
        check_weights(self.focus_weights)
        return self

    def config(self) -> dict:
        cfg = asdict(self)
        cfg.pop("ckpt_every")  # where checkpoints go does not shape the weights
        if not cfg["copy_steps"]:
            del cfg["copy_steps"]
        if not cfg["focus_steps"]:  # recipes from before the focus stage keep their keys
            for name in ("focus_steps", "focus_docs", "focus_lr", "focus_weights"):
                del cfg[name]
        return cfg

    def stages(self) -> list[str]:
        """The training stages' folders under the build directory, in order; the last one's `last` is
        the model (the mixture's folder is `train` when no focus stage follows it)."""
        run = {"copy": self.copy_steps, "mix": self.focus_steps, "train": True}
        return [name for name in STAGE_FOLDERS if run[name]]


def copy_corpus(tok, recipe: BaseRecipe):
    """The copy stage's examples: `short_twice_doc`s, the loss on the repeat, one per sequence. Short
    random words, alone: in them a byte rarely recurs, so a copying head keyed on the byte before has
    one place to copy from, and copying forms within a few hundred steps; in longer strings, or packed
    among other strings, the byte before recurs and it did not (docs/base.md, Deviations)."""
    import random

    from tenfold.base.mixture import Doc, encode_doc, short_twice_doc
    from tenfold.core.train import Tokens

    rng = random.Random(f"tenfold-base-copy:{recipe.seed}")
    out = []
    for _ in range(recipe.copy_steps * COPY_BATCH):  # about one pass
        text = short_twice_doc(rng)
        ids, labels = encode_doc(tok, Doc("copy", text, loss_from=text.index(" | ") + 2))
        out.append(Tokens(tuple(ids), tuple(labels)))
    return out


def pretrain(recipe: BaseRecipe, out_dir: str | Path, quiet: bool = False) -> Path:
    """Train the recipe's model stage by stage into `out_dir/<stage>` (checkpoints `step-N`, final
    `last`; see `BaseRecipe.stages`); returns the last stage's `last`. Each stage resumes from the newest
    checkpoint of the same run in its folder, so an interrupted build loses at most `ckpt_every` steps."""
    from tenfold.base.mixture import corpus
    from tenfold.core.models import build_preset
    from tenfold.core.train import TrainConfig, train_lm

    recipe.validate()
    model, tok = build_preset(recipe.preset, seed=recipe.seed)
    folders = iter(recipe.stages())

    def stage(data, **overrides):
        cfg = dict(
            batch_size=recipe.batch_size,
            warmup_steps=recipe.warmup_steps,
            min_lr_ratio=recipe.min_lr_ratio,
            seed=recipe.seed,
            max_len=recipe.max_len,
            ckpt_every=recipe.ckpt_every,
            log_every=10,
            out_dir=str(Path(out_dir) / next(folders)),
            quiet=quiet,
        )
        return train_lm(model, tok, data, TrainConfig(**(cfg | overrides)))

    if recipe.copy_steps:
        stage(
            copy_corpus(tok, recipe),
            steps=recipe.copy_steps,
            batch_size=COPY_BATCH,
            lr=recipe.copy_lr,
            warmup_steps=min(recipe.warmup_steps, recipe.copy_steps // 2),
            min_lr_ratio=1.0,  # constant after the warm-up
            seed=recipe.seed + 1,
            ckpt_every=100,
        )
    data = corpus(tok, recipe.seed, recipe.docs, recipe.max_len, recipe.weights, recipe.packed)
    result = stage(data, steps=recipe.steps, lr=recipe.lr)
    if recipe.focus_steps:
        # fresh documents (another seed of the same generators), not a second pass over the first ones
        data = corpus(
            tok, recipe.seed + 1, recipe.focus_docs, recipe.max_len, recipe.focus_weights, recipe.packed
        )
        result = stage(
            data,
            steps=recipe.focus_steps,
            lr=recipe.focus_lr,
            warmup_steps=min(recipe.warmup_steps, recipe.focus_steps // 2),
            seed=recipe.seed + 2,
        )
    return Path(result.checkpoint)


def base_artefact(recipe: BaseRecipe | None = None, quiet: bool = False) -> Artefact:
    recipe = (recipe or BaseRecipe()).validate()

    def build(d: Path) -> Path:
        return pretrain(recipe, d, quiet=quiet)

    return Artefact(MODEL_NAME, recipe.config(), MIXTURE_VERSION, build)


def model_dir(train: bool = True, retrain: bool = False, quiet: bool = False) -> Path:
    """The checkpoint directory of tenfold-base: shipped, cached, or (with `train`) pretrained here once.
    With `train=False` a missing model is an error that says how to build it, not an hour of training."""
    art = base_artefact(quiet=quiet)
    if not train and not retrain and art.available() is None:
        from tenfold.core.artefacts import RECIPES, status

        minutes = status(RECIPES[MODEL_NAME], hashes=False).minutes
        raise TenfoldError(
            f"{MODEL_NAME} is neither shipped nor in the cache; pretrain it (about {minutes:.0f} min on "
            f"2 CPU cores) with: tenfold artefacts build {MODEL_NAME}"
        )
    return art.path(retrain) / "train" / "last"


def model_key() -> str:
    """The artefact key of today's tenfold-base (what fine-tuned recipes record as their start)."""
    return base_artefact().key


def describe() -> dict:
    """The row of `tenfold models`: preset, a note, and whether the model is shipped, cached or missing."""
    recipe = BaseRecipe()
    return {
        "preset": recipe.preset,
        "note": "pretrained on the generated mixture; the default model",
        "state": base_artefact().available() or "missing",
    }


def _probe_quality(entry: Path) -> dict:
    """Manifest quality of a shipped tenfold-base: final training loss and the quick probes."""
    from tenfold.base.probes import ProbeConfig, run_probes
    from tenfold.core.artefacts import default_quality
    from tenfold.core.models import load_model

    model, tok = load_model(entry / "train" / "last", "cpu")
    probes = run_probes(model, tok, ProbeConfig.quick())
    return default_quality(entry) | {f"probe (quick, held-out): {k}": round(v, 3) for k, v in probes.items()}


register_artefact(
    MODEL_NAME,
    "base",
    base_artefact,
    ship=("train/last",),
    minutes=70,  # the three stages, measured on 2 torch threads (docs/base.md)
    doc="the pretrained base model every LLM system can fine-tune from",
    quality=_probe_quality,
)
