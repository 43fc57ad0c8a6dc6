"""AutoSpec: automatic specification generation for neural networks in learning-augmented systems (Jin,
Yan, Tan, Kalia, Foukas, Mao; arXiv 2409.10897): specs (an input region and the outputs the network
should give there) generated from the system's traces, scored for accuracy and coverage, verified.

Entry points: `tenfold.autospec.api` (`generate`, `bench`); CLI `tenfold autospec`.
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.autospec.api": ["simulate_split"],
        "tenfold.autospec.spec": ["Spec", "load_specs", "save_specs", "to_vnnlib"],
    },
)

__all__ = ["simulate_split", "Spec", "load_specs", "save_specs", "to_vnnlib"]
