"""Skeleton Graph Decoding ("Adaptive Skeleton Graph Decoding", Jin et al., 2024): a skeleton with
dependencies and difficulty, decoded as a graph (independent points in parallel, parents' answers
forwarded, easy points on a small model).

Entry points: `tenfold.sgd.api` (`answer`, `bench`); CLI `tenfold sgd`.
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.sgd.api": ["MODES", "Answer", "SGDConfig", "answer"],
        "tenfold.sgd.graph": ["GraphResult", "PointResult", "critical_tokens", "decode_graph"],
        "tenfold.sgd.skeleton": ["Point", "Skeleton", "parse_skeleton"],
    },
)

__all__ = [
    "MODES",
    "Answer",
    "SGDConfig",
    "answer",
    "GraphResult",
    "Point",
    "PointResult",
    "Skeleton",
    "critical_tokens",
    "decode_graph",
    "parse_skeleton",
]
