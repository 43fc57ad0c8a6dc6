"""HeaPA: a heap-based frontier prompt pool with on-policy augmentation for RL with verifiable rewards.

from tenfold.heapa import HeapPool, PoolItem, HeapSampler, HeaPASource, HeaPAConfig
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.heapa.api": ["HeapSampler"],
        "tenfold.heapa.lineage": ["Lineage"],
        "tenfold.heapa.pool": ["HeapPool", "PoolConfig", "PoolItem"],
        "tenfold.heapa.sources": ["HeaPAConfig", "HeaPASource", "PrioritizedSource"],
    },
)

__all__ = [
    "HeaPAConfig",
    "HeaPASource",
    "HeapPool",
    "HeapSampler",
    "Lineage",
    "PoolConfig",
    "PoolItem",
    "PrioritizedSource",
]
