"""One fine-tuning run: determinism (the bench reuses grid runs), convergence times, per-module lr."""

import pytest
import torch

from tenfold.core.errors import TenfoldError
from tenfold.mars import lora
from tenfold.mars.finetune import RunConfig, crossing_step, lr_at, run

SMALL = dict(data_size=32, batch_size=8, epochs=1.0, val_size=8, test_size=16, snapshots=2)


def test_crossing_step_interpolates_the_90_percent_point():
    # gap 10 -> target 1.0 above the final loss 0: reached between step 10 (2.0) and step 20 (0.0)
    assert crossing_step([10.0, 2.0, 0.0], [0, 10, 20], final=0.0) == pytest.approx(15.0)
    assert crossing_step([10.0, 0.5, 0.0], [0, 10, 20], final=0.0) == pytest.approx(9.47, abs=0.01)
    assert crossing_step([10.0, 9.0, 8.0], [0, 10, 20], final=0.0) == 20.0  # never: the last step


def test_lr_schedule_warms_up_then_decays_to_a_tenth():
    assert lr_at(0, 100, 1.0) == pytest.approx(0.2)
    assert lr_at(5, 100, 1.0) == pytest.approx(1.0)
    assert lr_at(99, 100, 1.0) == pytest.approx(0.1, abs=1e-3)


def test_same_config_same_run(llava_dir):
    cfg = RunConfig(rank_vision=2, rank_language=4, measure_convergence=False, **SMALL)
    a, b = run(cfg, llava_dir), run(cfg, llava_dir)
    assert a["test"] == b["test"] and a["train_loss"] == b["train_loss"]
    assert a["steps"] == 4 and a["examples"] == 32 and a["layers"] == {"vision": 18, "language": 28}


def test_convergence_times_lie_within_the_run(llava_dir):
    rec = run(RunConfig(rank_vision=4, rank_language=4, **{**SMALL, "snapshots": 4}), llava_dir)
    conv = rec["convergence"]
    for m in lora.MODULES:
        assert 0.0 <= conv[m]["time"] <= rec["steps"]
        assert conv[m]["steps"] == [0, 1, 2, 3, 4] and len(conv[m]["curve"]) == 5
        # the curve ends at the final adapter, which is the final validation loss
        assert conv[m]["curve"][-1] == pytest.approx(conv["final_val_loss"], abs=1e-3)


def test_vision_learning_rate_scale_reaches_only_the_vision_tower(llava_dir, monkeypatch):
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **kw):
        seen.append({g["scale"]: g["lr"] for g in self.param_groups})
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    run(RunConfig(lr_vision_scale=0.1, measure_convergence=False, **SMALL), llava_dir)
    for lrs in seen:
        assert lrs[0.1] == pytest.approx(0.1 * lrs[1.0])


def test_adalora_run_calls_update_and_allocate_every_step(llava_dir):
    rec = run(
        RunConfig(
            method="adalora",
            adalora_init_r=4,
            adalora_target_r=2,
            measure_convergence=False,
            **{**SMALL, "epochs": 3.0},
        ),
        llava_dir,
    )
    assert rec["adalora"]["update_and_allocate_calls"] == rec["steps"] == 12


def test_bad_run_configs_are_named():
    with pytest.raises(TenfoldError, match="method"):
        RunConfig(method="dora")
    with pytest.raises(TenfoldError, match="data_size"):
        RunConfig(data_size=0)
    with pytest.raises(TenfoldError, match="lr_vision_scale"):
        RunConfig(lr_vision_scale=0)
    with pytest.raises(TenfoldError, match="language rank"):
        RunConfig(rank_language=0)
