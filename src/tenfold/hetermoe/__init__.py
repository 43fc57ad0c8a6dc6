"""HeterMoE: MoE training on heterogeneous GPUs (Wu et al., arXiv 2504.03871): attention on the newer
GPUs, experts on the older ones, overlapped by zebra parallelism, with an asymmetric expert assignment
for load balance.

Entry points: `tenfold.hetermoe.api` (`plan`, `train`, `bench`); CLI `tenfold hetermoe`.
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.hetermoe.api": ["plan", "setup"],
        "tenfold.hetermoe.costmodel": ["CostModel", "Workload"],
    },
)

__all__ = ["plan", "setup", "CostModel", "Workload"]
