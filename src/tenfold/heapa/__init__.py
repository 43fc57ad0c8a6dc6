"""HeaPA: a heap-based frontier prompt pool with on-policy augmentation for RL with verifiable rewards.

from tenfold.heapa import HeapPool, PoolItem, HeapSampler, HeaPASource, HeaPAConfig
"""

from tenfold.heapa.api import HeapSampler
from tenfold.heapa.lineage import Lineage
from tenfold.heapa.pool import HeapPool, PoolConfig, PoolItem
from tenfold.heapa.sources import HeaPAConfig, HeaPASource, PrioritizedSource

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
