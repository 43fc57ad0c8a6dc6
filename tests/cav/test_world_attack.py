import numpy as np
import pytest
import torch

from tenfold.cav.attack import (
    FAKE_ID,
    REMOVE_MARGIN,
    WhiteBoxConfig,
    apply,
    naive_spoof,
    optimise_patch,
    raycast_remove,
    raycast_spoof,
    success,
    zero_patch,
)
from tenfold.cav.cases import make_case
from tenfold.cav.detector import BEVDetector, GridConfig, decode, make_targets
from tenfold.cav.geometry import box_iou, points_in_boxes
from tenfold.cav.lidar import LidarConfig
from tenfold.cav.perception import Perception, observe
from tenfold.cav.world import BUILDING, CAR, WorldConfig, generate_scene
from tenfold.core.errors import TenfoldError


def test_scene_is_seeded_and_physically_consistent():
    a, b = generate_scene(3), generate_scene(3)
    assert all(np.array_equal(fa.boxes, fb.boxes) for fa, fb in zip(a.frames, b.frames, strict=True))
    cfg = WorldConfig()
    assert cfg.cavs[0] <= len(a.cav_ids) <= cfg.cavs[1]
    for f in a.frames:
        iou = box_iou(f.boxes, f.boxes)
        np.fill_diagonal(iou, 0)
        assert iou.max() == 0  # nothing overlaps
        cars = f.boxes[f.kinds == CAR]
        assert a.on_road(cars[:, :2]).all()
        assert not a.on_road(f.boxes[f.kinds == BUILDING][:, :2]).any()
    # constant velocity along the lane
    v = a.velocities[0]
    assert np.allclose(a.frames[5].boxes[0, :2] - a.frames[4].boxes[0, :2], v * cfg.dt)


def test_bad_world_config_is_rejected():
    with pytest.raises(TenfoldError, match="cavs"):
        WorldConfig(cavs=(1, 3))
    with pytest.raises(TenfoldError, match="vehicles"):
        WorldConfig(vehicles=(2, 3), cavs=(3, 5))


def _spoof_case():
    for seed in range(50):
        c = make_case(seed, "spoof")
        if c is not None:
            return c
    raise AssertionError("no spoof case in 50 seeds")


def _remove_case():
    for seed in range(50):
        c = make_case(seed, "remove")
        if c is not None:
            return c
    raise AssertionError("no remove case in 50 seeds")


def test_raycast_spoof_only_shortens_returns_and_lies_on_the_fake_box():
    case = _spoof_case()
    scene = generate_scene(case.seed)
    t = len(scene.frames) - 1
    s = observe(scene, t)[case.attacker]
    fab = raycast_spoof(s, case.box, np.random.default_rng(0), noise=0.0)
    edited = apply(s, fab)
    assert len(fab.points) > 0
    assert np.all(edited.ranges <= s.ranges + 1e-9)  # a fake object can only occlude
    changed = edited.ranges < s.ranges - 1e-9
    assert (edited.hit_ids[changed] == FAKE_ID).all()
    pts = s.origin + edited.directions()[changed] * edited.ranges[changed, None]
    assert points_in_boxes(pts, case.box[None], margin=1e-6).all()


def test_raycast_remove_leaves_no_return_on_the_target_and_only_lengthens_rays():
    case = _remove_case()
    scene = generate_scene(case.seed)
    t = len(scene.frames) - 1
    s = observe(scene, t)[case.attacker]
    assert (s.hit_ids == case.target_id).sum() >= 5
    fab = raycast_remove(s, scene.frames[t], case.target_id, case.box)
    edited = apply(s, fab)
    assert not points_in_boxes(edited.points, case.box[None], REMOVE_MARGIN).any()
    changed = edited.ranges != s.ranges
    assert changed.sum() >= 5
    assert np.all(edited.ranges[changed] > s.ranges[changed])  # background is behind the target


def test_naive_spoof_adds_a_blob_without_touching_rays():
    case = _spoof_case()
    scene = generate_scene(case.seed)
    s = observe(scene, len(scene.frames) - 1)[case.attacker]
    out = naive_spoof(s, case.box, 40, np.random.default_rng(0))
    assert np.array_equal(out.ranges, s.ranges) and len(out.points) == len(s.points) + 40
    assert np.hypot(*(out.extra.mean(0) - case.box[:2])) < 1.0


def test_success_rule():
    target = np.array([0, 0, 4.5, 1.9, 0.0])
    near = np.array([[1.0, 0.5, 4.5, 1.9, 0.0]])
    far = np.array([[20.0, 0, 4.5, 1.9, 0.0]])
    assert success("spoof", near, target) and not success("spoof", far, target)
    assert not success("remove", near, target) and success("remove", far, target)
    assert success("remove", np.zeros((0, 5)), target) and not success("spoof", np.zeros((0, 5)), target)


def test_targets_decode_back_to_the_boxes():
    grid = GridConfig()
    centre = np.array([3.0, -2.0, 0.0])
    boxes = np.array([[10.3, 4.7, 4.4, 1.9, 0.0], [-12.2, -20.6, 4.8, 2.0, np.pi / 2]])
    t = make_targets(boxes, centre, grid)
    maps = torch.zeros(7, grid.feat_size, grid.feat_size)
    maps[0] = torch.logit(torch.from_numpy(t["heat"]).clamp(1e-4, 1 - 1e-4))
    maps[1:] = torch.from_numpy(t["reg"])
    got, scores = decode(maps, centre, grid, threshold=0.99)
    order = np.argsort(got[:, 0])
    got = got[order]
    ref = boxes[np.argsort(boxes[:, 0])]
    assert np.allclose(got[:, :4], ref[:, :4], atol=1e-4)
    assert np.allclose(np.cos(2 * got[:, 4]), np.cos(2 * ref[:, 4]), atol=1e-4)


def test_whitebox_patch_lowers_its_loss_and_stays_clipped():
    torch.manual_seed(0)
    model = BEVDetector()
    for m in model.modules():  # an untrained net maps empty space to exact zeros: give BN shifts some life
        if isinstance(m, torch.nn.BatchNorm2d):
            m.bias.data.normal_(0, 0.5)
    perception = Perception(model, model)
    case = _spoof_case()
    scene = generate_scene(case.seed)
    t = len(scene.frames) - 1
    scans = observe(scene, t, LidarConfig())
    centre = scene.pose(t, case.victim)
    g = perception.grid
    ci = int((case.box[1] - centre[1] + g.half_range) / g.feat_cell)
    cj = int((case.box[0] - centre[0] + g.half_range) / g.feat_cell)

    def maps_at_target(p):
        with torch.no_grad():
            edit = (case.attacker, lambda f: f + p.place(case.box, centre, perception))
            return perception.maps(scans, case.victim, "intermediate", centre, edit=edit)[:, ci, cj]

    def box_error(p):  # L1 between the centre cell's regression and the fake car's values
        want = torch.from_numpy(make_targets(case.box[None], centre, g)["reg"][:, ci, cj])
        return float((maps_at_target(p)[1:] - want).abs().sum())

    cfg = WhiteBoxConfig(clip=0.5, box_weight=0.0)  # the paper's loss
    p0 = zero_patch(perception, cfg)
    p1 = optimise_patch(
        perception, scans, case.attacker, case.victim, centre, "spoof", case.box, p0, 30, 0.05
    )
    assert p1.delta.abs().max() <= 0.5 + 1e-6
    assert maps_at_target(p1)[0] > maps_at_target(p0)[0] + 0.1  # the centre logit at the fake car rises
    p2 = optimise_patch(
        perception, scans, case.attacker, case.victim, centre, "remove", case.box, p0, 30, 0.05
    )
    assert maps_at_target(p2)[0] < maps_at_target(p0)[0]
    # the footprint term (a stronger attacker than the paper's) pulls the regression toward the fake car
    strong = zero_patch(perception, WhiteBoxConfig(clip=0.5, box_weight=1.0))
    p3 = optimise_patch(
        perception, scans, case.attacker, case.victim, centre, "spoof", case.box, strong, 30, 0.05
    )
    assert box_error(p3) < box_error(p0)
