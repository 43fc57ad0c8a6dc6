"""MARS's search on probe records made from known laws, its compute accounting, and one real search."""

import math

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.mars import laws
from tenfold.mars.finetune import RunConfig
from tenfold.mars.search import SearchConfig, choose, search, spearman

LAW_V = laws.LawT(a=2.0, beta=0.5, alpha=0.5, c=0.0)
LAW_L = laws.LawT(a=8.0, beta=0.5, alpha=0.5, c=0.0)  # aligned when r_l = 16 r_v
LAW_P = laws.LawP({64.0: 2.0, 128.0: 1.5}, a=0.5, gamma_v=1.0, b=0.5, gamma_l=1.0)


def fake_probe(cfg: RunConfig) -> dict:
    d, rv, rl = cfg.data_size, cfg.rank_vision, cfg.rank_language
    return {
        "config": {"data_size": d, "rank_vision": rv, "rank_language": rl},
        "convergence": {
            "vision": {"time": float(LAW_V.time(rv, d))},
            "language": {"time": float(LAW_L.time(rl, d))},
        },
        "val": {"ppl": float(LAW_P.ppl(rv, rl, d))},
        "examples": cfg.examples,
    }


def test_probe_design_and_compute():
    cfg = SearchConfig(run=RunConfig(data_size=512))
    probes = cfg.probe_configs()
    assert len(probes) == 10 and {p.data_size for p in probes} == {64, 128}
    assert sum(p.examples for p in probes) / cfg.run.examples == pytest.approx(5 * (1 / 8 + 1 / 4))


def test_choice_from_probes_of_known_laws():
    cfg = SearchConfig(run=RunConfig(data_size=512), tol=0.05)
    out = choose(cfg, [fake_probe(c) for c in cfg.probe_configs()])
    assert not out["fit_errors"]
    for k, v in {"a": 8.0, "alpha": 0.5, "beta": 0.5}.items():
        assert out["laws"]["law_language"][k] == pytest.approx(v, rel=1e-3)
    # aligned pairs are r_l = 16 r_v (and the snapped partners): (1, 16), (2, 32); the larger is better
    assert tuple(out["choice"]["pair"]) == (2, 32)
    # Law-P's ranking of the grid is the true law's
    pred = out["choice"]["predicted"]
    true = {k: float(LAW_P.ppl(*map(int, k.split(",")))) for k in pred}
    assert spearman(list(pred.values()), list(true.values())) == pytest.approx(1.0, abs=0.01)  # ties


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [1, 2]))


def test_bad_search_configs():
    with pytest.raises(TenfoldError, match="fractions"):
        SearchConfig(probe_fractions=(0.5, 1.0))
    with pytest.raises(TenfoldError, match="grid"):
        SearchConfig(grid_vision=(0, 2))
    with pytest.raises(TenfoldError, match="default pair"):
        SearchConfig(grid_vision=(1, 2, 4))


def test_real_search_runs_probes_and_the_chosen_pair(llava_dir):
    run = RunConfig(data_size=64, batch_size=8, epochs=1.0, val_size=8, test_size=16, snapshots=3)
    cfg = SearchConfig(grid_vision=(1, 8, 32), grid_language=(1, 8, 32), probe_fractions=(0.25, 0.5), run=run)
    assert cfg.default_pair == (8, 8)
    out = search(cfg, llava_dir)
    assert len(out["probes"]) == 10 and all("convergence" in p for p in out["probes"])
    assert out["search_runs_equivalent"] == pytest.approx(1 + 5 * 0.75)
    pair = tuple(out["choice"]["pair"])
    assert (out["final"]["config"]["rank_vision"], out["final"]["config"]["rank_language"]) == pair
    assert out["final"]["layers"] == {"vision": 18, "language": 28}
