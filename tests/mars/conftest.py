import pytest

from tenfold.mars import model as M


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory):
    """An unpretrained tiny LLaVA (tenfold-base's language model, a fresh vision tower), saved once."""
    model, tok = M.build("tenfold-base", seed=0)
    return M.save(model, tok, tmp_path_factory.mktemp("llava") / "model")
