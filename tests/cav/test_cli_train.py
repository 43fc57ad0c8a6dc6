import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tenfold.cav import api
from tenfold.cav.bench import summarise
from tenfold.cav.detector import BEVDetector
from tenfold.cav.perception import Perception
from tenfold.cav.train import TrainConfig, trained_detector
from tenfold.cli import app
from tenfold.core.errors import TenfoldError

runner = CliRunner()


@pytest.fixture
def tiny_perception(monkeypatch):
    torch.manual_seed(0)
    p = Perception(BEVDetector(), BEVDetector(), threshold=0.1)
    monkeypatch.setattr(api, "load_perception", lambda *a, **k: p)
    return p


def test_simulate_writes_a_png(tmp_path):
    r = runner.invoke(app, ["cav", "simulate", "--seed", "2", "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.png").stat().st_size > 10_000
    assert "5 connected" in r.output or "4 connected" in r.output or "3 connected" in r.output


def test_attack_and_detect_commands_run_and_render(tmp_path, tiny_perception):
    r = runner.invoke(
        app, ["cav", "attack", "--seed", "1", "--kind", "spoof", "--out", str(tmp_path / "a.png")]
    )
    assert r.exit_code == 0, r.output
    assert "victim" in r.output and (tmp_path / "a.png").exists()
    r = runner.invoke(
        app, ["cav", "detect", "--seed", "1", "--kind", "spoof", "--out", str(tmp_path / "d.png")]
    )
    assert r.exit_code == 0, r.output
    assert "CAD flagged" in r.output and (tmp_path / "d.png").exists()


@pytest.mark.parametrize(
    "args,match",
    [
        (["--kind", "hide"], "unknown attack kind"),
        (["--mode", "late"], "unknown setting"),
        (["--method", "naive", "--kind", "remove"], "naive"),
        (["--mode", "early", "--method", "whitebox"], "unknown setting"),
    ],
)
def test_bad_attack_input_is_a_clear_error(args, match, tiny_perception):
    r = runner.invoke(app, ["cav", "attack", "--seed", "1", *args])
    assert isinstance(r.exception, TenfoldError) and match in str(r.exception)


def test_detect_rejects_negative_thresholds(tiny_perception):
    r = runner.invoke(app, ["cav", "detect", "--seed", "1", "--spoof-threshold", "-1"])
    assert isinstance(r.exception, TenfoldError) and "thresholds" in str(r.exception)


def test_training_a_detector_lowers_its_loss_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TENFOLD_CACHE", str(tmp_path))
    cfg = TrainConfig(scenes=4, frames=(9,), steps=30, batch=4, lr=3e-3)
    model = trained_detector("early", cfg, quiet=True)
    import json

    (entry,) = [p for p in tmp_path.iterdir() if p.name.startswith("cav-early")]
    log = json.loads((entry / "train_log.json").read_text())
    assert np.mean(log["loss"][-1:]) < log["loss"][0]
    again = trained_detector("early", cfg, quiet=True)  # served from the cache
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )
    with pytest.raises(TenfoldError, match="early"):
        trained_detector("late", cfg)


def test_summary_thresholds_come_from_validation_only():
    def rec(split, kind, pos, negs, success=True):
        return {
            "split": split,
            "kind": kind,
            "setting": "early/raycast",
            "attackable": True,
            "success": success,
            "cad": {
                "positive": pos,
                "positive_forged": 0.0,
                "observed": True,
                "negatives": {
                    "spoof": negs if kind == "spoof" else [],
                    "remove": negs if kind == "remove" else [],
                },
                "benign_errors": 0,
            },
        }

    records = [
        rec("val", "spoof", 5.0, [0.0, 0.5]),
        rec("val", "remove", 3.0, [0.2]),
        rec("test", "spoof", 4.0, [0.1, 6.0]),
        rec("test", "remove", 0.1, [0.0]),
    ]
    s = summarise(records)
    assert s["cad"]["thresholds"] == {"spoof": 0.5, "remove": 0.2}
    c = s["cad"]["all"]
    assert c["tpr"] == pytest.approx(0.5) and c["fpr"] == pytest.approx(1 / 3) and c["tpr_forged"] == 0.0
    assert s["success"]["early/raycast"]["rate"] == 1.0


def test_bench_pipeline_end_to_end_on_a_tiny_config(tmp_path, monkeypatch, tiny_perception):
    from tenfold.cav import bench

    monkeypatch.setattr(bench, "load_perception", lambda *a, **k: tiny_perception)
    # one worker: the patched perception lives in this process only
    cfg = bench.BenchConfig(val_scenes=3, test_scenes=3, unseen_scenes=4, ap_scenes=2, workers=1)
    cfg.whitebox = bench.WhiteBoxConfig(steps=3)
    result = bench.run_bench(cfg, quiet=True)
    splits = {r["split"] for r in result["records"]}
    assert splits == {"val", "test", "unseen"} or splits == {"val", "test"}
    tested = {r["setting"] for r in result["records"] if r["split"] == "test"}
    assert tested == {f"{m}/{a}" for m, a in bench.SETTINGS}
    for r in result["records"]:
        assert r["attackable"] in (True, False)
        if r["attackable"]:
            assert isinstance(r["success"], bool)
    assert set(result["ap"]) == {"single", "early", "intermediate"}
    md = bench.markdown(result)
    assert "CAD thresholds" in md and "early/raycast" in md
    assert bench.plot(result, tmp_path / "p.png").stat().st_size > 10_000


def test_bench_refuses_a_bad_worker_count_before_any_work(tmp_path):
    r = runner.invoke(app, ["cav", "bench", "--workers", "0", "--out", str(tmp_path)])
    assert isinstance(r.exception, TenfoldError) and "workers" in str(r.exception)
