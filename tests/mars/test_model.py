"""The tiny LLaVA: built on tenfold-base's weights, saved and loaded, scored in one pass."""

import torch

from tenfold.core.models import load_model
from tenfold.mars import data
from tenfold.mars import model as M
from tenfold.mars.train import model_dir


def test_language_model_is_tenfold_base(llava_dir):
    llava, tok = M.load(llava_dir)
    base, _ = load_model("tenfold-base", "cpu")
    ids = torch.tensor([[tok.bos_id, *tok.encode("The old miller")]])
    with torch.no_grad():
        want = base(input_ids=ids).logits
        got = llava(input_ids=ids).logits[..., : want.shape[-1]]
    assert torch.allclose(got, want, atol=1e-4)
    assert llava.config.text_config.vocab_size == base.config.vocab_size + 1


def test_training_loss_is_the_mean_answer_nll(llava_dir):
    llava, tok = M.load(llava_dir)
    enc = M.encode(data.dataset("target", 6), tok, M.image_token_id(llava))
    batch = M.collate(enc, tok.pad_id)
    with torch.no_grad():
        hf = llava(
            **{k: getattr(batch, k) for k in ("input_ids", "attention_mask", "pixel_values", "labels")}
        ).loss
        ours = M.batch_loss(llava, batch)
    assert torch.allclose(hf, ours, atol=1e-5)
    # the labels cover exactly the answer and its eos
    for (ids, labels, _), ex in zip(enc, data.dataset("target", 6), strict=True):
        kept = [t for t in labels if t != M.IGNORE]
        assert kept == [*tok.encode(ex.answer), tok.eos_id] and ids[-len(kept) :] == kept


def test_accuracy_is_greedy_decoding_exact_match():
    """Teacher-forced "every answer token is the argmax" equals a greedy decode loop reproducing it
    (on the pretrained model and source questions, where it answers some right and some wrong)."""
    llava, tok = M.load(model_dir())
    exs = [ex for ex in data.dataset("source", 10, "test") if ex.question != "describe the image"]
    image_id = M.image_token_id(llava)
    enc = M.encode(exs, tok, image_id)
    _, _, right = M.answer_losses(llava, M.collate(enc, tok.pad_id))
    for (ids, labels, img), ok in zip(enc, right.tolist(), strict=True):
        n_prompt = sum(t == M.IGNORE for t in labels)
        seq = ids[:n_prompt]
        with torch.no_grad():
            for _ in range(len(ids) - n_prompt):
                logits = llava(input_ids=torch.tensor([seq]), pixel_values=torch.from_numpy(img)[None]).logits
                seq.append(int(logits[0, -1].argmax()))
        assert (seq == ids) == ok
    assert 0 < sum(right.tolist()) < len(exs)


def test_save_and_load_round_trip(llava_dir, tmp_path):
    llava, tok = M.load(llava_dir)
    path = M.save(llava, tok, tmp_path / "copy")
    again, _ = M.load(path)
    for (n, a), (_, b) in zip(llava.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
