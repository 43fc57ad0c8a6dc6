"""The shared RL core: GRPO/DAPO loss, group rollouts, the RLVR trainer loop.

from tenfold.rl import Config, train_rl, UniformSource
"""

from tenfold.rl.grpo import Config, group_advantages, informative, policy_loss
from tenfold.rl.rollout import Rollout, sample_groups
from tenfold.rl.trainer import RunResult, UniformSource, train_rl

__all__ = [
    "Config",
    "Rollout",
    "RunResult",
    "UniformSource",
    "group_advantages",
    "informative",
    "policy_loss",
    "sample_groups",
    "train_rl",
]
