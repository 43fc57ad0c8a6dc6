"""2D bird's-eye-view geometry: oriented boxes, ray casting, rotated-box IoU, rasterisation.

A box is a row (cx, cy, l, w, yaw): centre in metres, length along the heading, width across it, and
the heading in radians. Arrays of boxes have shape (N, 5).
"""

from __future__ import annotations

import numpy as np


def corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners, counter-clockwise: front-left, rear-left, rear-right, front-right."""
    b = np.atleast_2d(np.asarray(boxes, dtype=np.float64))
    c, s = np.cos(b[:, 4])[:, None], np.sin(b[:, 4])[:, None]
    lx = b[:, 2:3] / 2 * np.array([1.0, -1.0, -1.0, 1.0])  # (N, 4) corners in the box frame
    ly = b[:, 3:4] / 2 * np.array([1.0, 1.0, -1.0, -1.0])
    return np.stack([c * lx - s * ly + b[:, 0:1], s * lx + c * ly + b[:, 1:2]], -1)


def to_box_frame(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Points (M, 2) in the frame of one box: x along its heading, origin at its centre."""
    c, s = np.cos(box[4]), np.sin(box[4])
    d = np.asarray(points, dtype=np.float64) - box[:2]
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], -1)


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(M, N) bool: point m lies inside box n grown by `margin` metres on every side."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    b = np.atleast_2d(np.asarray(boxes, dtype=np.float64))
    if len(b) == 0 or len(p) == 0:
        return np.zeros((len(p), len(b)), dtype=bool)
    c, s = np.cos(b[:, 4]), np.sin(b[:, 4])
    dx = p[:, None, 0] - b[None, :, 0]
    dy = p[:, None, 1] - b[None, :, 1]
    lx = c * dx + s * dy
    ly = -s * dx + c * dy
    return (np.abs(lx) <= b[:, 2] / 2 + margin) & (np.abs(ly) <= b[:, 3] / 2 + margin)


def ray_box_distances(origin: np.ndarray, angles: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(A, N) distance along each ray from `origin` to each box's boundary; inf where it misses.

    Slab method in each box's own frame. A box that contains the origin is not hit (a sensor does
    not see the car it is mounted on).
    """
    b = np.atleast_2d(np.asarray(boxes, dtype=np.float64))
    if len(b) == 0:
        return np.full((len(angles), 0), np.inf)
    c, s = np.cos(b[:, 4]), np.sin(b[:, 4])
    d0 = np.asarray(origin, dtype=np.float64)[:2] - b[:, :2]
    ox, oy = c * d0[:, 0] + s * d0[:, 1], -s * d0[:, 0] + c * d0[:, 1]  # (N,)
    ca, sa = np.cos(angles)[:, None], np.sin(angles)[:, None]
    dx, dy = c * ca + s * sa, -s * ca + c * sa  # (A, N)
    hl, hw = b[:, 2] / 2, b[:, 3] / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        tx1, tx2 = (-hl - ox) / dx, (hl - ox) / dx
        ty1, ty2 = (-hw - oy) / dy, (hw - oy) / dy
    # a ray parallel to a slab: inside it forever (-inf, inf) or never (nan -> miss)
    par_x = np.abs(dx) < 1e-12
    par_y = np.abs(dy) < 1e-12
    in_x, in_y = np.abs(ox) <= hl, np.abs(oy) <= hw
    tx1 = np.where(par_x, np.where(in_x, -np.inf, np.nan), tx1)
    tx2 = np.where(par_x, np.where(in_x, np.inf, np.nan), tx2)
    ty1 = np.where(par_y, np.where(in_y, -np.inf, np.nan), ty1)
    ty2 = np.where(par_y, np.where(in_y, np.inf, np.nan), ty2)
    tnear = np.maximum(np.minimum(tx1, tx2), np.minimum(ty1, ty2))
    tfar = np.minimum(np.maximum(tx1, tx2), np.maximum(ty1, ty2))
    hit = (tnear <= tfar) & (tnear > 0)
    return np.where(hit, tnear, np.inf)


def polygon_area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def clip_polygon(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of convex polygon `subject` inside convex, counter-clockwise `clip`."""
    out = subject
    for i in range(len(clip)):
        if len(out) == 0:
            break
        a, b = clip[i], clip[(i + 1) % len(clip)]
        edge = b - a
        side = edge[0] * (out[:, 1] - a[1]) - edge[1] * (out[:, 0] - a[0])  # >= 0: inside (left)
        nxt = []
        for j in range(len(out)):
            p, q = out[j], out[(j + 1) % len(out)]
            sp, sq = side[j], side[(j + 1) % len(out)]
            if sp >= 0:
                nxt.append(p)
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                nxt.append(p + t * (q - p))
        out = np.array(nxt) if nxt else np.zeros((0, 2))
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) bird's-eye-view IoU of oriented boxes."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    out = np.zeros((len(a), len(b)))
    if len(a) == 0 or len(b) == 0:
        return out
    ra = np.hypot(a[:, 2], a[:, 3]) / 2
    rb = np.hypot(b[:, 2], b[:, 3]) / 2
    dist = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    pairs = np.nonzero(dist < ra[:, None] + rb[None, :])  # boxes whose circumcircles are apart cannot meet
    if len(pairs[0]) == 0:
        return out
    ca, cb = corners(a), corners(b)
    area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    for i, j in zip(*pairs, strict=True):
        inter = polygon_area(clip_polygon(ca[i], cb[j]))
        out[i, j] = inter / (area_a[i] + area_b[j] - inter)
    return out


def box_mask(boxes: np.ndarray, xs: np.ndarray, ys: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(H, W) bool grid: cell centres (ys[i], xs[j]) inside any of the boxes."""
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], -1)
    b = np.atleast_2d(np.asarray(boxes, dtype=np.float64))
    if len(b) == 0:
        return np.zeros(gx.shape, dtype=bool)
    return points_in_boxes(pts, b, margin).any(1).reshape(gx.shape)
