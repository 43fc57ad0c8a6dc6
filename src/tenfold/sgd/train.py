"""SFT data for the tiny SGD models: the three jobs one model does in the three modes.

Each example is a chat whose loss is on the reply only: (a) the skeleton of a chains question (with
dependencies and difficulty), (b) one point, given the question, the plan and the forwarded answers of
its parents, (c) the whole answer (the autoregressive baseline). Both the small and the large model are
trained on the same mix; the benchmark routes easy points to the small one.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tenfold.core.cache import cached_artefact
from tenfold.core.errors import TenfoldError
from tenfold.core.train import TrainConfig, chat_example, train_lm
from tenfold.envs.chains import ChainConfig, ChainQuestion, generate
from tenfold.sgd.prompts import direct_messages, expert_skeleton, point_messages, skeleton_messages
from tenfold.sgd.skeleton import parse_skeleton

DATA_VERSION = "chains-v2"  # v2: worked answers, compact plans


def sample_question(rng: random.Random, max_parts: int = 8, max_depth: int = 3) -> ChainQuestion:
    return generate(
        ChainConfig(rng.randint(2, max_parts), rng.randint(0, max_depth), seed=rng.randrange(1 << 30))
    )


def expert_chats(q: ChainQuestion) -> dict[str, list[list[dict]]]:
    """The expert's chats for one question: {"skeleton": [chat], "point": [chat per part], "direct": [chat]}."""
    plan = expert_skeleton(q)
    skeleton = parse_skeleton(plan)
    solved = {i + 1: q.solution(p.name) for i, p in enumerate(q.parts)}
    points = []
    for point, part in zip(skeleton.points, q.parts, strict=True):
        msgs = point_messages(q.text, skeleton, point, {d: solved[d] for d in point.deps})
        points.append(msgs + [{"role": "assistant", "content": q.solution(part.name)}])
    return {
        "skeleton": [skeleton_messages(q.text) + [{"role": "assistant", "content": plan}]],
        "point": points,
        "direct": [direct_messages(q.text) + [{"role": "assistant", "content": q.answer()}]],
    }


def corpus(n_questions: int, seed: int) -> list[list[dict]]:
    """Every expert chat of `n_questions` random questions, shuffled."""
    rng = random.Random(seed)
    chats = [
        c for _ in range(n_questions) for group in expert_chats(sample_question(rng)).values() for c in group
    ]
    rng.shuffle(chats)
    return chats


@dataclass
class ModelRecipe:
    """One SGD model: `small` (easy points) or `large` (skeleton, hard points, whole answers)."""

    role: str
    preset: str = "tiny"
    questions: int = 3000
    steps: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    max_len: int = 1024  # a whole worked answer to 8 parts is ~970 tokens
    seed: int = 0


def recipe(role: str) -> ModelRecipe:
    if role == "small":
        return ModelRecipe("small", preset="tiny")
    if role == "large":
        return ModelRecipe("large", preset="small")
    raise TenfoldError(f"role must be 'small' or 'large', got {role!r}")


def train_model(r: ModelRecipe, out_dir: Path, quiet: bool = False) -> Path:
    from tenfold.core.models import build_preset

    model, tok = build_preset(r.preset, seed=r.seed)
    examples = [chat_example(tok, c) for c in corpus(r.questions, r.seed)]
    cfg = TrainConfig(
        steps=r.steps,
        batch_size=r.batch_size,
        lr=r.lr,
        max_len=r.max_len,
        seed=r.seed,
        bucket_by_length=True,
        out_dir=str(out_dir / "train"),
        quiet=quiet,
    )
    train_lm(model, tok, examples, cfg)
    return Path(cfg.out_dir) / "last"


def trained_model(r: ModelRecipe, retrain: bool = False, quiet: bool = False) -> Path:
    """Checkpoint directory of the model for `r` (trained once, then cached)."""
    path = cached_artefact(
        f"sgd-{r.role}", asdict(r), DATA_VERSION, lambda d: train_model(r, d, quiet), retrain=retrain
    )
    return path / "train" / "last"


def _train_in_child(role: str, quiet: bool) -> str:
    import torch

    torch.set_num_threads(1)
    return str(trained_model(recipe(role), quiet=quiet))


def prepare_models(quiet: bool = False) -> tuple[str, str]:
    """(large, small) checkpoint dirs of the default recipes, trained side by side when missing (one
    process and one core each; the large model takes longest) and cached after that."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn")) as pool:
        large = pool.submit(_train_in_child, "large", quiet)
        small = pool.submit(_train_in_child, "small", True)  # one progress bar is enough
        return large.result(), small.result()
