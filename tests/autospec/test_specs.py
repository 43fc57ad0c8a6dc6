"""Specs, metrics, generators and the simulators against hand computations and properties."""

import numpy as np
import pytest

from tenfold.autospec.baselines import hand_written
from tenfold.autospec.generate import GenConfig, autospec, clusters, grid
from tenfold.autospec.metrics import score
from tenfold.autospec.spec import Spec, load_specs, save_specs, to_vnnlib
from tenfold.autospec.systems import SYSTEMS, Dataset, simulate
from tenfold.autospec.vnnlib import parse_vnnlib
from tenfold.core.errors import TenfoldError


def toy(X, y, task="classification", classes=3) -> Dataset:
    X = np.asarray(X, np.float32)
    return Dataset(
        "toy", X, np.asarray(y), np.arange(len(y)), [f"x{i}" for i in range(X.shape[1])], task, classes
    )


def test_metrics_by_hand_with_overlap_and_unbounded_rules():
    data = toy([[0.0], [1.0], [2.0], [3.0], [4.0]], [0, 1, 1, 2, 0])
    specs = [
        Spec((-0.5,), (1.5,), classes=frozenset({0, 1})),  # covers x=0,1 (both fine)
        Spec((1.5,), (3.5,), classes=frozenset({1})),  # covers x=2 (fine), x=3 (violated)
        Spec((0.5,), (2.5,), classes=frozenset({2})),  # overlaps: covers x=1,2, violated at both
        Spec((3.5,), (4.5,), classes=frozenset({0, 1, 2})),  # allows everything: not covering
    ]
    m = score(specs, data)
    # x=0 TP; x=1 FP (third spec); x=2 FP (third spec); x=3 FP; x=4 FN
    assert (m["tp"], m["fp"], m["fn"]) == (1, 3, 1)
    assert m["precision"] == pytest.approx(1 / 4) and m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 * 0.25 * 0.5 / 0.75)


def test_regression_interval_tightness():
    data = toy([[0.0], [1.0]], np.array([0.0, 10.0], np.float32), task="regression", classes=0)
    m = score([Spec((-1.0,), (2.0,), interval=(-1.0, 4.0))], data)
    assert (m["tp"], m["fp"]) == (1, 1) and m["tightness"] == pytest.approx(0.5)


def test_vnnlib_round_trip_and_malformed_files():
    s = Spec((0.0, -1.5), (2.0, 1.5), classes=frozenset({1}))
    text = to_vnnlib(s, n_out=3)
    prop = parse_vnnlib(text)
    (region,) = prop.regions
    assert region.lo.tolist() == [0.0, -1.5] and region.hi.tolist() == [2.0, 1.5] and prop.n_outputs == 3
    assert "(assert (or (and (>= Y_0 Y_1)) (and (>= Y_2 Y_1))))" in text
    for bad in (
        text.replace(")", "", 1),
        "\n".join(ln for ln in text.splitlines() if "(<= X_1 " not in ln),
        "(declare-const Y_0 Real)",
    ):
        with pytest.raises(TenfoldError):
            parse_vnnlib(bad)
    with pytest.raises(TenfoldError):
        to_vnnlib(Spec((0.0,), (1.0,), interval=(-np.inf, np.inf)), 1)


def test_specs_save_and_load(tmp_path):
    specs = [Spec((0.0,), (1.0,), classes=frozenset({2})), Spec((0.0,), (1.0,), interval=(-np.inf, 3.0))]
    save_specs(specs, tmp_path / "s.json", {"system": "toy"})
    back, meta = load_specs(tmp_path / "s.json")
    assert back == specs and meta == {"system": "toy"}
    (tmp_path / "bad.json").write_text('{"specs": [{"lo": [0]}]}')
    with pytest.raises(TenfoldError):
        load_specs(tmp_path / "bad.json")


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_simulators_are_seeded_and_split_by_trace(system):
    a, b = simulate(system, 6, 20, seed=1), simulate(system, 6, 20, seed=1)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    gen, ev = a.split_by_trace(0.34, seed=0)
    assert set(gen.trace.tolist()).isdisjoint(ev.trace.tolist()) and len(gen) + len(ev) == len(a)


def test_autospec_cells_tile_the_space_and_hold_on_their_data():
    data = simulate("abr", 30, 60, seed=2)
    specs = autospec(data, GenConfig(min_leaf=20))
    # every spec holds for at least tau of the generation points it covers
    for s in specs:
        c = s.covers(data.X)
        assert c.sum() > 0 and s.allows(data.y[c]).mean() >= 0.95 - 1e-9
    # cells never overlap in volume: a random point lies in at most one open cell
    rng = np.random.default_rng(0)
    pts = rng.uniform(data.X.min(0), data.X.max(0), size=(2000, data.X.shape[1]))
    inside = sum(np.all((pts > np.array(s.lo)) & (pts < np.array(s.hi)), 1).astype(int) for s in specs)
    assert inside.max() <= 1


def test_autospec_beats_baselines_on_held_out_traces():
    gen, ev = simulate("abr", 40, 80, seed=3).split_by_trace(0.3, seed=3)
    f1 = {
        name: score(fn(gen), ev)["f1"]
        for name, fn in (
            ("autospec", autospec),
            ("grid", grid),
            ("clusters", clusters),
            ("hand", hand_written),
        )
    }
    assert f1["autospec"] > max(f1["grid"], f1["clusters"], f1["hand"]), f1


def test_empty_generation_data_is_an_error():
    with pytest.raises(TenfoldError, match="no generation data"):
        autospec(toy(np.zeros((0, 1)), np.zeros(0, int)))
