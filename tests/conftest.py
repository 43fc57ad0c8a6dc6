import os

import pytest
import torch

# Tests run on CPU with a fixed thread count so timings of the suite are predictable on CI.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny():
    from tenfold.core.models import load_model

    return load_model("tiny", "cpu")
