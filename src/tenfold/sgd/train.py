"""SFT data for the tiny SGD models: the three jobs one model does in the three modes.

Each example is a chat whose loss is on the reply only: (a) the skeleton of a chains question (with
dependencies and difficulty), (b) one point, given the question, the plan and the forwarded answers of
its parents' results, (c) the whole answer (the autoregressive baseline). The large model trains on all
three; the small one only on easy points, which is all the benchmark routes to it. Both start from a
recall warm-up (`recall_example`) that teaches them to find a part in the question by its name; the
large one ends with a second stage that gives skeletons and whole answers fixed shares (`PolishRecipe`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from pathlib import Path

from tenfold.core import sft
from tenfold.core.artefacts import register_artefact
from tenfold.core.cache import Artefact
from tenfold.core.errors import TenfoldError
from tenfold.core.train import IGNORE, Tokens, chat_example
from tenfold.envs.chains import ChainConfig, ChainQuestion, generate
from tenfold.sgd.prompts import (
    POINT_SYSTEM,
    direct_messages,
    expert_skeleton,
    point_messages,
    skeleton_messages,
)
from tenfold.sgd.skeleton import parse_skeleton

# v2: worked answers, compact plans; v3: short prompts, results forwarded; v4: up to 8 parts, plan
# lines without spaces (`1.A|-|easy`)
DATA_VERSION = "chains-v4"
DRILL_VERSION = "chains-v3"  # the recall warm-up did not change in v4 (its questions keep 6 parts at most)
DRILL_PARTS = 6


def sample_question(rng: random.Random, max_parts: int = 8, max_depth: int = 3) -> ChainQuestion:
    return generate(
        ChainConfig(rng.randint(2, max_parts), rng.randint(0, max_depth), seed=rng.randrange(1 << 30))
    )


JOBS = ("skeleton", "point", "easy-point", "direct")


def expert_chats(q: ChainQuestion) -> dict[str, list[list[dict]]]:
    """The expert's chats for one question: {"skeleton": [chat], "point": [chat per part],
    "easy-point": [chat per easy part], "direct": [chat]}. Point chats forward the parents' results
    (`forward="result"`, the default of the point prompt)."""
    plan = expert_skeleton(q)
    skeleton = parse_skeleton(plan)
    solved = {i + 1: q.solution(p.name) for i, p in enumerate(q.parts)}
    points, easy = [], []
    for point, part in zip(skeleton.points, q.parts, strict=True):
        msgs = point_messages(q.text, skeleton, point, {d: solved[d] for d in point.deps})
        points.append(msgs + [{"role": "assistant", "content": q.solution(part.name)}])
        if part.difficulty == "easy":
            easy.append(points[-1])
    return {
        "skeleton": [skeleton_messages(q.text) + [{"role": "assistant", "content": plan}]],
        "point": points,
        "easy-point": easy,
        "direct": [direct_messages(q.text) + [{"role": "assistant", "content": q.answer()}]],
    }


def corpus(
    n_questions: int, seed: int, jobs: tuple[str, ...] = ("skeleton", "point", "direct")
) -> list[list[dict]]:
    """The expert chats of the given jobs for `n_questions` random questions, shuffled."""
    unknown = set(jobs) - set(JOBS)
    if unknown:
        raise TenfoldError(f"unknown jobs {sorted(unknown)}; jobs are {JOBS}")
    rng = random.Random(seed)
    chats = [
        c
        for _ in range(n_questions)
        for job, group in expert_chats(sample_question(rng)).items()
        if job in jobs
        for c in group
    ]
    rng.shuffle(chats)
    return chats


def recall_example(tok, rng: random.Random, max_parts: int = 8) -> Tokens:
    """One example of the recall warm-up: a question, then every part restated in random order as
    `NAME = right-hand side. `, with the loss on the right-hand sides only (the names are given).

    Every trained token is a lookup (find the part by its name, copy what follows), the skill the
    tiny models never formed from the expert chats alone: finding `C = ...` in the question needs a
    head that matches three tokens back, and such heads form only after a plateau. Dense lookups
    shorten it: a 0.6M model went from 47% to 97% right first characters between steps 500 and 750
    (batch 32), where SFT alone stayed at 12-30% after 1,000-2,500 steps (docs/sgd.md)."""
    q = sample_question(rng, max_parts)
    ids = [tok.bos_id, *tok.encode(q.text + "\n")]
    labels = [IGNORE] * len(ids)
    for part in rng.sample(q.parts, len(q.parts)):
        name, rhs = part.statement().split(" = ", 1)
        head, body = tok.encode(f"{name} = "), tok.encode(rhs + ". ")
        ids += head + body
        labels += [IGNORE] * len(head) + body
    return Tokens(ids, tuple(labels))


@dataclass
class DrillRecipe(sft.DrillRecipe):
    """The recall warm-up (`recall_example`) one model starts SFT from."""

    steps: int = 1000
    lr: float = 2e-3


def cached_drill(r: DrillRecipe, quiet: bool = False) -> sft.CachedModel:
    """The recall warm-up of `r` as a cached model (one per preset), trained in the entry itself."""

    def data(tok) -> list[Tokens]:
        rng = random.Random(r.seed + 11)
        return [recall_example(tok, rng, DRILL_PARTS) for _ in range(r.steps * r.batch_size)]

    return sft.drill_model(f"sgd-drill-{r.preset}", r, DRILL_VERSION, data, folder="", quiet=quiet)


@dataclass
class PolishRecipe:
    """A second SFT stage, on top of a trained model, in which chosen jobs get fixed shares of the data
    (`shares`: (job, share) pairs; the rest: a sample of the model's usual mix of jobs), all on fresh
    questions.

    Why the large model needs it for its skeletons: in the mixed SFT a skeleton is one chat in seven,
    and writing one takes a lookup per plan line (find part k, see whether it names an earlier part and
    how many terms it adds) that stays on a plateau. After 2,500 mixed steps the 1.1M model gets the
    difficulty of 60% of plan lines right (about what "easy" everywhere gives) and the dependencies of
    10% of the dependent ones; 1,500 more steps at half skeletons took that to 99% and 63%, and its
    points improved too (70% -> 88% with gold parents), measured greedily on 24 benchmark questions.
    Skeleton chats alone (600 steps) get as far on skeletons but the model forgets every other job.
    Whole answers keep a share of their own: at half skeletons and the usual mix for the rest (whole
    answers then 7% of the data) one of two seeds wrote whole answers that stop after a few parts. The
    default (40% skeletons, 15% whole answers) gets 96% and 49% on plan lines (docs/sgd.md)."""

    shares: tuple[tuple[str, float], ...] = (("skeleton", 0.4), ("direct", 0.15))
    examples: int = 16000
    steps: int = 1500
    lr: float = 1e-3
    seed: int = 77
    # share of point chats shown the plan only through their own line: what a point sees when it starts
    # while the plan is still being written (`SGDConfig(stream=True)`)
    cut_plans: float = 0.0

    def validate(self) -> PolishRecipe:
        jobs = [j for j, _ in self.shares]
        if not set(jobs) <= set(JOBS) or len(set(jobs)) != len(jobs):
            raise TenfoldError(f"polish jobs must be distinct jobs of {JOBS}, got {jobs}")
        if any(s <= 0 for _, s in self.shares) or sum(s for _, s in self.shares) >= 1:
            raise TenfoldError(f"polish shares must be > 0 and add up to less than 1, got {self.shares}")
        if not 0 <= self.cut_plans <= 1:
            raise TenfoldError(f"cut_plans is a share in [0, 1], got {self.cut_plans}")
        return self


@dataclass
class ModelRecipe(sft.SFTRecipe):
    """One SGD model: `small` (easy points) or `large` (skeleton, hard points, whole answers)."""

    steps: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    max_len: int = 1280  # the longest chat (a whole worked answer to 8 parts) is ~1,150 tokens
    ckpt_every: int = 500  # also keep step-N checkpoints (to follow learning; not part of the key)
    questions: int = 3000
    jobs: tuple[str, ...] = ("skeleton", "point", "direct")  # which expert chats (see JOBS)
    recall_share: float = 0.0  # recall examples mixed into SFT, as a share of the chats (keeps lookups sharp)
    polish: PolishRecipe | None = None  # a second stage with fixed shares for some jobs (from the first)

    def cache_key(self) -> dict:
        d = super().cache_key()
        d["jobs"] = list(d["jobs"])
        for opt in ("recall_share", "polish"):  # models trained before an option keep their cache entries
            if not d[opt]:
                del d[opt]
        if d.get("polish") and not d["polish"]["cut_plans"]:
            del d["polish"]["cut_plans"]
        return d


# where the large model's SFT starts: the pretrained tenfold-base (its preset is the large model's), the
# recall warm-up (the from-scratch recipe) or a fresh preset. The small model (`micro`) has no base of
# its shape: it starts from its warm-up whatever `init` says. The default is the base: from it the large
# model gets more parts right with 40% of the steps (docs/sgd.md, "From tenfold-base").
INITS = ("base", "drill", "scratch")
DEFAULT_INIT = "base"
BASE_MODEL = "tenfold-base"


def recipe(role: str, init: str = DEFAULT_INIT) -> ModelRecipe:
    """The default recipe per role: the large model (the 1M `tiny` preset) does every job, the small
    one (`micro`: the same width, half the depth, so about twice as fast per token) answers easy points
    only. The large one starts from tenfold-base (`init`, default "base"; "drill": the recall warm-up),
    the small one from its recall warm-up; both train on about one pass over freshly generated questions;
    the small one also keeps 30% recall examples in its SFT data (38% -> 46% of easy points
    right; for the large one the same mixing measured no better on the benchmark, docs/sgd.md).

    The small one then gets a second stage of 3,000 steps on easy points alone (one pass over 48,000
    fresh chats, lr 1e-3): its sums only began to work at the end of the first stage. Measured greedily
    on 48 held-out questions (seed 90,000; 229 easy points, parents' results given): 51% -> 73% right,
    two-term sums 7% -> 48% (the large model: 84% and 100%). A wider two-layer small model (hidden 192,
    1.2M parameters, the same speed per token) trained like the first stage got 45%.

    Half of that stage's point chats show the plan only through the point's own line (`cut_plans`),
    as points that start while the plan streams see it: trained on full plans only, the small model
    lost 4.6 points on independent easy points with a cut plan (0.755 -> 0.709); trained on both, it
    gets 0.808 with a cut plan (dependent easy points 0.756, against 0.692), same questions.

    From tenfold-base (`init="base"`) the large model trains half the steps of each stage."""
    if init not in INITS:
        raise TenfoldError(f"init must be one of {INITS}, got {init!r}")
    if role == "small":
        return ModelRecipe(
            "small",
            preset="micro",
            questions=12000,
            steps=2000,
            lr=2e-3,
            max_len=512,
            jobs=("easy-point",),
            warm_start=DrillRecipe("micro"),
            recall_share=0.3,
            polish=PolishRecipe(
                shares=(("easy-point", 0.5),), examples=48000, steps=3000, lr=1e-3, seed=78, cut_plans=0.5
            ),
        )
    if role == "large":
        if init == "base":
            return ModelRecipe(
                "large",
                preset="tiny",
                questions=7000,
                steps=1250,
                lr=2e-3,
                base=BASE_MODEL,
                polish=replace(PolishRecipe(), steps=750),
            )
        return ModelRecipe(
            "large",
            preset="tiny",
            questions=7000,
            steps=2500,
            lr=2e-3,
            warm_start=DrillRecipe("tiny") if init == "drill" else None,
            polish=PolishRecipe(),
        )
    raise TenfoldError(f"role must be 'small' or 'large', got {role!r}")


def sft_examples(tok, r: ModelRecipe) -> list[Tokens]:
    """The first stage's examples: the expert chats of the recipe's jobs, and its share of recall examples."""
    examples = [chat_example(tok, c) for c in corpus(r.questions, r.seed, tuple(r.jobs))]
    if r.recall_share:
        rng = random.Random(r.seed + 5)
        examples += [recall_example(tok, rng) for _ in range(int(len(examples) * r.recall_share))]
        rng.shuffle(examples)
    return examples


def cached_model(r: ModelRecipe, quiet: bool = False) -> sft.CachedModel:
    """The model of `r` as a cached model: its first stage (from its warm-up), or with a `polish`, the
    second stage, cached apart from the first, which it starts from."""
    if r.polish is None:
        return sft.sft_model(
            f"sgd-{r.role}", r, DATA_VERSION, lambda tok: sft_examples(tok, r), cached_drill, quiet
        )
    artefact = Artefact(f"sgd-{r.role}", r.cache_key(), DATA_VERSION, lambda d: polish_model(r, d, quiet))
    return sft.CachedModel(artefact, checkpoint_dir(r))


def train_model(r: ModelRecipe, out_dir: Path, quiet: bool = False) -> Path:
    """Train `r` into `out_dir`, outside the cache; returns its final checkpoint."""
    return cached_model(r, quiet).train(out_dir)


def polish_model(r: ModelRecipe, out_dir: Path, quiet: bool = False) -> Path:
    """The second stage of `r` (see `PolishRecipe`), from the cached model of its first stage."""
    from tenfold.core.models import load_model

    p = r.polish.validate()
    model, tok = load_model(trained_model(replace(r, polish=None), quiet=quiet))
    chats: list[list[dict]] = []
    for i, (job, share) in enumerate(p.shares):
        n = round(p.examples * share)  # every question gives at least one chat of each job but easy-point
        chats += corpus(n if job != "easy-point" else 2 * n, p.seed + i, (job,))[:n]
    n_rest = p.examples - len(chats)
    rng = random.Random(p.seed)
    pool = corpus(n_rest // 3 + 1, p.seed + len(p.shares), tuple(r.jobs))  # several chats per question
    chats += rng.sample(pool, min(n_rest, len(pool)))
    rng.shuffle(chats)
    if p.cut_plans:
        cut_rng = random.Random(p.seed + 99)
        chats = [cut_plan(c) if cut_rng.random() < p.cut_plans else c for c in chats]
    examples = [chat_example(tok, c) for c in chats]
    return sft.sft_stage(model, tok, examples, r, out_dir / "polish", p.steps, p.lr, p.seed, quiet)


def cut_plan(chat: list[dict]) -> list[dict]:
    """A point chat whose plan ends at the point's own line (other chats unchanged): the prompt of a
    point that starts while the plan is being written (`tenfold.sgd.api`)."""
    if chat[0]["content"] != POINT_SYSTEM:
        return chat
    user = chat[1]["content"]
    head, _, rest = user.partition("\nPlan:\n")
    plan, _, tail = rest.partition("\nKnown: ")
    own = re.search(r"\nPart (\d+): ", "\n" + tail.rsplit("\n", 1)[-1])
    lines = plan.split("\n")
    ids = [line.split(".", 1)[0] for line in lines]
    if own is None or own.group(1) not in ids:
        raise TenfoldError(f"not a point prompt with its own plan line: {user[-120:]!r}")
    kept = "\n".join(lines[: ids.index(own.group(1)) + 1])
    return [chat[0], {**chat[1], "content": f"{head}\nPlan:\n{kept}\nKnown: {tail}"}, *chat[2:]]


def trained_model(r: ModelRecipe, retrain: bool = False, quiet: bool = False) -> Path:
    """Checkpoint directory of the model for `r` (trained once, then cached; a polished recipe is
    cached apart from its first stage, which it starts from)."""
    return cached_model(r, quiet).path(retrain)


def checkpoint_dir(r: ModelRecipe) -> str:
    """The entry-relative folder of the final checkpoint."""
    return ("polish" if r.polish is not None else "train") + "/last"


# each stage's own build time in minutes, on one torch thread beside another one-thread training
# (the large model's stages from tenfold-base: measured on 2 torch threads beside a one-thread training)
_MINUTES = {"large": (36, 20, 6), "small": (16, 35, 50)}  # (warm-up, first SFT stage, second stage)
for _role, (_drill_min, _stage1_min, _final_min) in _MINUTES.items():
    # the first stages are shippable too, so that a change to a later stage does not retrain them
    # the warm-ups of the from-scratch recipes (`init="drill"`); the default large model starts from
    # tenfold-base instead
    _drill = f"sgd-drill-{recipe(_role, 'drill').warm_start.preset}"
    register_artefact(
        _drill,
        "sgd",
        lambda role=_role: cached_drill(recipe(role, "drill").warm_start).artefact,
        ship=("last",),
        minutes=_drill_min,
        doc=f"the recall warm-up the {_role} model starts from",
    )
    register_artefact(
        f"sgd-{_role}-stage1",
        "sgd",
        lambda role=_role: cached_model(replace(recipe(role), polish=None)).artefact,
        ship=("train/last",),
        minutes=_stage1_min,
        doc=f"the {_role} model's first SFT stage, which its second stage starts from",
        needs=(BASE_MODEL if recipe(_role).base else _drill,),
    )
    register_artefact(
        f"sgd-{_role}",
        "sgd",
        lambda role=_role: cached_model(recipe(role)).artefact,
        ship=(checkpoint_dir(recipe(_role)),),
        minutes=_final_min,
        doc=f"the {_role} model of the chains questions (skeleton, points, answers)",
        needs=(f"sgd-{_role}-stage1",),
    )


def _train_in_child(role: str, quiet: bool) -> str:
    import torch

    torch.set_num_threads(1)
    return str(trained_model(recipe(role), quiet=quiet))


def prepare_models(quiet: bool = False) -> tuple[str, str]:
    """(large, small) checkpoint dirs of the default recipes, trained side by side when missing (one
    process and one core each; the large model takes longest) and cached after that."""
    from tenfold.core.benchkit import in_processes

    if all(cached_model(recipe(role)).available() for role in ("large", "small")):
        return str(trained_model(recipe("large"))), str(trained_model(recipe("small")))
    jobs = [("large", quiet), ("small", True)]  # one progress bar is enough
    return tuple(in_processes(_train_in_child, jobs, workers=2))
