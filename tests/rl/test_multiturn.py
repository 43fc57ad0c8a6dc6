"""The multi-turn rollout worker and the PPO pieces it adds (dual clip, per-token loss mask)."""

import pytest
import torch

from tenfold.core.errors import TenfoldError
from tenfold.core.models import build_preset
from tenfold.envs.text_env import StepResult
from tenfold.rl import Config, EpisodeRollouts, MultiTurnConfig, SampledTurns, episode_metrics, run_episodes
from tenfold.rl.grpo import policy_loss
from tenfold.rl.rollout import Rollout, pack
from tenfold.rl.trainer import train_rl


class CountEnv:
    """A two-turn toy game: say a digit twice; it is won when both replies are digits."""

    name, max_steps = "count", 2

    def __init__(self, task):
        self.task = task

    def reset(self):
        self.t, self.ok = 0, 0
        return "say a digit"

    def admissible_actions(self):
        return [str(d) for d in range(10)]

    def step(self, action):
        valid = action in self.admissible_actions()
        self.ok += valid
        self.t += 1
        done = self.t >= self.max_steps
        won = done and self.ok == self.max_steps
        return StepResult(f"turn {self.t}", 0.0, done, won, valid)


class FirstChar:
    def prompt(self, env, history, observation):
        return [{"role": "user", "content": observation}]

    def parse(self, reply):
        return reply[:1] or None


def test_dual_clip_caps_negative_advantage_loss_by_hand():
    logp = torch.log(torch.tensor([[4.0, 1.0]]))  # ratio 4 and 1 against old log-prob 0
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    adv = torch.tensor([-1.0])
    plain, _ = policy_loss(logp, old, adv, mask, Config(clip_high=0.2))
    capped, _ = policy_loss(logp, old, adv, mask, Config(clip_high=0.2, dual_clip=3.0))
    # token 1: -min(4 * -1, 1.2 * -1) = 4 unclipped; dual clip caps it at 3. token 2: 1 either way.
    assert float(plain) == pytest.approx((4 + 1) / 2)
    assert float(capped) == pytest.approx((3 + 1) / 2)
    with pytest.raises(TenfoldError, match="dual_clip"):
        Config(dual_clip=0.5).validate()


def test_loss_mask_reaches_the_packed_completion_mask():
    r = Rollout(0, [1, 2], [3, 4, 5], "x", loss_mask=[1, 0, 1])
    _, _, comp = pack([r], 0)
    assert comp.tolist() == [[0, 1, 0, 1]]
    with pytest.raises(TenfoldError, match="loss_mask"):
        pack([Rollout(0, [1], [3, 4], "x", loss_mask=[1])], 0)


def test_run_episodes_plays_every_copy_to_its_end_and_counts():
    model, tok = build_preset("micro", seed=0)
    eps = run_episodes(
        model, tok, ["a", "b"], CountEnv, FirstChar(), SampledTurns(max_new_tokens=2), copies=3
    )
    assert [e.group for e in eps] == [0, 0, 0, 1, 1, 1]
    assert all(len(e.turns) == 2 for e in eps)
    for e in eps:
        assert e.won == all(t.valid for t in e.turns)
        for t in e.turns:
            assert t.reward == pytest.approx(0.0 if t.valid else -0.1) or (t.valid and e.won)
    m = episode_metrics(eps)
    assert m["turns"] == 2 and 0 <= m["valid_rate"] <= 1


def test_config_names_and_validation():
    cfg = MultiTurnConfig(num_generations=4, beta=0.01, epsilon=0.2, epsilon_high=0.28, loss_type="grpo")
    rl = cfg.rl_config()
    assert (rl.group_size, rl.kl_coef, rl.clip_high, rl.aggregation) == (4, 0.01, 0.28, "seq-mean-token-mean")
    for bad in (dict(num_generations=1), dict(loss_type="x"), dict(advantage="ppo"), dict(gamma=2)):
        with pytest.raises(TenfoldError):
            MultiTurnConfig(**bad).validate()


def test_multi_turn_training_raises_the_valid_rate():
    torch.manual_seed(0)
    model, tok = build_preset("tiny", seed=0)
    cfg = MultiTurnConfig(
        num_generations=8, tasks_per_step=4, steps=10, learning_rate=3e-3, max_completion_length=1
    )
    gen = SampledTurns(max_new_tokens=1)
    before = episode_metrics(
        run_episodes(model, tok, ["q"] * 8, CountEnv, FirstChar(), gen, copies=4, seed=99)
    )
    worker = EpisodeRollouts(["q"] * 4, CountEnv, FirstChar(), gen, cfg)
    res = train_rl(model, tok, cfg=cfg.rl_config(), worker=worker, quiet=True)
    after = episode_metrics(
        run_episodes(model, tok, ["q"] * 8, CountEnv, FirstChar(), gen, copies=4, seed=99)
    )
    assert res.steps == 10 and res.rollouts == 10 * 4 * 8 * 2  # one sample per turn
    assert after["valid_rate"] > before["valid_rate"] + 0.2, (before, after)


def test_track_kl_reports_the_drift_from_the_start_without_changing_training():
    def run(track):
        torch.manual_seed(0)
        model, tok = build_preset("tiny", seed=0)
        cfg = MultiTurnConfig(
            num_generations=8,
            tasks_per_step=2,
            steps=5,
            learning_rate=3e-3,
            max_completion_length=1,
            track_kl=track,
        )
        worker = EpisodeRollouts(["q"] * 2, CountEnv, FirstChar(), SampledTurns(max_new_tokens=1), cfg)
        return train_rl(model, tok, cfg=cfg.rl_config(), worker=worker, quiet=True).history

    tracked, plain = run(True), run(False)
    # KL is measured before each step's update: 0 until the weights first moved, positive after
    first = next(i for i, h in enumerate(tracked) if h["grad_norm"] > 1e-6)
    assert first < len(tracked) - 1, "no update moved the weights early enough to test"
    assert all(h["kl"] == pytest.approx(0.0, abs=1e-7) for h in tracked[: first + 1])
    assert all(h["kl"] > 0 for h in tracked[first + 1 :])
    assert all(h["kl"] == 0.0 for h in plain)  # not measured: no reference kept
    assert [h["loss"] for h in tracked] == pytest.approx(
        [h["loss"] for h in plain]
    )  # beta = 0: not in the loss


def test_train_rl_refuses_both_or_neither_sample_sources():
    model, tok = build_preset("micro", seed=0)
    with pytest.raises(TenfoldError, match="worker"):
        train_rl(model, tok, quiet=True)
