import numpy as np
import pytest

from tenfold.cav.geometry import box_iou, box_mask, corners, points_in_boxes, ray_box_distances
from tenfold.cav.lidar import LidarConfig, cast, scan
from tenfold.cav.metrics import average_precision


def mc_iou(a, b, n=200_000, seed=0):
    """Monte-Carlo IoU: an independent estimate from random points."""
    rng = np.random.default_rng(seed)
    lo = np.minimum(corners(a).min((0, 1)), corners(b).min((0, 1)))
    hi = np.maximum(corners(a).max((0, 1)), corners(b).max((0, 1)))
    p = rng.uniform(lo, hi, size=(n, 2))
    ia, ib = points_in_boxes(p, a[None])[:, 0], points_in_boxes(p, b[None])[:, 0]
    return (ia & ib).sum() / (ia | ib).sum()


@pytest.mark.parametrize(
    "a,b",
    [
        ([0, 0, 4, 2, 0.3], [1, 0.5, 4, 2, 0.3]),
        ([0, 0, 4.5, 1.9, 0.0], [0.5, 0.3, 4.5, 1.9, np.pi / 2]),
        ([2, -1, 5, 2, 1.0], [2.5, -0.5, 3, 3, -0.4]),
    ],
)
def test_rotated_iou_matches_monte_carlo(a, b):
    a, b = np.array(a, float), np.array(b, float)
    got = box_iou(a, b)[0, 0]
    assert got == pytest.approx(mc_iou(a, b), abs=0.01)
    assert box_iou(b, a)[0, 0] == pytest.approx(got)
    assert box_iou(a, a)[0, 0] == pytest.approx(1.0)


def test_iou_axis_aligned_by_hand_and_disjoint():
    a, b = np.array([0, 0, 4, 2, 0]), np.array([2, 0, 4, 2, 0])
    assert box_iou(a, b)[0, 0] == pytest.approx(4 / 12)  # overlap 2x2, union 8+8-4
    assert box_iou(a, np.array([10, 0, 4, 2, 0]))[0, 0] == 0


def test_ray_distances_by_hand():
    box = np.array([[10.0, 0.0, 4.0, 2.0, 0.0]])
    d = ray_box_distances(np.zeros(2), np.array([0.0, np.pi, np.pi / 2]), box)
    assert d[0, 0] == pytest.approx(8.0)
    assert np.isinf(d[1, 0]) and np.isinf(d[2, 0])
    # the same box turned by 90 degrees: the ray enters at x = 10 - 1
    d = ray_box_distances(np.zeros(2), np.array([0.0]), np.array([[10.0, 0.0, 4.0, 2.0, np.pi / 2]]))
    assert d[0, 0] == pytest.approx(9.0)
    # a sensor inside a box does not see it
    assert np.isinf(ray_box_distances(np.array([10.0, 0.0]), np.array([0.0]), box)[0, 0])


def test_cast_returns_the_nearest_box_and_respects_max_range():
    boxes = np.array([[10.0, 0, 2, 2, 0], [20.0, 0, 2, 2, 0]])
    d, hit = cast(np.zeros(2), np.array([0.0]), boxes, np.array([7, 8]), 50.0)
    assert d[0] == pytest.approx(9.0) and hit[0] == 7
    d, hit = cast(np.zeros(2), np.array([0.0]), boxes, np.array([7, 8]), 5.0)
    assert np.isinf(d[0]) and hit[0] == -1


def test_scan_points_lie_on_the_box_and_occlusion_hides_the_box_behind():
    boxes = np.array([[10.0, 0, 4, 2, 0], [20.0, 0, 4, 2, 0]])
    cfg = LidarConfig(azimuth_bins=720, range_noise=0.0, dropout=0.0)
    s = scan(np.zeros(3), boxes, np.array([0, 1]), cfg, np.random.default_rng(0))
    pts = s.points
    assert len(pts) > 0
    assert points_in_boxes(pts, boxes[:1], margin=1e-6).all()  # every return on the near box
    assert not (s.hit_ids == 1).any()  # the far box is entirely behind the near one
    half_angle = np.arctan2(1.0, 8.0)
    expected = 2 * half_angle / (2 * np.pi / 720)
    assert abs(len(pts) - expected) <= 2


def test_box_mask_area():
    xs = ys = (np.arange(80) + 0.5) * 0.25 - 10
    m = box_mask(np.array([[0, 0, 4, 2, 0.0]]), xs, ys)
    assert m.sum() * 0.25**2 == pytest.approx(8.0, rel=0.05)


def test_average_precision_by_hand():
    truth = [np.array([[0, 0, 4, 2, 0.0], [10, 0, 4, 2, 0.0]])]
    perfect = [(truth[0].copy(), np.array([0.9, 0.8]))]
    assert average_precision(perfect, truth) == pytest.approx(1.0)
    # a false positive ranked between the two true ones: P = 1, 1/2, 2/3 at R = 0.5, 0.5, 1
    preds = [(np.array([[0, 0, 4, 2, 0.0], [30, 0, 4, 2, 0], [10, 0, 4, 2, 0]]), np.array([0.9, 0.8, 0.7]))]
    assert average_precision(preds, truth) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # a duplicate of a matched box is a false positive, a missed box lowers recall
    preds = [(np.array([[0, 0, 4, 2, 0.0], [0.1, 0, 4, 2, 0]]), np.array([0.9, 0.8]))]
    assert average_precision(preds, truth) == pytest.approx(0.5)
