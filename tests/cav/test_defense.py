import numpy as np
import pytest

from tenfold.cav.cases import make_case
from tenfold.cav.defense import CADConfig, errors, occupancy_map
from tenfold.cav.evaluate import merged_map, pick_threshold, region_score
from tenfold.cav.geometry import box_mask
from tenfold.cav.perception import observe
from tenfold.cav.world import CAR, generate_scene


def _first(kind, pred):
    for seed in range(200):
        c = make_case(seed, kind)
        if c is not None and pred(c):
            return c
    raise AssertionError(f"no {kind} case")


def test_free_space_stops_at_returns_and_occupied_covers_seen_cars():
    scene = generate_scene(4)
    t = 9
    scans = observe(scene, t)
    v = scene.cav_ids[0]
    m = occupancy_map(scans[v], scene, scene.pose(t, v))
    xs, ys = m.cell_centres()
    cars = scene.frames[t].boxes[scene.frames[t].kinds == CAR]
    inside = box_mask(np.delete(cars, 0, axis=0), xs, ys, margin=-0.3)  # the sensor's own car excluded
    assert not (m.free & inside).any()  # no ray passes through a car
    seen = [
        c for c in scene.frames[t].ids[scene.frames[t].kinds == CAR] if (scans[v].hit_ids == c).sum() >= 10
    ]
    assert seen
    for cid in seen:
        b = scene.frames[t].boxes[scene.frames[t].index_of(cid)]
        assert (m.occupied & box_mask(b[None], xs, ys, margin=0.3)).any()
    assert m.free.any() and not (m.free & m.occupied).all()


def test_spoof_error_is_large_for_a_fake_car_in_observed_free_space_and_small_for_real_cars():
    case = _first("spoof", lambda c: True)
    scene = generate_scene(case.seed)
    t = 9
    scans = observe(scene, t)
    centre = scene.pose(t, case.victim)
    merged = merged_map(scene, scans, centre, CADConfig())
    xs, ys = merged.cell_centres()
    cars = scene.frames[t].boxes[scene.frames[t].kinds == CAR]
    in_range = np.abs(cars[:, :2] - centre[:2]).max(1) < 35
    boxes = np.concatenate([cars[in_range], case.box[None]])
    e = errors(merged, boxes)
    fake_seen = merged.free[box_mask(case.box[None], xs, ys)].mean()
    if fake_seen > 0.5:
        assert e.spoof[-1] > 3.0
    assert np.median(e.spoof[:-1]) <= 0.5  # true boxes hold no free space (rays stop at their surface)


def test_remove_error_appears_only_when_the_target_is_missing():
    case = _first("remove", lambda c: True)
    scene = generate_scene(case.seed)
    t = 9
    scans = observe(scene, t)
    centre = scene.pose(t, case.victim)
    merged = merged_map(scene, scans, centre, CADConfig())
    cars = scene.frames[t].boxes[scene.frames[t].kinds == CAR]
    all_boxes = cars
    without = cars[scene.frames[t].ids[scene.frames[t].kinds == CAR] != case.target_id]
    assert region_score(errors(merged, all_boxes), case.box) == 0.0
    assert region_score(errors(merged, without), case.box) > 0.5


def test_pick_threshold_by_hand():
    th, tpr, fpr = pick_threshold([5.0, 6.0, 7.0, 0.5], [0.1, 0.2, 1.0, 5.5])
    # flag above 1.0: TPR 3/4, FPR 1/4 -> 0.5625, the best product
    assert th == pytest.approx(1.0) and tpr == pytest.approx(0.75) and fpr == pytest.approx(0.25)


def test_unseen_cases_hide_the_target_from_every_benign_vehicle():
    from tenfold.cav.cases import benign_view

    found = 0
    for seed in range(3_000_000, 3_000_012):
        c = make_case(seed, "spoof", unseen=True)
        if c is None:
            continue
        scene = generate_scene(seed)
        scans = observe(scene, 9)
        assert benign_view(scene, 9, scans, c.attacker)(c.box) < 0.1
        # ... while the attacker's own honest map sees the spot (so an unforged map gives it away)
        m = occupancy_map(scans[c.attacker], scene, scene.pose(9, c.attacker))
        xs, ys = m.cell_centres()
        assert m.free[box_mask(c.box[None], xs, ys)].mean() > 0.3
        found += 1
    assert found >= 1
