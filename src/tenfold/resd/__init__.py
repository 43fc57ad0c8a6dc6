"""RESD: reflection-enhanced self-distillation where success is rare (Zhang et al., arXiv 2605.12741).

The model reflects on its failed attempts, curates lessons into a global playbook, and a self-teacher
(EMA weights) reading the playbook, the feedback and the reflection gives token-level targets even when
no rollout succeeded. The loss lives in `tenfold.rl.distill`, the task in `tenfold.envs.manufactoria`.
"""

from tenfold.resd.playbook import POLICIES, SECTIONS, Entry, Playbook

__all__ = ["POLICIES", "SECTIONS", "Entry", "Playbook"]
