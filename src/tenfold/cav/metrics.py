"""Average precision of BEV detections (oriented-box IoU matching, all-point interpolation as VOC)."""

from __future__ import annotations

import numpy as np

from tenfold.cav.geometry import box_iou


def average_precision(
    predictions: list[tuple[np.ndarray, np.ndarray]], truths: list[np.ndarray], iou: float = 0.5
) -> float:
    """AP over frames: `predictions[k]` = (boxes (N, 5), scores (N,)), `truths[k]` = boxes (M, 5).

    Detections are ranked by score across all frames; each is a true positive when it overlaps an
    unmatched true box of its frame with IoU >= `iou` (greedy, best IoU first), as in PASCAL VOC.
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} prediction frames but {len(truths)} truth frames")
    n_true = sum(len(t) for t in truths)
    if n_true == 0:
        return float("nan")
    scored = []  # (score, is true positive)
    for (boxes, scores), truth in zip(predictions, truths, strict=True):
        order = np.argsort(-scores)
        ious = box_iou(boxes[order], truth) if len(truth) and len(boxes) else np.zeros((len(boxes), 0))
        used = np.zeros(len(truth), dtype=bool)
        for r, k in enumerate(order):
            tp = False
            if ious.shape[1]:
                cand = np.where(used, -1.0, ious[r])
                j = int(cand.argmax())
                if cand[j] >= iou:
                    used[j] = tp = True
            scored.append((scores[k], tp))
    if not scored:
        return 0.0
    scored.sort(key=lambda s: -s[0])
    tp = np.cumsum([s[1] for s in scored])
    precision = tp / np.arange(1, len(scored) + 1)
    recall = tp / n_true
    # all-point interpolation: precision made monotone, integrated over recall
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [recall[-1]]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    return float(np.sum((mrec[1:] - mrec[:-1]) * mprec[1:]))
