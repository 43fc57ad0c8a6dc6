"""The shared RL core: GRPO/DAPO loss, group rollouts, the RLVR trainer loop.

from tenfold.rl import Config, train_rl, UniformSource
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.rl.grpo": ["Config", "group_advantages", "informative", "policy_loss"],
        "tenfold.rl.rollout": ["Rollout", "sample_groups"],
        "tenfold.rl.trainer": ["RunResult", "UniformSource", "train_rl"],
    },
)

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
