"""The generated images and questions: determinism, splits, and answers that match what is drawn."""

import numpy as np
import pytest

from tenfold.core.errors import TenfoldError
from tenfold.mars import data


def test_examples_are_deterministic_and_splits_differ():
    a, b = data.dataset("target", 8, "train", seed=1), data.dataset("target", 8, "train", seed=1)
    assert [(x.question, x.answer) for x in a] == [(x.question, x.answer) for x in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    test = data.dataset("target", 8, "test")
    assert not any(np.array_equal(x.image, y.image) for x, y in zip(a, test, strict=True))


def test_images_are_centred_rgb():
    for domain in data.DOMAINS:
        for ex in data.dataset(domain, 20):
            assert ex.image.shape == (3, 32, 32) and ex.image.dtype == np.float32
            assert ex.image.min() >= -0.5 and ex.image.max() <= 0.5


def test_source_shape_is_drawn_in_its_quadrant_only():
    rng = __import__("random").Random(0)
    img = data.render({"br": ("red", "square")}, "source", rng) + 0.5
    lit = img.sum(0) > 0
    assert lit[16:, 16:].any() and not lit[:16, :].any() and not lit[:, :16].any()
    assert np.allclose(img[:, lit].T, data.COLOURS["red"])


def test_target_domain_is_a_new_renderer_and_a_new_format():
    exs = data.dataset("target", 300)
    assert all("=" in ex.answer for ex in exs)
    shapes = {w for ex in exs for w in ex.answer.replace(";", " ").replace("=", " ").split()}
    assert shapes & set(data.TARGET_SHAPES) and not shapes & set(data.SOURCE_SHAPES)
    for ex in exs:
        if ex.question == "n?":  # the count matches the objects the description of the same seed lists
            assert ex.answer in {"n=1", "n=2", "n=3"}
    # the noisy background: no target image has a plain black quadrant
    assert all((ex.image + 0.5).std() > 0.05 for ex in exs[:20])


def test_describe_lists_every_object_in_quadrant_order():
    for ex in data.dataset("target", 400):
        if ex.question == "desc":
            quads = [part.split("=")[0] for part in ex.answer.split(";")]
            assert quads == [q for q in data.QUADRANTS if q in quads]
            assert 1 <= len(quads) <= 3


def test_bad_input_is_named():
    with pytest.raises(TenfoldError, match="domain"):
        data.make_example("space", 0)
    with pytest.raises(TenfoldError, match="split"):
        data.dataset("source", 4, "dev")
    with pytest.raises(TenfoldError, match="size"):
        data.dataset("source", 0)


def test_plot_examples(tmp_path):
    assert data.plot_examples(tmp_path / "d.png", n=2).stat().st_size > 5_000
