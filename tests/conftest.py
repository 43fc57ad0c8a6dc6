import os

import pytest
import torch

# Tests run on CPU with one torch thread: on 2-core VMs two OpenMP threads showed phases ~10x slower
# (see tenfold/core/bench.py), which would make the suite's run time unpredictable on CI.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny():
    from tenfold.core.models import load_model

    return load_model("tiny", "cpu")
