"""Hand-written specifications in the style of whiRL's ABR properties: a few rules per system that an
expert who knows the heuristic's intent (not its constants) would write. Each rule constrains some
features (None = any value in the data's range) and states the allowed outputs.
"""

from __future__ import annotations

import math

from tenfold.autospec.generate import data_box
from tenfold.autospec.spec import Spec
from tenfold.autospec.systems import Dataset
from tenfold.core.errors import TenfoldError

INF = math.inf

# (feature bounds {name: (lo, hi)}, classes or interval)
HAND_RULES: dict[str, list[tuple[dict, dict]]] = {
    "abr": [
        ({"buffer_s": (None, 4.5)}, {"classes": {0}}),  # about to stall: lowest bitrate
        ({"throughput_hm3": (None, 0.6)}, {"classes": {0, 1}}),  # poor network: low bitrates
        ({"throughput_hm3": (4.0, None), "buffer_s": (16.0, None)}, {"classes": {4, 5}}),  # good: high
        ({"throughput_hm3": (1.5, 4.0), "buffer_s": (16.0, None)}, {"classes": {2, 3, 4}}),
    ],
    "cc": [
        ({"loss_rate": (0.05, None)}, {"interval": (-INF, -0.1)}),  # losses: back off
        ({"rtt_ratio": (2.0, None)}, {"interval": (-INF, 0.0)}),  # queueing delay: do not speed up
        (
            {"rtt_ratio": (None, 1.05), "delivery_ratio": (0.98, None), "loss_rate": (None, 0.0)},
            {"interval": (0.0, INF)},
        ),  # clear path: do not slow down
    ],
    "throughput": [  # the next sample stays near a stable recent history
        ({f"throughput_t-{k}": (lo, hi) for k in range(1, 6)}, {"interval": (lo * 0.5, hi * 1.6)})
        for lo, hi in ((0.2, 0.8), (0.8, 1.8), (1.8, 3.5), (3.5, 6.0))
    ],
    "scheduler": [  # a job that is nearly done and short against all others runs next
        (
            {
                f"job{k}_remaining": (None, 1.0),
                **{f"job{j}_remaining": (3.0, None) for j in range(4) if j != k},
            },
            {"classes": {k}},
        )
        for k in range(4)
    ],
}


def hand_written(data: Dataset, margin: float = 0.05) -> list[Spec]:
    if data.system not in HAND_RULES:
        raise TenfoldError(f"no hand-written specs for system {data.system!r}")
    lo0, hi0 = data_box(data, margin)
    specs = []
    for bounds, out in HAND_RULES[data.system]:
        lo, hi = lo0.copy(), hi0.copy()
        for name, (a, b) in bounds.items():
            f = data.features.index(name)
            lo[f] = lo[f] if a is None else max(lo[f], a)
            hi[f] = hi[f] if b is None else min(hi[f], b)
        if (lo > hi).any():
            continue  # the rule's region lies outside the data's range
        if "classes" in out:
            specs.append(Spec(tuple(lo), tuple(hi), classes=frozenset(out["classes"])))
        else:
            specs.append(Spec(tuple(lo), tuple(hi), interval=tuple(float(v) for v in out["interval"])))
    return specs
