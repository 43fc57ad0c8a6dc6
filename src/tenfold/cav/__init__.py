"""Data-fabrication attacks on collaborative LiDAR perception and their collaborative anomaly detection
("On Data Fabrication in Collaborative Vehicular Perception: Attacks and Countermeasures", Zhang, Jin,
Zhu, Sun, Zhang, Chen, Mao, USENIX Security 2024; arXiv 2309.12955), in a generated 2D bird's-eye-view
world.

Entry points: `tenfold.cav.api` (`attack_scene`, `check_frame`, `bench`); CLI `tenfold cav`.
"""

from tenfold.core.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "tenfold.cav.api": [
            "Detection",
            "attack_scene",
            "check_frame",
            "generate_scene",
            "load_perception",
            "make_case",
        ],
    },
)

__all__ = ["Detection", "attack_scene", "check_frame", "generate_scene", "load_perception", "make_case"]
