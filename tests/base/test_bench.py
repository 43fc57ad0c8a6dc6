"""tenfold-base's reproduce rows and plot from hand-made probe results: each row's value is its probe,
and pass follows the target."""

from pathlib import Path

from tenfold.base import bench
from tenfold.base import reproduce as rep
from tenfold.core.reproduce import Context

PROBES = {
    "copy@50": 1.0,
    "copy@200": 0.96,
    "copy@800": 0.5,
    "recall": 0.91,
    "recall tokens": 926,
    **{f"arith L{i}": 0.1 * i for i in range(1, 7)},
    "arith mean": 0.35,
    "chat valid": 1.0,
    "chat exact": 0.4,
    "loss/text": 0.4,
    "loss/copy": 1.2,
}


def test_rows_follow_the_probes(tmp_path, monkeypatch):
    curve = [{"step": s, **PROBES} for s in (500, 1000)]
    monkeypatch.setattr(
        rep, "run", lambda cfg: {"model": "m", "probes": PROBES, "config": cfg, "curve": curve}
    )
    rows = {r.metric: r for r in rep.reproduce(Context("base", "quick", Path(tmp_path)))}
    assert rows["base_copy_200"].value == 0.96 and rows["base_copy_200"].passed
    assert rows["base_copy_800"].value == 0.5 and not rows["base_copy_800"].passed
    assert rows["base_recall_10_facts"].passed and not rows["base_arith_mean"].passed
    assert "L6 60%" in rows["base_arith_mean"].detail
    assert (tmp_path / "base_probes.png").stat().st_size > 0
    assert "| copy@800 | 50% | >= 90% |" in (tmp_path / "base_probes.md").read_text()


def test_plot_without_curve(tmp_path):
    assert bench.plot({"model": "m", "probes": PROBES}, tmp_path / "p.png").stat().st_size > 0
