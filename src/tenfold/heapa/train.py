"""The warm-started policy for the HeaPA experiments: SFT of a tiny model on arithmetic answers (worked
steps by default, or bare numbers) and on writing variants, stopped early on purpose. RLVR needs a policy with mixed pass rates (easy levels
partly right, hard ones mostly wrong), not a solved task; and HeaPA's augmentation needs a policy that
can write a variant of a problem in the expected format."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tenfold.core.artefacts import register_artefact
from tenfold.core.cache import Artefact
from tenfold.core.errors import TenfoldError
from tenfold.envs.arith import ANSWER_FORMATS, LEVELS, sample_problems
from tenfold.heapa.augment import expert_variant, variant_completion, variant_prompt

DATA_VERSION = "heapa-warm-v1"


@dataclass
class WarmStart:
    preset: str = "tiny"
    problems: int = 30000
    variant_share: float = 0.25  # share of the SFT examples that are variant-writing
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # the cosine schedule's floor (1.0: constant learning rate)
    levels: tuple[int, ...] = LEVELS
    seed: int = 0
    answers: str = "bare"  # "worked": answers with their steps (envs.arith.worked_steps)
    max_len: int = 64
    ckpt_every: int = 0

    @classmethod
    def for_answers(cls, answers: str) -> WarmStart:
        """The warm start used for an answer format. Worked answers are longer (up to 48 tokens), so
        their examples need a longer context. They are also learnt much faster, so their SFT stops
        after 1,000 steps at a constant learning rate: held-out pass rates from about 0.85 (L2) down to
        0.05 (L4-L6). Measured alternatives: 1,500 steps with the cosine decay solve 0.9 of all levels,
        leaving RL little to do; 800 steps with the decay (mean 0.44) got *worse* under RL at lr 1e-4
        and 3e-5 and stayed flat at 1e-5: a policy annealed to a low learning rate sits where RL's
        noisy steps mostly do harm."""
        if answers not in ANSWER_FORMATS:
            raise TenfoldError(f"answers must be one of {ANSWER_FORMATS}, got {answers!r}")
        if answers == "bare":
            return cls()
        return cls(answers=answers, max_len=96, steps=1000, problems=60000, min_lr_ratio=1.0)


def warm_corpus(w: WarmStart) -> list[tuple[str, str]]:
    rng = random.Random(w.seed + 5)
    out = []
    for p in sample_problems(w.problems, w.seed, w.levels):
        if rng.random() < w.variant_share:
            expr, d = expert_variant(p, rng)
            out.append((variant_prompt(p.expr), variant_completion(expr, d)))
        else:
            out.append((p.prompt, p.target(w.answers)))
    return out


def warm_policy(w: WarmStart | None = None, retrain: bool = False, quiet: bool = False) -> Path:
    """Checkpoint directory of the warm-started policy (shipped, cached, or trained once); by default
    the worked-answer one."""
    return warm_artefact(w, quiet).path(retrain) / "train" / "last"


def warm_artefact(w: WarmStart | None = None, quiet: bool = False) -> Artefact:
    from tenfold.core.models import build_preset
    from tenfold.core.train import TrainConfig, train_lm

    w = w or WarmStart.for_answers("worked")

    def build(d: Path) -> Path:
        model, tok = build_preset(w.preset, seed=w.seed)
        cfg = TrainConfig(
            steps=w.steps,
            batch_size=w.batch_size,
            lr=w.lr,
            min_lr_ratio=w.min_lr_ratio,
            max_len=w.max_len,
            ckpt_every=w.ckpt_every,
            seed=w.seed,
            out_dir=str(d / "train"),
            quiet=quiet,
        )
        train_lm(model, tok, warm_corpus(w), cfg)
        return d

    return Artefact("heapa-policy", asdict(w), DATA_VERSION, build)


register_artefact(
    "heapa-policy",
    "heapa",
    lambda: warm_artefact(WarmStart.for_answers("worked")),
    ship=("train/last",),
    minutes=8,
    doc="the warm-started arithmetic policy (worked answers) that RL starts from",
)
