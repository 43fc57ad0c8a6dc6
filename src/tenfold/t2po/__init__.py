"""T2PO: token- and turn-level policy optimization for stable multi-turn agent RL (Wang et al., ICML
2026, arXiv 2605.02178). On top of GiGPO: a token-level thinking intervention that ends thinking once
the model's uncertainty stops moving, and turn-level resampling of turns whose uncertainty barely
changed from the previous turn.

    from tenfold.t2po import T2POTurns, RunConfig, BenchConfig
    from tenfold.core.thinking import ThinkingCutoff, ThinkingHook      # the cut-off, for any model

Entry points: `tenfold.t2po.api` (`agent`, `train`, `calibrate`, `evaluate`, `bench`); CLI `tenfold t2po`.
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.t2po.agent": ["ThinkFormat", "parse_reply"],
        "tenfold.t2po.arms": ["ARMS", "RunConfig"],
        "tenfold.t2po.bench": ["BenchConfig"],
        "tenfold.t2po.resample": ["T2POTurns", "TurnStats", "in_band"],
    },
)

__all__ = [
    "ARMS",
    "BenchConfig",
    "RunConfig",
    "T2POTurns",
    "ThinkFormat",
    "TurnStats",
    "in_band",
    "parse_reply",
]
