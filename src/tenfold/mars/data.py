"""Generated images with questions: the source domain the tiny LLaVA pretrains on, and the target domain
MARS fine-tunes it to.

Images are 32x32 RGB, split in four quadrants (tl, tr, bl, br); 1-3 quadrants hold one shape in one
colour. Every example is (image, question, answer); the loss and the accuracy are on the answer only.

- **source** (pretraining): circle, square, triangle, cross drawn solid on black; plain-word answers
  ("red", "2", "top left", "red circle, blue square").
- **target** (fine-tuning): a new visual domain *and* a new answer format, so both modules must adapt.
  New glyphs (ring, diamond, bar, hook) the vision tower has never seen, drawn with a stripe texture
  on a noisy grey background with the colour channels rotated (a distorted renderer); answers in a
  terse key=value code ("c=red", "n=2", "tl=red ring;br=blue bar"). Colour names and positions keep
  their meaning, so the pretrained skills transfer but both the perception and the format must move.

`dataset(domain, n, seed)` is deterministic in its seed; training, validation and test sets use
disjoint seed ranges (`split_seed`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from tenfold.core.errors import TenfoldError

DATA_VERSION = "mars-data-v1"
IMAGE_SIZE = 32
QUADRANTS = ("tl", "tr", "bl", "br")
QUADRANT_WORDS = {"tl": "top left", "tr": "top right", "bl": "bottom left", "br": "bottom right"}
COLOURS = {
    "red": (1.0, 0.1, 0.1),
    "green": (0.1, 0.9, 0.1),
    "blue": (0.15, 0.3, 1.0),
    "yellow": (1.0, 0.9, 0.1),
    "purple": (0.7, 0.1, 0.9),
    "white": (1.0, 1.0, 1.0),
}
SOURCE_SHAPES = ("circle", "square", "triangle", "cross")
TARGET_SHAPES = ("ring", "diamond", "bar", "hook")
DOMAINS = ("source", "target")
SPLIT_OFFSET = {"train": 0, "val": 10_000_000, "test": 20_000_000}


@dataclass(frozen=True)
class Example:
    image: np.ndarray  # (3, 32, 32) float32, centred at 0
    question: str
    answer: str


def _mask(shape: str, size: int, rng: random.Random) -> np.ndarray:
    """A size x size boolean mask of one shape."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    r = size / 2
    if shape == "circle":
        return x**2 + y**2 <= r**2
    if shape == "square":
        return (np.abs(x) <= r * 0.8) & (np.abs(y) <= r * 0.8)
    if shape == "triangle":
        return (y >= -r * 0.9) & (y <= r * 0.9) & (np.abs(x) <= (y + r * 0.9) / 2)
    if shape == "cross":
        return (np.abs(x) <= r * 0.3) | (np.abs(y) <= r * 0.3)
    if shape == "ring":
        d = x**2 + y**2
        return (d <= r**2) & (d >= (r * 0.55) ** 2)
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= r
    if shape == "bar":
        return (np.abs(x) <= r * 0.95) & (np.abs(y) <= r * 0.3)
    if shape == "hook":
        return ((np.abs(x + r * 0.5) <= r * 0.3) & (np.abs(y) <= r)) | (
            (y >= r * 0.4) & (y <= r) & (x >= -r * 0.8) & (x <= r * 0.8)
        )
    raise TenfoldError(f"unknown shape {shape!r}")


def render(objects: dict[str, tuple[str, str]], domain: str, rng: random.Random) -> np.ndarray:
    """The (3, 32, 32) image of {quadrant: (colour, shape)}."""
    img = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    if domain == "target":  # noisy grey background
        nrng = np.random.default_rng(rng.randrange(2**32))
        img += 0.25 + 0.12 * nrng.standard_normal((IMAGE_SIZE, IMAGE_SIZE, 1)).astype(np.float32)
    half = IMAGE_SIZE // 2
    for q, (colour, shape) in objects.items():
        size = rng.randint(9, 13)
        oy = (0 if q[0] == "t" else half) + rng.randint(0, half - size)
        ox = (0 if q[1] == "l" else half) + rng.randint(0, half - size)
        m = _mask(shape, size, rng)
        rgb = np.array(COLOURS[colour], np.float32)
        if domain == "target":
            m = m & (np.arange(size)[:, None] % 2 == rng.randint(0, 1))  # stripes
            rgb = np.roll(rgb, 1)  # channels rotated: r->g, g->b, b->r
        patch = img[oy : oy + size, ox : ox + size]
        patch[m] = rgb
    return (np.clip(img, 0, 1) - 0.5).transpose(2, 0, 1).copy()


def _describe(objects: dict[str, tuple[str, str]], domain: str) -> str:
    parts = [(q, *objects[q]) for q in QUADRANTS if q in objects]
    if domain == "source":
        return ", ".join(f"{c} {s}" for _, c, s in parts)
    return ";".join(f"{q}={c} {s}" for q, c, s in parts)


def make_example(domain: str, seed: int) -> Example:
    """One example of `domain`, fully determined by `seed`."""
    if domain not in DOMAINS:
        raise TenfoldError(f"domain must be one of {DOMAINS}, got {domain!r}")
    rng = random.Random(f"{domain}:{seed}")
    shapes = SOURCE_SHAPES if domain == "source" else TARGET_SHAPES
    n = rng.randint(1, 3)
    quads = rng.sample(QUADRANTS, n)
    chosen_shapes = rng.sample(shapes, n)  # distinct shapes, so "the ring" names one object
    objects = {q: (rng.choice(list(COLOURS)), s) for q, s in zip(quads, chosen_shapes, strict=True)}
    image = render(objects, domain, rng)
    q = rng.choice(quads)
    colour, shape = objects[q]
    kind = rng.choice(("describe", "count", "colour", "where", "what"))
    src = domain == "source"
    if kind == "describe":
        question, answer = ("describe the image" if src else "desc"), _describe(objects, domain)
    elif kind == "count":
        question, answer = ("how many shapes?", str(n)) if src else ("n?", f"n={n}")
    elif kind == "colour":
        question, answer = (f"colour of the {shape}?", colour) if src else (f"c {shape}?", f"c={colour}")
    elif kind == "where":
        question, answer = (f"where is the {shape}?", QUADRANT_WORDS[q]) if src else (f"p {shape}?", f"p={q}")
    else:
        question, answer = (
            (f"what is at {QUADRANT_WORDS[q]}?", f"{colour} {shape}") if src else (f"s {q}?", f"s={shape}")
        )
    return Example(image, question, answer)


def split_seed(split: str, i: int, seed: int = 0) -> int:
    if split not in SPLIT_OFFSET:
        raise TenfoldError(f"split must be one of {tuple(SPLIT_OFFSET)}, got {split!r}")
    return SPLIT_OFFSET[split] + seed * 1_000_003 + i


def dataset(domain: str, n: int, split: str = "train", seed: int = 0) -> list[Example]:
    """`n` examples of `domain` from the `split`'s seed range (data seed `seed`)."""
    if n < 1:
        raise TenfoldError(f"dataset size must be at least 1, got {n}")
    return [make_example(domain, split_seed(split, i, seed)) for i in range(n)]


def plot_examples(path, n: int = 6, seed: int = 0):
    """A figure of `n` source and `n` target examples with their question and answer (docs/mars.md)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tenfold.core.benchkit import save_figure

    fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 4.6))
    for row, domain in enumerate(DOMAINS):
        for i, ex in enumerate(dataset(domain, n, "test", seed)):
            ax = axes[row, i]
            ax.imshow(ex.image.transpose(1, 2, 0) + 0.5, interpolation="nearest")
            ax.set_title(f"{ex.question}\n{ex.answer}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(domain, fontsize=11)
    return save_figure(fig, path)
