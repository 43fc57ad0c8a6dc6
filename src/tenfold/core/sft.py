"""Cached SFT: the small models a system trains by supervised fine-tuning, trained once, then cached.

A system (CoMem, SGD, ...) describes each model by a recipe dataclass. The recipe's `cache_key()`, the
artefact kind and the version of the system's data generator name the artefact, so the look-up of
`core.cache` serves it from the shipped folder, else from the user cache, else trains it there with
`core.train` (a killed build resumes from its last step checkpoint). Changing a recipe field or the data
version gives a new key; an entry is never served for another recipe.

The stages the systems share, written once here so that every system trains them the same way:

- a recall warm-up (`drill_model`): a short run from a freshly initialised preset on the system's own
  drill examples, loss on the answers only. It forms the copying heads a 1M-parameter model does not
  form from the task data alone (docs/comem.md, docs/sgd.md);
- SFT (`sft_model`): the system's examples, from that warm-up or from scratch, in batches of similar
  length (`sft_stage`, also for later stages such as SGD's polish that start from a trained model).

What a system keeps for itself: its data, its defaults (a subclass of `DrillRecipe` / `SFTRecipe`), its
artefact kinds and data version, and any stage beyond these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tenfold.core.cache import Artefact
from tenfold.core.errors import TenfoldError
from tenfold.core.train import Example, TrainConfig, train_lm

DRILL_MAX_LEN = 512  # drill examples are short: a prompt and a few answer tokens

# the examples of a stage, made once the tokenizer is known (chat examples are encoded with it)
Examples = Callable[[object], Sequence[Example]]


@dataclass
class DrillRecipe:
    """A recall warm-up: `steps` batches of `batch_size` drill examples at peak learning rate `lr`, from
    the `preset` initialised with `seed`. Systems subclass it to state their own numbers; every field
    is part of the cache key."""

    preset: str = "tiny"
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0

    def cache_key(self) -> dict:
        return asdict(self)


@dataclass
class SFTRecipe:
    """One SFT model: `role` names it within its system (the artefact kind is `<system>-<role>`), the
    training numbers are those of `TrainConfig`, and `warm_start` the recall warm-up it starts from (None:
    from the fresh preset). Systems subclass it with their defaults and the fields of their data."""

    role: str
    preset: str = "tiny"
    steps: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    max_len: int = 1024
    seed: int = 0
    warm_start: DrillRecipe | None = None
    ckpt_every: int = 0  # also keep step-N checkpoints, for a killed build to resume (not in the key)
    # start from this pretrained model (a name in `tenfold.systems.TRAINED_MODELS`, e.g. tenfold-base)
    # instead of a fresh preset or a warm-up; its preset must be the recipe's
    base: str | None = None

    def cache_key(self) -> dict:
        """The recipe fields that shape the weights (all but `ckpt_every`). A base model enters as its
        own artefact key, so a re-pretrained base is a new recipe; without one the key is as before
        the field existed."""
        key = asdict(self)
        del key["ckpt_every"]
        if self.base is None:
            del key["base"]
        else:
            from tenfold.core.models import trained_model_key

            key["base"] = trained_model_key(self.base)
        return key


@dataclass(frozen=True)
class CachedModel:
    """A model trained once and then cached: its artefact (kind, recipe key, data version, build) and
    the entry-relative folder of its final checkpoint, which is what its users load."""

    artefact: Artefact
    checkpoint: str

    def path(self, retrain: bool = False) -> Path:
        """The final checkpoint's folder: shipped, cached, or trained now (always with `retrain`)."""
        return self.artefact.path(retrain) / self.checkpoint

    def available(self) -> str | None:
        """'shipped' or 'cache' when `path()` would not train, else None."""
        return self.artefact.available()

    def train(self, out_dir: Path) -> Path:
        """Train into `out_dir` without the cache (the files an entry holds); the final checkpoint."""
        self.artefact.build(out_dir)
        return out_dir / self.checkpoint


def drill_model(
    kind: str,
    recipe: DrillRecipe,
    version: str,
    examples: Examples,
    folder: str = "train",
    quiet: bool = False,
) -> CachedModel:
    """The recall warm-up of `recipe` as a cached model of `kind`: `examples(tokenizer)` gives the drill
    data (pairs with the loss on the answer, or `Tokens`, at least steps * batch_size of them for one
    pass). Training writes to `folder` in the entry (`""`: the entry itself)."""

    def build(entry: Path) -> None:
        from tenfold.core.models import build_preset

        model, tok = build_preset(recipe.preset, seed=recipe.seed)
        cfg = TrainConfig(
            steps=recipe.steps,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            max_len=DRILL_MAX_LEN,
            seed=recipe.seed,
            completion_only=True,
            out_dir=str(entry / folder),
            quiet=quiet,
        )
        train_lm(model, tok, examples(tok), cfg)

    return CachedModel(Artefact(kind, recipe.cache_key(), version, build), str(Path(folder) / "last"))


def start_model(
    recipe: SFTRecipe, drill: Callable[[DrillRecipe, bool], CachedModel] | None = None, quiet: bool = False
):
    """(model, tokenizer) SFT of `recipe` starts from: its base model (`recipe.base`, pretrained first
    when missing), its warm-up, `drill(recipe.warm_start, quiet)` (trained first when missing), or the
    fresh preset. A base or warm-up of another preset is refused before anything trains."""
    from tenfold.core.models import build_preset, load_model, trained_model_dir, trained_model_preset

    if recipe.base is not None:
        if recipe.warm_start is not None:
            raise TenfoldError(f"the {recipe.role} recipe names both a base model and a warm-up: pick one")
        if (preset := trained_model_preset(recipe.base)) != recipe.preset:
            raise TenfoldError(
                f"base model {recipe.base} is the {preset!r} preset, the recipe {recipe.preset!r}"
            )
        return load_model(trained_model_dir(recipe.base, train=True))
    if recipe.warm_start is None:
        return build_preset(recipe.preset, seed=recipe.seed)
    if recipe.warm_start.preset != recipe.preset:
        raise TenfoldError(f"warm start is {recipe.warm_start.preset!r}, recipe is {recipe.preset!r}")
    if drill is None:
        raise TenfoldError(f"the {recipe.role} recipe starts from a warm-up, but no drill was given")
    return load_model(drill(recipe.warm_start, quiet).path())


def sft_stage(
    model,
    tok,
    examples: Sequence[Example],
    recipe: SFTRecipe,
    out: Path,
    steps: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    quiet: bool = False,
) -> Path:
    """Train `model` in place on `examples` with the recipe's batch size, length limit and checkpoints,
    in batches of similar length (the examples' lengths vary a lot); returns out/last. `steps`, `lr`
    and `seed` default to the recipe's (a later stage brings its own)."""
    cfg = TrainConfig(
        steps=recipe.steps if steps is None else steps,
        batch_size=recipe.batch_size,
        lr=recipe.lr if lr is None else lr,
        max_len=recipe.max_len,
        seed=recipe.seed if seed is None else seed,
        bucket_by_length=True,
        ckpt_every=recipe.ckpt_every,
        out_dir=str(out),
        quiet=quiet,
    )
    train_lm(model, tok, examples, cfg)
    return out / "last"


def sft_model(
    kind: str,
    recipe: SFTRecipe,
    version: str,
    examples: Examples,
    drill: Callable[[DrillRecipe, bool], CachedModel] | None = None,
    quiet: bool = False,
) -> CachedModel:
    """The model of `recipe` as a cached model of `kind`: SFT on `examples(tokenizer)` from its start
    (`start_model`), written to `train/` in the entry."""

    def build(entry: Path) -> None:
        model, tok = start_model(recipe, drill, quiet)
        sft_stage(model, tok, examples(tok), recipe, entry / "train", quiet=quiet)

    return CachedModel(Artefact(kind, recipe.cache_key(), version, build), "train/last")
