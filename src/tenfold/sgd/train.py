"""SFT data for the tiny SGD models: the three jobs one model does in the three modes.

Each example is a chat whose loss is on the reply only: (a) the skeleton of a chains question (with
dependencies and difficulty), (b) one point, given the question, the plan and the forwarded answers of
its parents, (c) the whole answer (the autoregressive baseline). Both the small and the large model are
trained on the same mix; the benchmark routes easy points to the small one.
"""

from __future__ import annotations

import random
import string
from dataclasses import asdict, dataclass
from pathlib import Path

from tenfold.core.cache import cached_artefact
from tenfold.core.errors import TenfoldError
from tenfold.core.train import IGNORE, Tokens, TrainConfig, chat_example, train_lm
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


def copy_drill(n: int, seed: int) -> list[tuple[str, str]]:
    """(prompt, answer) pairs mixed into training with `ModelRecipe.copy_share`: half repeat a random
    string, half restate one part of a question by its name. A tiny model trained on the chats alone
    answers every point from its prior ('letters in "cloud"') instead of reading the question; copying
    drills with the loss on the answer only form the copying heads it needs (as in tenfold.comem)."""
    rng = random.Random(seed + 7)
    out = []
    for i in range(n):
        if i % 2:
            word = "".join(
                rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(6, 16))
            )
            out.append((f"Repeat: {word}\n", word))
        else:
            q = sample_question(rng)
            part = rng.choice(q.parts)
            out.append((f"{q.text}\nRestate {part.name}.\n", part.statement()))
    return out


def _copy_part(q: ChainQuestion, name: str) -> str:
    """The start of a part's answer line that is pure copying: its statement, then (when it uses
    earlier parts) the statement with their values substituted, e.g. 'C = A + 19 = 76 + 19'."""
    steps = q.solution(name).split(" = ")
    part = next(p for p in q.parts if p.name == name)
    return " = ".join(steps[: 3 if part.deps else 2])


def _drill_example(tok, messages: list[dict], reply_prefix: str, target: str) -> Tokens:
    """`messages` then an assistant turn `reply_prefix + target` with the loss on `target` only and
    the sequence cut after it (nothing after the copied span is trained or even computed)."""
    full = chat_example(tok, messages + [{"role": "assistant", "content": reply_prefix + target}])
    keep = len(full.ids) - 1  # drop the end token: the real reply goes on after the copied span
    n_target = len(tok.encode(target))
    labels = [IGNORE] * (keep - n_target) + list(full.ids[keep - n_target : keep])
    return Tokens(full.ids[:keep], tuple(labels))


def copy_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """(prompt, answer) pairs 'word|' -> 'word' for short random alphanumeric words (6-16 characters):
    the first drill phase. In this plain form a 1M model got to 0.13 nats per character in 400 steps;
    with longer strings (up to 40 characters, with ' +=') inside a chat it had not started after 450."""
    rng = random.Random(seed + 13)
    out = []
    for _ in range(n):
        word = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(6, 16)))
        out.append((word + "|", word))
    return out


def reading_drill(tok, n: int, seed: int) -> list[Tokens | tuple[str, str]]:
    """The reading warm-up's second phase: `n` examples with the loss on copied text only, a third of
    each kind: copy a random word (as in `copy_pairs`); in a point prompt, restate the point's part
    with its parents' values substituted from the Known line; in a whole answer, restate every part
    with the values of earlier lines substituted (the computed steps carry no loss). A tiny model
    trained on the expert chats alone answers every point from its prior instead of reading the
    question (tried: 1M and 6M models, 600-800 steps); the loss on copied spans only was meant to form
    copying first, as it did for tenfold.comem. Measured: 300 + 300 steps of this warm-up did not make
    the 1M model read either (docs/sgd.md), so the default recipes do not use it."""
    rng = random.Random(seed + 11)
    words = copy_pairs(n, seed + 1)
    out: list[Tokens | tuple[str, str]] = []
    for i in range(n):
        if i % 3 == 0:
            out.append(words[i])
            continue
        q = sample_question(rng)
        k = rng.randrange(len(q.parts))
        part = q.parts[k]
        if i % 3 == 1:
            skeleton = parse_skeleton(expert_skeleton(q))
            solved = {j + 1: q.solution(p.name) for j, p in enumerate(q.parts)}
            point = skeleton.points[k]
            msgs = point_messages(q.text, skeleton, point, {d: solved[d] for d in point.deps})
            out.append(_drill_example(tok, msgs, "", _copy_part(q, part.name)))
        else:  # the whole answer, with the loss on every line's copied span (dense)
            reply = q.answer()
            full = chat_example(tok, direct_messages(q.text) + [{"role": "assistant", "content": reply}])
            n_reply = len(tok.encode(reply)) + 1  # and the end token
            start = len(full.ids) - n_reply
            mask = [False] * len(full.ids)
            pos = 0
            for line in reply.split("\n"):
                span = len(tok.encode(_copy_part(q, line[0])))
                for j in range(start + pos, start + pos + span):
                    mask[j] = True
                pos += len(tok.encode(line)) + 1
            labels = [t if m else IGNORE for t, m in zip(full.ids, mask, strict=True)]
            out.append(Tokens(full.ids, tuple(labels)))
    return out


@dataclass
class DrillRecipe:
    """The reading warm-up (`reading_drill`) one model starts SFT from."""

    preset: str = "tiny"
    copy_steps: int = 300  # phase 1: copy_pairs only
    steps: int = 300  # phase 2: reading_drill
    batch_size: int = 32
    lr: float = 1e-3
    max_len: int = 1024
    seed: int = 0


def train_drill(r: DrillRecipe, out_dir: Path, quiet: bool = False) -> Path:
    from tenfold.core.models import build_preset

    model, tok = build_preset(r.preset, seed=r.seed)
    phases = [
        ("copy", r.copy_steps, copy_pairs(r.copy_steps * r.batch_size, r.seed)),
        ("read", r.steps, reading_drill(tok, r.steps * r.batch_size // 2, r.seed)),
    ]
    for name, steps, data in phases:
        if steps:
            cfg = TrainConfig(
                steps=steps,
                batch_size=r.batch_size,
                lr=r.lr,
                max_len=r.max_len,
                seed=r.seed,
                bucket_by_length=True,
                out_dir=str(out_dir / name),
                quiet=quiet,
            )
            train_lm(model, tok, data, cfg)
    return out_dir / "read" / "last"


def drilled_model(r: DrillRecipe, retrain: bool = False, quiet: bool = False) -> Path:
    """Checkpoint directory of the reading warm-up for `r` (trained once, then cached)."""
    path = cached_artefact(
        f"sgd-drill-{r.preset}", asdict(r), DATA_VERSION, lambda d: train_drill(r, d, quiet), retrain=retrain
    )
    return path / "read" / "last"


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
    copy_share: float = 0.0  # extra copying-drill examples, as a share of the chats (see copy_drill)
    warm_start: DrillRecipe | None = None  # start from this reading warm-up (None: from scratch)

    def cache_key(self) -> dict:
        d = asdict(self)
        for k in ("copy_share", "warm_start"):  # recipes from before an option keep their cached models
            if not d[k]:
                del d[k]
        return d


def recipe(role: str) -> ModelRecipe:
    """The default recipe per role. Neither reads the question yet (see docs/sgd.md); the reading
    warm-up (`warm_start=DrillRecipe(...)`) was tried and did not help at this scale, so the defaults
    stay the cheaper recipes."""
    if role == "small":  # the copying drill mixed in was tried too; kept so cached models stay valid
        return ModelRecipe("small", preset="tiny", steps=800, copy_share=0.25)
    if role == "large":
        return ModelRecipe("large", preset="small")
    raise TenfoldError(f"role must be 'small' or 'large', got {role!r}")


def train_model(r: ModelRecipe, out_dir: Path, quiet: bool = False) -> Path:
    from tenfold.core.models import build_preset, load_model

    if r.warm_start is not None:
        if r.warm_start.preset != r.preset:
            raise TenfoldError(f"warm start is {r.warm_start.preset!r}, recipe is {r.preset!r}")
        model, tok = load_model(drilled_model(r.warm_start, quiet=quiet))
    else:
        model, tok = build_preset(r.preset, seed=r.seed)
    examples: list = [chat_example(tok, c) for c in corpus(r.questions, r.seed)]
    if r.copy_share:
        examples += copy_drill(int(len(examples) * r.copy_share), r.seed)
        random.Random(r.seed + 1).shuffle(examples)
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
        f"sgd-{r.role}", r.cache_key(), DATA_VERSION, lambda d: train_model(r, d, quiet), retrain=retrain
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
