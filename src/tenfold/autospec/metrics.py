"""AutoSpec's metrics for a set of specifications on held-out data (per evaluation point):

- TP: covered by at least one spec and allowed by every spec that covers it (our rule for overlaps:
  one violated covering spec makes the point a false positive);
- FP: covered, but some covering spec does not allow its output;
- FN: covered by no spec. Specs that allow every output (all classes, or an interval open on both
  sides) say nothing and do not count as covering (the paper's rule for unbounded outputs);
- precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R).

Reported apart: tightness, the mean share of the output range a covering spec allows (classes allowed
/ classes; interval width / the data's output range), lower is tighter.
"""

from __future__ import annotations

import numpy as np

from tenfold.autospec.spec import Spec
from tenfold.autospec.systems import Dataset


def score(specs: list[Spec], data: Dataset, y: np.ndarray | None = None) -> dict:
    """Metrics of `specs` on `data` (outputs `y` if given, e.g. a network's, else the logged ones)."""
    y = data.y if y is None else y
    n = len(y)
    informative = [s for s in specs if not s.is_unbounded(data.classes)]
    covered = np.zeros(n, bool)
    violated = np.zeros(n, bool)
    tight_sum = np.zeros(n)
    tight_cnt = np.zeros(n)
    span = float(data.y.max() - data.y.min()) or 1.0
    for s in informative:
        c = s.covers(data.X)
        covered |= c
        violated |= c & ~s.allows(y)
        if s.classes is not None:
            t = len(s.classes) / data.classes
        else:
            t = min(1.0, (s.interval[1] - s.interval[0]) / span)
        tight_sum[c] += t
        tight_cnt[c] += 1
    tp = int((covered & ~violated).sum())
    fp = int((covered & violated).sum())
    fn = int((~covered).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    tight = float((tight_sum[covered] / tight_cnt[covered]).mean()) if covered.any() else float("nan")
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": p,
        "recall": r,
        "f1": f1,
        "tightness": tight,
        "specs": len(informative),
        "points": n,
    }
