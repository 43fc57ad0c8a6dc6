"""CoMem: asynchronous k-step-off agent memory (arXiv 2605.30842, ICML 2026): a small memory model
summarises the history while the agent keeps acting on a summary at most k steps stale plus the raw
turns since.

Entry points: `tenfold.comem.api` (`play`, `bench`), `tenfold.comem.runtime.run_episode`; CLI
`tenfold comem` (including the OpenAI-compatible `proxy`).
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.comem.api": ["play"],
        "tenfold.comem.runtime": ["BackendMemory", "PolicyConfig", "run_episode"],
    },
)

__all__ = ["play", "BackendMemory", "PolicyConfig", "run_episode"]
