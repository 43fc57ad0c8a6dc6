"""Side-by-side timing of one training step with and without length groups (`core.train.backward_in_groups`).

    python tools/bench_length_groups.py [--steps 5] [--threads 1]

Batches of CoMem's recall warm-up (batch 32, prompts of 10 to 500 tokens, tiny preset): the same rows
through one padded pass (`lm_loss`) and through length groups, alternating, with the padded-token counts.
"""

from __future__ import annotations

import argparse
import time

import torch

from tenfold.comem.train import recall_drill
from tenfold.core.models import build_preset
from tenfold.core.train import (
    TrainConfig,
    _batch_rows,
    backward_in_groups,
    collate,
    encode_example,
    length_groups,
    lm_loss,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = build_preset("tiny", seed=0)
    encoded = [encode_example(tok, ex, True, 512) for ex in recall_drill(32 * 8, 0)]
    cfg = TrainConfig(batch_size=32)
    seconds = {"one padded pass": 0.0, "length groups": 0.0}
    tokens = {"one padded pass": 0, "length groups": 0}
    for step in range(args.steps):
        batch = [encoded[i] for i in _batch_rows(cfg, step, len(encoded), None)]
        lengths = sorted(len(ids) for ids, _ in batch)
        model.zero_grad()
        t = time.perf_counter()
        lm_loss(model, *collate(batch, tok.pad_id)).backward()
        seconds["one padded pass"] += time.perf_counter() - t
        tokens["one padded pass"] += len(batch) * lengths[-1]
        model.zero_grad()
        t = time.perf_counter()
        backward_in_groups(model, batch, tok.pad_id, "cpu")
        seconds["length groups"] += time.perf_counter() - t
        tokens["length groups"] += sum((b - a) * lengths[b - 1] for a, b in length_groups(lengths))
    for name in seconds:
        print(
            f"{name:16s} {seconds[name] / args.steps:6.2f} s/step  {tokens[name] / args.steps:8.0f} tokens/step"
        )
    print(f"speed-up {seconds['one padded pass'] / seconds['length groups']:.2f}x")


if __name__ == "__main__":
    main()
