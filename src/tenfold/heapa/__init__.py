"""HeaPA: heap sampling and on-policy query augmentation for RL with verifiable rewards (arXiv
2601.22448): a bounded prompt pool ordered by mean reward in heaps, batches from the difficulty
frontier, policy-written variants checked by a validator, a lineage graph.

    from tenfold.heapa import HeapPool, PoolItem, HeapSampler, HeaPASource, HeaPAConfig

Entry points: `tenfold.heapa.api` (`HeapSampler`, `warm`, `train`, `bench`); CLI `tenfold heapa`.
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
