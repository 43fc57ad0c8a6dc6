import itertools
import math
import random

import pytest
import torch

from tenfold.core.errors import CheckpointError, TenfoldError
from tenfold.core.models import build_preset, load_model
from tenfold.core.sampler import SamplingParams, generate
from tenfold.core.train import (
    IGNORE,
    TrainConfig,
    backward_in_groups,
    collate,
    encode_example,
    length_groups,
    lm_loss,
    load_checkpoint,
    lr_at,
    train_lm,
)

ALPHABET = "abcdefgh"


def words(n, seed):
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(3, 6))) for _ in range(n)]


def test_tiny_model_learns_to_reverse_strings():
    """~300 steps on (w=, reversed w) pairs: exact-match accuracy on held-out words far above chance.

    Chance: the model must emit 3-6 specific letters out of 264 tokens, ~0%; a copy (not reverse) baseline
    matches only palindromes (<1% of held-out words).
    """
    train = words(2000, seed=0)
    held_out = [w for w in words(300, seed=1) if w not in set(train)][:200]
    model, tok = build_preset("tiny", seed=0)
    res = train_lm(
        model,
        tok,
        [(w + "=", w[::-1]) for w in train],
        TrainConfig(steps=300, batch_size=32, lr=3e-3, quiet=True),
    )
    assert res.losses[-1] < 0.1 < res.losses[0]
    outs = generate(model, tok, [w + "=" for w in held_out], SamplingParams(max_new_tokens=10))
    acc = sum(o.text == w[::-1] for o, w in zip(outs, held_out, strict=True)) / len(held_out)
    assert acc >= 0.9, acc


def test_completion_only_mask(tiny):
    _, tok = tiny
    ids, labels = encode_example(tok, ("ab=", "ba"), completion_only=True, max_len=100)
    assert ids == [tok.bos_id, *tok.encode("ab="), *tok.encode("ba"), tok.eos_id]
    assert labels == [IGNORE] * 4 + ids[4:]
    ids, labels = encode_example(tok, ("ab=", "ba"), completion_only=False, max_len=100)
    assert labels == [IGNORE] + ids[1:]
    ids, labels = encode_example(tok, "plain", completion_only=True, max_len=4)
    assert len(ids) == len(labels) == 4


def test_masked_loss_equals_manual_cross_entropy(tiny):
    model, tok = tiny
    enc = [encode_example(tok, ex, True, 64) for ex in [("abc=", "cba"), ("hello=", "olleh")]]
    ids, mask, labels = collate(enc, tok.pad_id)
    with torch.no_grad():
        got = float(lm_loss(model, ids, mask, labels))
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    terms = []
    for r, (x, y) in enumerate(enc):
        for t in range(1, len(x)):
            if y[t] != IGNORE:
                terms.append(-float(torch.log_softmax(logits[r, t - 1], -1)[x[t]]))
    assert abs(got - sum(terms) / len(terms)) < 1e-5


def test_lr_schedule():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, cfg) == pytest.approx(0.1)


def test_resume_gives_same_weights_as_straight_run(tmp_path):
    corpus = [(w + "=", w[::-1]) for w in words(200, seed=3)]
    straight, tok = build_preset("tiny", seed=5)
    train_lm(straight, tok, corpus, TrainConfig(steps=12, batch_size=8, quiet=True))

    first, _ = build_preset("tiny", seed=5)
    cfg = TrainConfig(steps=12, batch_size=8, quiet=True, out_dir=str(tmp_path), ckpt_every=6)
    res = train_lm(first, tok, corpus, cfg)
    assert (
        res.checkpoint == str(tmp_path / "last")
        and (tmp_path / "step-000006" / "optimizer.safetensors").is_file()
    )
    # as if the run had crashed after step 6: resume a differently initialised model from that checkpoint
    resumed, _ = build_preset("tiny", seed=99)
    out = train_lm(
        resumed,
        tok,
        corpus,
        TrainConfig(steps=12, batch_size=8, quiet=True),
        resume_from=tmp_path / "step-000006",
    )
    assert len(out.losses) == 12
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_checkpoint_is_a_loadable_model(tmp_path):
    model, tok = build_preset("tiny")
    train_lm(
        model, tok, ["some text"] * 4, TrainConfig(steps=2, batch_size=2, quiet=True, out_dir=str(tmp_path))
    )
    loaded, _ = load_model(tmp_path / "last")
    for a, b in zip(model.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bad_inputs(tmp_path):
    model, tok = build_preset("tiny")
    with pytest.raises(TenfoldError, match="empty"):
        train_lm(model, tok, [], TrainConfig(steps=1, quiet=True))
    with pytest.raises(TenfoldError, match="example"):
        train_lm(model, tok, [123], TrainConfig(steps=1, quiet=True))
    with pytest.raises(TenfoldError, match="no target tokens"):  # the prompt fills max_len
        train_lm(model, tok, [("x" * 50, "y")], TrainConfig(steps=1, max_len=20, quiet=True))
    with pytest.raises(TenfoldError, match="steps"):
        TrainConfig(steps=0).validate()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(tmp_path, model)


def test_chat_example_trains_only_the_assistant_turns(tiny):
    from tenfold.core.train import IGNORE, Tokens, chat_example, encode_example

    _, tok = tiny
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "ok"},
    ]
    ex = chat_example(tok, msgs)
    assert list(ex.ids) == tok.apply_chat_template(msgs, add_generation_prompt=False)
    trained = [t for t, y in zip(ex.ids, ex.labels, strict=True) if y != IGNORE]
    assert trained == tok.encode("yo") + [tok.end_id] + tok.encode("ok") + [tok.end_id]
    assert all(y in (IGNORE, t) for t, y in zip(ex.ids, ex.labels, strict=True))
    ids, labels = encode_example(tok, ex, True, 5)
    assert ids == list(ex.ids[:5]) and labels == list(ex.labels[:5])
    with pytest.raises(TenfoldError, match="labels"):
        encode_example(tok, Tokens((1, 2), (1,)), True, 8)


def test_length_buckets_hold_neighbours_in_length():
    from tenfold.core.train import _batch_rows

    cfg = TrainConfig(batch_size=4, bucket_by_length=True, seed=3)
    lengths = [5, 100, 7, 98, 6, 99, 8, 97, 50, 51, 52, 53]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for step in range(20):
        rows = _batch_rows(cfg, step, len(lengths), order)
        pos = sorted(order.index(r) for r in rows)
        assert pos == list(range(pos[0], pos[0] + 4))  # consecutive in length order
        assert list(rows) == list(_batch_rows(cfg, step, len(lengths), order))  # a function of the step


def test_resume_refuses_a_damaged_checkpoint(tmp_path):
    """Resuming from a checkpoint whose weights were changed after saving (sha256 record) or hold NaN
    stops with a one-line CheckpointError instead of training on from garbage."""
    from safetensors.torch import load_file, save_file

    from tenfold.core.errors import CheckpointError
    from tenfold.core.train import load_checkpoint

    model, tok = build_preset("tiny")
    train_lm(
        model, tok, ["some text"] * 4, TrainConfig(steps=2, batch_size=2, quiet=True, out_dir=str(tmp_path))
    )
    ckpt = tmp_path / "last"
    weights = load_file(str(ckpt / "model.safetensors"))
    name = next(iter(weights))
    weights[name][0] = float("nan")
    save_file(weights, str(ckpt / "model.safetensors"))
    fresh, _ = build_preset("tiny")
    with pytest.raises(CheckpointError, match="sha256|size"):
        load_checkpoint(ckpt, fresh)
    (ckpt / "tenfold.json").unlink()  # no record: the NaN itself is caught
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(ckpt, fresh)


def _brute_force_cost(lengths, overhead):
    """The cheapest split by trying every set of cut points (2^(n-1) of them)."""
    n, best = len(lengths), math.inf
    for mask in range(1 << (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        best = min(best, sum((b - a) * lengths[b - 1] + overhead for a, b in itertools.pairwise(cuts)))
    return best


def test_length_groups_are_an_optimal_consecutive_split():
    rng = random.Random(0)
    for _ in range(40):
        lengths = sorted(rng.randint(1, 300) for _ in range(rng.randint(1, 9)))
        overhead = rng.choice([0, 10, 48, 500])
        groups = length_groups(lengths, overhead)
        assert groups[0][0] == 0 and groups[-1][1] == len(lengths)
        assert all(b0 == a1 and a0 < b0 for (a0, b0), (a1, _) in itertools.pairwise(groups))
        cost = sum((b - a) * lengths[b - 1] + overhead for a, b in groups)
        assert cost == _brute_force_cost(lengths, overhead)
    assert length_groups([5, 5, 5], 10) == [(0, 3)]  # equal lengths: no padding to save
    assert length_groups([3, 400], 10) == [(0, 1), (1, 2)]  # 3 + 400 + 20 < 800 + 10
    assert length_groups([3, 400], 1000) == [(0, 2)]
    with pytest.raises(ValueError, match="sorted"):
        length_groups([4, 2])


def test_grouped_backward_gives_the_whole_batch_gradient(tiny):
    """Reference: lm_loss over the whole right-padded batch, one backward pass."""
    model, tok = tiny
    rng = random.Random(1)
    batch = [
        encode_example(tok, (w * rng.randint(1, 30) + "=", w[::-1]), True, 256) for w in words(12, seed=2)
    ]
    batch.append(encode_example(tok, "a plain string, loss on all of it", True, 256))
    assert len({len(ids) for ids, _ in batch}) > 6  # lengths vary, so the batch is split
    model.zero_grad()
    ids, mask, labels = collate(batch, tok.pad_id)
    want_loss = lm_loss(model, ids, mask, labels)
    want_loss.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    got_loss = backward_in_groups(model, batch, tok.pad_id, "cpu")
    assert abs(got_loss - want_loss.item()) < 1e-5
    for g, w in zip((p.grad for p in model.parameters()), want, strict=True):
        assert torch.allclose(g, w, atol=1e-6, rtol=1e-4)
    assert len(length_groups(sorted(len(ids) for ids, _ in batch))) > 1


def test_training_with_and_without_length_groups_agrees():
    corpus = [(w * (1 + i % 7) + "=", w[::-1]) for i, w in enumerate(words(200, seed=4))]
    runs = []
    for split in (False, True):
        model, tok = build_preset("tiny", seed=6)
        res = train_lm(
            model, tok, corpus, TrainConfig(steps=8, batch_size=16, quiet=True, split_by_length=split)
        )
        runs.append((res.losses, [p.detach().clone() for p in model.parameters()]))
    (loss_a, w_a), (loss_b, w_b) = runs
    assert all(abs(a - b) < 1e-4 for a, b in zip(loss_a, loss_b, strict=True))
    for a, b in zip(w_a, w_b, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_an_interrupted_run_resumes_by_itself_only_for_the_same_run(tmp_path):
    """Rerun into an out_dir that holds a step checkpoint of the same run: it picks up there and ends
    with the straight run's weights. Other data or another lr: it starts from step 0 (the checkpoint's
    recorded losses are not reused)."""
    import shutil

    corpus = [(w + "=", w[::-1]) for w in words(200, seed=3)]
    cfg = dict(steps=12, batch_size=8, quiet=True, ckpt_every=6)
    straight, tok = build_preset("tiny", seed=5)
    full = train_lm(straight, tok, corpus, TrainConfig(out_dir=str(tmp_path / "a"), **cfg))

    def killed_after_step_6(name):
        (tmp_path / name).mkdir()
        shutil.copytree(tmp_path / "a" / "step-000006", tmp_path / name / "step-000006")
        return str(tmp_path / name)

    resumed, _ = build_preset("tiny", seed=99)
    out = train_lm(resumed, tok, corpus, TrainConfig(out_dir=killed_after_step_6("b"), **cfg))
    assert out.losses[:6] == full.losses[:6]
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)

    other_data = [(w + "=", w) for w in words(200, seed=3)]
    fresh, _ = build_preset("tiny", seed=5)
    out = train_lm(fresh, tok, other_data, TrainConfig(out_dir=killed_after_step_6("c"), **cfg))
    assert out.losses[0] != full.losses[0]  # trained from step 0 on its own data
    first_d, _ = build_preset("tiny", seed=5)
    out = train_lm(first_d, tok, corpus, TrainConfig(out_dir=killed_after_step_6("d"), lr=1e-3, **cfg))
    assert out.losses[0] == pytest.approx(full.losses[0]) and out.losses[6] != full.losses[6]
    again, _ = build_preset("tiny", seed=99)  # the same run once more: `last` is loaded, nothing retrained
    rerun = train_lm(again, tok, corpus, TrainConfig(out_dir=str(tmp_path / "d"), lr=1e-3, **cfg))
    assert rerun.losses == out.losses
    for a, b in zip(first_d.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_damaged_checkpoint_is_passed_over_when_resuming(tmp_path, capsys):
    """The furthest checkpoint has a flipped byte: the run resumes from the one before and still ends
    with the straight run's weights."""
    corpus = [(w + "=", w[::-1]) for w in words(200, seed=3)]
    cfg = dict(steps=12, batch_size=8, quiet=True, ckpt_every=4, out_dir=str(tmp_path))
    straight, tok = build_preset("tiny", seed=5)
    train_lm(straight, tok, corpus, TrainConfig(**cfg))
    import shutil

    shutil.rmtree(tmp_path / "last")
    weights = tmp_path / "step-000012" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    resumed, _ = build_preset("tiny", seed=99)
    train_lm(resumed, tok, corpus, TrainConfig(**cfg))
    assert "not resuming from" in capsys.readouterr().out
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
