"""The multi-process runtime (gloo, 4 CPU processes) against a single-process reference."""

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.hetermoe.moe import MoEConfig
from tenfold.hetermoe.runtime import RuntimeConfig, compare, reference, run


@pytest.mark.parametrize("schedule", ["zp", "ep"])
def test_distributed_step_matches_single_process(schedule):
    cfg = RuntimeConfig(
        schedule,
        attention_ranks=2,
        expert_ranks=2,
        micro_batches=3,
        batch=12,
        seq=32,
        steps=2,
        emulate=False,
        model=MoEConfig(experts=4),
    )
    res = run(cfg)
    c = compare(res, reference(cfg))
    assert c["grads_missing"] == []
    assert c["grad_max_rel_diff"] < 1e-4, c  # float32 sums in another order
    assert c["loss_max_abs_diff"] < 1e-5, c  # step 2 also checks the optimiser step agreed
    assert c["losses"][1] < c["losses"][0]


def test_bad_runtime_configs_are_rejected():
    with pytest.raises(TenfoldError, match="split evenly"):
        RuntimeConfig("zp", 2, 3, model=MoEConfig(experts=4)).validate()
    with pytest.raises(TenfoldError, match="divisible"):
        RuntimeConfig("zp", 2, 2, micro_batches=5, batch=24).validate()
    with pytest.raises(TenfoldError, match="schedule"):
        RuntimeConfig("pp").validate()
