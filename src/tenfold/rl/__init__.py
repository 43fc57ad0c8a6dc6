"""The shared RL core: GRPO/DAPO/PPO losses, GiGPO advantages, single-turn group rollouts and
multi-turn episode rollouts, one trainer loop; the self-distillation loss (SDPO / RESD).

from tenfold.rl import Config, train_rl, UniformSource                       # single-turn RLVR
from tenfold.rl import MultiTurnConfig, EpisodeRollouts, train_rl            # multi-turn agents
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.rl.grpo": ["Config", "group_advantages", "informative", "policy_loss"],
        "tenfold.rl.distill": ["DistillConfig", "EmaTeacher", "distill_loss", "success_weights"],
        "tenfold.rl.gigpo": ["StepRecord", "gigpo_advantages", "step_groups", "discounted_returns"],
        "tenfold.rl.multiturn": [
            "EpisodeRollouts",
            "MultiTurnConfig",
            "SampledTurns",
            "TurnOutput",
            "episode_metrics",
            "run_episodes",
        ],
        "tenfold.rl.rollout": ["Rollout", "sample_groups"],
        "tenfold.rl.trainer": ["Batch", "GroupRollouts", "RunResult", "UniformSource", "train_rl"],
    },
)

__all__ = [
    "Batch",
    "Config",
    "DistillConfig",
    "EmaTeacher",
    "EpisodeRollouts",
    "GroupRollouts",
    "MultiTurnConfig",
    "SampledTurns",
    "StepRecord",
    "TurnOutput",
    "discounted_returns",
    "distill_loss",
    "episode_metrics",
    "gigpo_advantages",
    "run_episodes",
    "step_groups",
    "Rollout",
    "RunResult",
    "UniformSource",
    "group_advantages",
    "informative",
    "policy_loss",
    "sample_groups",
    "success_weights",
    "train_rl",
]
