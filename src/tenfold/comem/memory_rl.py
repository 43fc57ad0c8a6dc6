"""CoMem's memory model trained by reward: the paper's GRPO on action agreement, on `tenfold.rl`.

Offline, on logged full-context trajectories (`comem.trajectories`). For a history cut c (a multiple
of R) of a logged episode, with the memory view the runtime builds there (`context.memory_view`):

    s_1..s_G ~ memory(view)                                  # a group of G summaries (paper: G = 16)
    for every logged critical step u >= c whose fact was revealed before c:
        a_i(u) = agent(system, task + s_i, observation u)      # the frozen agent, greedy
    r_i = mean_u action_match(a_i(u), logged action at u) - length_penalty(s_i)     (comem.reward)
    A_i = r_i - mean r (not divided by the std; see the recipe);  clipped policy loss + 0.01 KL to
    the SFT memory model (paper)

The paper's agent acts at step t from the summary of steps < t plus the latest observation, and the
reward compares that one action with the logged one. In the Vault game every step but a door or a fork
is `go` whatever the summary says, so here a summary is scored at the critical steps it must serve:
those whose fact it covers and that come after its cut (documented deviation; the agent's view is the
paper's, summary plus latest observation). The previous summary in an incremental memory view is, per
item, the SFT memory model's own (its greedy chain along the episode, the inputs it meets when
deployed) or the expert's (`previous_from`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from tenfold.comem.context import agent_view, memory_view
from tenfold.comem.reward import RewardConfig, action_match, length_penalty
from tenfold.comem.runtime import NO_SUMMARY
from tenfold.comem.trajectories import LoggedStep, episode_messages, episode_steps, play_full
from tenfold.core.errors import TenfoldError
from tenfold.core.sampler import SamplingParams, generate
from tenfold.envs.vault import VaultConfig, VaultGame
from tenfold.rl.grpo import Config, group_advantages, informative
from tenfold.rl.rollout import sample_groups
from tenfold.rl.trainer import Batch, UniformSource

PREVIOUS = ("mixed", "chain", "expert")
Actor = Callable[[list[list[dict]]], list[str]]  # chats -> the agent's replies
TRAIN_SEEDS = 1_000_000  # logged training games draw their seeds from here up (held-out: 10,000-30,000)
HELDOUT_SEED = 30_000  # the held-out cut items of the training curve


@dataclass
class MemoryRLRecipe:
    """Every number of the memory model's reward training (the paper's where it gives one)."""

    episodes: int = 100  # logged full-context training episodes
    min_steps: int = 20
    max_steps: int = 80
    interval: int = 4  # R: cuts at multiples of R, as the runtime summarises
    previous_from: str = "mixed"  # the previous summary of a view: "chain" (SFT model's), "expert", "mixed"
    group_size: int = 16  # paper: 16
    prompts_per_step: int = 4  # x 16 summaries: 64 sequences of ~450 byte tokens a step
    steps: int = 120
    lr: float = 1e-4  # paper: 1e-6 for a 4B model; a 1M-parameter model needs larger steps
    kl_coef: float = 0.01  # paper: 0.01, to the SFT memory model
    # Advantages are r - mean(r), not divided by the group's std (Dr. GRPO, Liu et al. 2025). Most groups
    # state every fact and differ only in length: divided by their tiny std, 0.03 of length penalty
    # became a full-size advantage, and the model learned to shorten by dropping facts still needed
    # (CoMem success 0.34 against SFT's 0.58 after 40 steps). Unscaled, a dropped fact (0.25+) weighs
    # ten times a repeated one (0.03), as the reward says
    scale_by_std: bool = False
    # Sampling temperature of the G summaries: 0.5 keeps them near the greedy summary the deployed model
    # writes. The shipped run changed this (from 1.0) together with scale_by_std, so the two effects are
    # not measured apart; per-seed samples coincide wherever the model is confident, so the temperature
    # matters only where it hesitates
    temperature: float = 0.5
    summary_tokens: int = 96  # BackendMemory's max_tokens
    agent_tokens: int = 48  # PolicyConfig.agent_max_tokens
    carry_share: float = 0.5  # share of training cuts that only carry facts over (the rest add one)
    heldout_items: int = 48
    eval_every: int = 10
    seed: int = 0
    reward: RewardConfig = field(default_factory=RewardConfig)

    def validate(self) -> MemoryRLRecipe:
        if self.previous_from not in PREVIOUS:
            raise TenfoldError(f"previous_from must be one of {PREVIOUS}, got {self.previous_from!r}")
        if not 0 <= self.carry_share < 1:
            raise TenfoldError(f"carry_share must be in [0, 1), got {self.carry_share}")
        if self.episodes < 1 or self.heldout_items < 1 or self.interval < 1:
            raise TenfoldError(f"episodes, heldout_items and interval must be >= 1: {self}")
        if not 12 <= self.min_steps <= self.max_steps:  # a Vault game needs 3 x facts + 3 rooms
            raise TenfoldError(f"need 12 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        self.rl_config()  # group size, steps, lr and kl are checked there
        return self

    def rl_config(self) -> Config:
        return Config(
            group_size=self.group_size,
            prompts_per_step=self.prompts_per_step,
            steps=self.steps,
            lr=self.lr,
            kl_coef=self.kl_coef,
            scale_by_std=self.scale_by_std,
            temperature=self.temperature,
            max_new_tokens=self.summary_tokens,
            stop=(),  # a summary ends at the end-of-turn token
            seed=self.seed,
            eval_every=self.eval_every,
        ).validate()


@dataclass(frozen=True)
class CutItem:
    """One history cut: the memory model's prompt there and the logged steps its summary must serve."""

    prompt: tuple[int, ...]  # chat ids of the memory view
    config: VaultConfig
    cut: int
    targets: tuple[LoggedStep, ...]  # critical steps >= cut whose fact was revealed before cut
    adds: bool  # a fact it must carry was revealed in the view's new turns (else it is carried over)


def targets_of(game: VaultGame, steps: Sequence[LoggedStep], cut: int) -> tuple[LoggedStep, ...]:
    """The logged critical steps a summary covering rooms [0, cut) is responsible for."""
    needed = {f.use for f in game.facts if f.reveal < cut <= f.use}
    return tuple(s for s in steps if s.t in needed)


def summary_chains(model, tok, games: Sequence[VaultGame], interval: int, max_tokens: int) -> list[dict]:
    """The memory model's greedy incremental chain along each played game, as the runtime runs it:
    {cut: summary covering [0, cut)} per game, batched across games cut by cut."""
    msgs = [episode_messages(g) for g in games]
    chains: list[dict[int, str]] = [{} for _ in games]
    cut = interval
    while True:
        live = [i for i, g in enumerate(games) if cut < g.cfg.steps]
        if not live:
            return chains
        views = [
            memory_view(msgs[i], cut, chains[i].get(cut - interval, NO_SUMMARY), cut - interval) for i in live
        ]
        gens = _greedy(model, tok, views, max_tokens)
        for i, g in zip(live, gens, strict=True):
            chains[i][cut] = g.text.strip()
        cut += interval


def cut_items(
    games: Sequence[VaultGame],
    chains: Sequence[dict] | None,
    tok,
    interval: int,
    previous_from: str,
    seed: int,
) -> list[CutItem]:
    """Every cut of every game that some critical step depends on, as a `CutItem`. The view's previous
    summary comes from `chains` (the SFT model's) or the expert, per `previous_from`."""
    rng = random.Random(seed)
    out = []
    for gi, game in enumerate(games):
        steps, msgs = episode_steps(game), episode_messages(game)
        for cut in range(interval, game.cfg.steps, interval):
            targets = targets_of(game, steps, cut)
            if not targets:
                continue
            since = cut - interval
            use_chain = previous_from == "chain" or (previous_from == "mixed" and rng.random() < 0.5)
            if use_chain and chains is not None:
                previous = chains[gi].get(since, NO_SUMMARY)
            else:
                previous = game.expert_summary(since) if since else NO_SUMMARY
            view = memory_view(msgs, cut, previous, since)
            adds = any(since <= f.reveal < cut <= f.use for f in game.facts)
            out.append(CutItem(tuple(tok.apply_chat_template(view)), game.cfg, cut, targets, adds))
    return out


def _greedy(model, tok, prompts: Sequence[list[dict] | Sequence[int]], max_tokens: int):
    """Greedy replies to chats (message lists) or chat ids, batched."""
    ids = [list(p) if p and isinstance(p[0], int) else tok.apply_chat_template(p) for p in prompts]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        gens = generate(model, tok, ids, SamplingParams(max_tokens, 0.0), batch_size=128)
    model.train(was_training)
    return gens


def model_actor(agent, tok, max_tokens: int = 48) -> Actor:
    """The frozen agent model as an `Actor`: greedy replies to a batch of chats."""
    return lambda views: [g.text for g in _greedy(agent, tok, views, max_tokens)]


class AgentJudge:
    """The frozen agent and the reward: scores summaries by the actions the agent takes from them.
    `act` answers a batch of chats (`model_actor` for a model; anything that reads chats in tests)."""

    def __init__(self, act: Actor, reward: RewardConfig = RewardConfig()):
        self.act, self.reward = act, reward

    def rewards(
        self, pairs: Sequence[tuple[CutItem, str]], cut_off: Sequence[bool] | None = None
    ) -> list[dict]:
        """Per (item, summary): {"reward", "match", "penalty"}; one agent reply per distinct pair and
        target, all in one batch. A summary `cut_off` by the token limit (no end-of-turn) pays the
        largest length penalty: deployed, the limit cuts it too, and whatever it held last is lost."""
        keys = list(dict.fromkeys((id(it), s) for it, s in pairs))
        by_key = {(id(it), s): it for it, s in pairs}
        views, where = [], []
        for key in keys:
            for step in by_key[key].targets:
                # the paper's agent view: system, task + summary, the latest observation
                views.append(agent_view(step.messages, key[1], cut=step.t))
                where.append((key, step.action))
        replies = self.act(views)
        matches: dict[tuple, list[float]] = {k: [] for k in keys}
        for (key, logged), reply in zip(where, replies, strict=True):
            matches[key].append(action_match(reply, logged, self.reward))
        out = []
        for i, (it, s) in enumerate(pairs):
            m = sum(matches[(id(it), s)]) / len(matches[(id(it), s)])
            pen = self.reward.max_penalty if cut_off and cut_off[i] else length_penalty(s, self.reward)
            out.append({"reward": m - pen, "match": m, "penalty": pen})
        return out


class MemoryRollouts:
    """The rollout worker of `tenfold.rl.train_rl`: G summaries per cut item, rewarded by the judge."""

    def __init__(self, items: Sequence[CutItem], judge: AgentJudge, cfg: Config, seed: int = 0):
        self.source, self.judge, self.cfg = UniformSource(items, seed), judge, cfg

    def collect(self, model, tokenizer, step: int) -> Batch:
        cfg = self.cfg
        items = self.source.sample(cfg.prompts_per_step)
        rolls = sample_groups(
            model,
            tokenizer,
            [list(it.prompt) for it in items],
            cfg.group_size,
            cfg.temperature,
            cfg.top_p,
            cfg.max_new_tokens,
            cfg.stop,
            seed=cfg.seed * 7919 + step,
        )
        stops = tokenizer.stop_ids
        cut_off = [not r.token_ids or r.token_ids[-1] not in stops for r in rolls]
        scores = self.judge.rewards([(items[r.group], r.text.strip()) for r in rolls], cut_off)
        for r, sc in zip(rolls, scores, strict=True):
            r.reward = sc["reward"]
        rewards = torch.tensor([r.reward for r in rolls]).view(len(items), cfg.group_size)
        advantages = group_advantages(rewards, cfg.scale_by_std, cfg.adv_eps).flatten().tolist()
        for r, a in zip(rolls, advantages, strict=True):
            r.advantage = a
        n = len(scores)
        metrics = {
            "reward_mean": float(rewards.mean()),
            "match_mean": sum(s["match"] for s in scores) / n,
            "penalty_mean": sum(s["penalty"] for s in scores) / n,
            "informative_share": float(informative(rewards).float().mean()),
            "summary_chars": sum(len(r.text.strip()) for r in rolls) / n,
            "cut_off_share": sum(cut_off) / n,
        }
        return Batch(rolls, len(rolls), metrics)

    def state_dict(self) -> dict:
        return self.source.state_dict()

    def load_state_dict(self, d: dict) -> None:
        self.source.load_state_dict(d)


def heldout_eval(items: Sequence[CutItem], judge: AgentJudge, tok, max_tokens: int):
    """`evaluate(model)` for `train_rl`: the greedy summary of each held-out cut, its reward, and the
    share of the facts it must carry that it states (`train.fact_recall`)."""
    from tenfold.comem.train import fact_recall

    def evaluate(model) -> dict:
        gens = _greedy(model, tok, [it.prompt for it in items], max_tokens)
        summaries = [g.text.strip() for g in gens]
        cut_off = [g.finish_reason == "length" for g in gens]
        scores = judge.rewards(list(zip(items, summaries, strict=True)), cut_off)
        counts = {True: [0, 0], False: [0, 0]}  # adds -> [stated, needed]
        for it, s in zip(items, summaries, strict=True):
            h, n = fact_recall(s, VaultGame(it.config), it.cut)
            counts[it.adds][0] += h
            counts[it.adds][1] += n
        return {
            "heldout_reward": sum(s["reward"] for s in scores) / len(scores),
            "heldout_match": sum(s["match"] for s in scores) / len(scores),
            "heldout_fact_recall": (counts[True][0] + counts[False][0])
            / max(1, counts[True][1] + counts[False][1]),
            "heldout_recall_adding": counts[True][0] / max(1, counts[True][1]),
            "heldout_chars": sum(map(len, summaries)) / len(summaries),
            "heldout_cut_off": sum(cut_off) / len(cut_off),
        }

    return evaluate


def training_games(r: MemoryRLRecipe) -> list[VaultConfig]:
    """The logged episodes' configs: the SFT corpus's mix of lengths and densities, on seeds of their own."""
    from tenfold.comem.train import sample_game

    rng = random.Random(r.seed + 7)
    cfgs = [sample_game(rng, r.min_steps, r.max_steps).cfg for _ in range(r.episodes)]
    return [VaultConfig(c.steps, c.doors, c.forks, TRAIN_SEEDS + i) for i, c in enumerate(cfgs)]


def heldout_games(n: int) -> list[VaultConfig]:
    """Games shaped as the benchmark's (2 doors, 1 fork; 40 and 80 steps) on held-out seeds."""
    return [VaultConfig((40, 80)[i % 2], 2, 1, HELDOUT_SEED + i) for i in range(n)]


def prepare_items(r: MemoryRLRecipe, agent_dir: str, memory, tok, quiet: bool = False):
    """(training items, held-out items): games played by the full-context agent, the memory model's
    chains along them, and their cuts."""
    import asyncio

    from tenfold.core.backends import LocalBackend
    from tenfold.core.progress import progress_bar

    with progress_bar("log full-context episodes", total=2, quiet=quiet) as bar:
        backend = LocalBackend(agent_dir, prefix_cache_bytes=1 << 28)
        try:
            train = play_full(training_games(r), backend)
            bar.advance(1)
            held = play_full(heldout_games(max(4, r.heldout_items // 6)), backend)
            bar.advance(1)
        finally:
            asyncio.run(backend.aclose())
    chains = summary_chains(memory, tok, train, r.interval, r.summary_tokens)
    held_chains = summary_chains(memory, tok, held, r.interval, r.summary_tokens)
    items = cut_items(train, chains, tok, r.interval, r.previous_from, r.seed)
    heldout = cut_items(held, held_chains, tok, r.interval, "chain", r.seed + 1)
    random.Random(r.seed + 2).shuffle(heldout)
    return mix_cuts(items, r.carry_share, r.seed), mix_cuts(heldout, r.carry_share, r.seed)[: r.heldout_items]


def mix_cuts(items: Sequence[CutItem], carry_share: float, seed: int) -> list[CutItem]:
    """Every cut that adds a fact, and cuts that only carry facts over up to `carry_share` of the whole.
    Adding a fact is where the SFT memory model errs (it drops the second of two new facts, or repeats
    the first); carried-over cuts, three in four otherwise, it gets right."""
    adds = [it for it in items if it.adds]
    carries = [it for it in items if not it.adds]
    want = round(len(adds) * carry_share / (1 - carry_share))
    random.Random(seed + 3).shuffle(carries)
    out = adds + carries[:want]
    random.Random(seed + 4).shuffle(out)
    return out


def train_memory_rl(
    r: MemoryRLRecipe, agent_dir: str, memory_dir: str, out_dir: str | Path, quiet: bool = False
):
    """Train the memory model at `memory_dir` by reward against the frozen agent at `agent_dir`; the
    checkpoint, metrics.jsonl (the reward curve) and held-out evaluations go to `out_dir`. A killed
    run resumes from out_dir/last."""
    from tenfold.core.models import load_model
    from tenfold.rl.trainer import train_rl

    r.validate()
    torch.manual_seed(r.seed)
    memory, tok = load_model(memory_dir)
    agent, agent_tok = load_model(agent_dir)
    for p in agent.parameters():
        p.requires_grad_(False)
    items, heldout = prepare_items(r, agent_dir, memory, tok, quiet)
    if not items:
        raise TenfoldError("no training cut has a critical step after it: lengthen the episodes")
    judge = AgentJudge(model_actor(agent, agent_tok, r.agent_tokens), r.reward)
    cfg = r.rl_config()
    out = Path(out_dir)
    evaluate = heldout_eval(heldout, judge, tok, r.summary_tokens)
    resume = (out / "last" / "rl_state.json").is_file()
    if not resume:  # the curve's starting point: the SFT model on the held-out cuts
        out.mkdir(parents=True, exist_ok=True)
        start = {"step": 0, "rollouts": 0, **evaluate(memory)}
        (out / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval": start}) + "\n")
    return train_rl(
        memory,
        tok,
        cfg=replace(cfg, ckpt_every=20),  # a killed build resumes from here
        evaluate=evaluate,
        out_dir=out,
        resume=resume,
        quiet=quiet,
        worker=MemoryRollouts(items, judge, cfg, r.seed),
    )


RL_VERSION = "memory-rl-v2"  # v2: summaries cut off by the token limit pay the largest penalty


def cached_rl_memory(r: MemoryRLRecipe | None = None, quiet: bool = False):
    """The reward-trained memory model of `r` (default: today's) as a cached model: from the shipped
    SFT memory model, against the shipped agent; both enter the key as their own artefact keys."""
    from tenfold.comem.train import DATA_VERSION, cached_model, recipe
    from tenfold.core.cache import Artefact
    from tenfold.core.sft import CachedModel

    r = (r or MemoryRLRecipe()).validate()
    agent, memory = cached_model(recipe("agent"), quiet), cached_model(recipe("memory"), quiet)

    def build(entry: Path) -> None:
        train_memory_rl(r, str(agent.path()), str(memory.path()), entry / "train", quiet=quiet)

    key = {**asdict(r), "agent": agent.artefact.key, "memory": memory.artefact.key}
    return CachedModel(Artefact("comem-memory-rl", key, f"{DATA_VERSION}/{RL_VERSION}", build), "train/last")
