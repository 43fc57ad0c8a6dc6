"""Data-fabrication attacks on collaborative LiDAR perception and their collaborative anomaly detection
(Zhang et al., "On Data Fabrication in Collaborative Vehicular Perception: Attacks and
Countermeasures", USENIX Security 2024), in a generated 2D bird's-eye-view world."""

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
