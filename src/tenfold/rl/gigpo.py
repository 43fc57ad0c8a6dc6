"""GiGPO advantages: an episode-level group term plus a step-level term over identical anchor states.

GiGPO (Feng et al., "Group-in-Group Policy Optimization for LLM Agent Training", arXiv 2505.10978),
the base RL of T2PO. For one task, G episodes are rolled out from the same start. Each episode i has
steps t with reward r_{i,t} and the anchor state s_{i,t} its step acted in (the observation).

Episode level (a GRPO group of the G episodes of the task), with R_i = sum_t r_{i,t}:

    A^E_i = (R_i - mean_j R_j) / (std_j R_j + eps)             (scale_by_std=False: R_i - mean_j R_j)

Step level: the steps of the task's G episodes whose anchor states are identical form one step group
(the same state reached in several episodes, or several times in one). Each step's discounted return
from that point, with gamma = 0.95,

    R_{i,t} = sum_{k>=t} gamma^(k-t) r_{i,k}

is normalised within its step group as above (a group of one step gets 0: nothing to compare with).

Every token of step (i, t) gets A_{i,t} = A^E_i + step_weight * A^S_{i,t} (step_weight = 1 in the
paper). The two levels are computed with numpy-free Python lists: a batch holds a few hundred steps.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from tenfold.core.errors import TenfoldError


@dataclass
class StepRecord:
    """What GiGPO needs of one step: its task group, its episode, its anchor state and its reward."""

    group: int  # the task: episodes of one group started from the same state
    episode: int  # the episode within the batch (unique across groups)
    anchor: Hashable  # the state the step acted in (the observation text, or a hash of it)
    reward: float


def _normalise(values: Sequence[float], scale_by_std: bool, eps: float) -> list[float]:
    n = len(values)
    if n < 2:
        return [0.0] * n  # a group of one has no baseline: no signal
    mean = sum(values) / n
    centred = [v - mean for v in values]
    if not scale_by_std:
        return centred
    std = math.sqrt(sum(c * c for c in centred) / n)  # population std, as GRPO's reference code
    return [c / (std + eps) for c in centred]


def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """R_t = sum_{k >= t} gamma^(k - t) r_k for one episode's rewards in step order."""
    out, acc = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


def episode_advantages(
    steps: Sequence[StepRecord], scale_by_std: bool = True, eps: float = 1e-6
) -> dict[int, float]:
    """A^E per episode: its total reward normalised over the episodes of its task group."""
    totals: dict[int, float] = defaultdict(float)
    group_of: dict[int, int] = {}
    for s in steps:
        totals[s.episode] += s.reward
        if group_of.setdefault(s.episode, s.group) != s.group:
            raise TenfoldError(f"episode {s.episode} has steps in groups {group_of[s.episode]} and {s.group}")
    by_group: dict[int, list[int]] = defaultdict(list)
    for ep, g in group_of.items():
        by_group[g].append(ep)
    out: dict[int, float] = {}
    for eps_in_group in by_group.values():
        for ep, a in zip(
            eps_in_group, _normalise([totals[e] for e in eps_in_group], scale_by_std, eps), strict=True
        ):
            out[ep] = a
    return out


def step_groups(steps: Sequence[StepRecord]) -> list[int]:
    """A step-group id per step: steps of one task group with identical anchor states share an id."""
    ids: dict[tuple[int, Hashable], int] = {}
    return [ids.setdefault((s.group, s.anchor), len(ids)) for s in steps]


def step_advantages(
    steps: Sequence[StepRecord], gamma: float = 0.95, scale_by_std: bool = True, eps: float = 1e-6
) -> list[float]:
    """A^S per step: its discounted return normalised within its step group (0 for a group of one)."""
    by_episode: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(steps):
        by_episode[s.episode].append(i)  # steps arrive in play order within an episode
    returns = [0.0] * len(steps)
    for idx in by_episode.values():
        for i, r in zip(idx, discounted_returns([steps[i].reward for i in idx], gamma), strict=True):
            returns[i] = r
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(step_groups(steps)):
        members[g].append(i)
    out = [0.0] * len(steps)
    for idx in members.values():
        for i, a in zip(idx, _normalise([returns[i] for i in idx], scale_by_std, eps), strict=True):
            out[i] = a
    return out


def gigpo_advantages(
    steps: Sequence[StepRecord],
    gamma: float = 0.95,
    step_weight: float = 1.0,
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> list[float]:
    """A_{i,t} = A^E_i + step_weight * A^S_{i,t} per step (step_weight = 0: GRPO over episodes)."""
    if not 0 <= gamma <= 1:
        raise TenfoldError(f"gamma must be in [0, 1], got {gamma}")
    episode = episode_advantages(steps, scale_by_std, eps)
    if step_weight == 0:
        return [episode[s.episode] for s in steps]
    step = step_advantages(steps, gamma, scale_by_std, eps)
    return [episode[s.episode] + step_weight * a for s, a in zip(steps, step, strict=True)]
