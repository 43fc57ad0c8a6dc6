"""The probes' scoring against hand-made generations (right, wrong, malformed), and a real run on an
untrained model (every metric in range, the losses near the uniform 5.6 nats of 264 tokens)."""

import math
from types import SimpleNamespace

import pytest

from tenfold.base import probes
from tenfold.core.errors import TenfoldError


def _fake_greedy(answer_for):
    def greedy(model, tok, prompts, max_new_tokens, batch_size, stop_ids=None):
        return [answer_for(p) for p in prompts]

    return greedy


def test_copy_probe_scores_exact_values(monkeypatch, tiny):
    model, tok = tiny

    def oracle(prompt):
        key = prompt.rsplit("Repeat ", 1)[1].rstrip(":")
        value = prompt.split(f"Note {key}: ", 1)[1].split(".", 1)[0]
        return SimpleNamespace(text=f" {value}. The")

    monkeypatch.setattr(probes, "_greedy", _fake_greedy(oracle))
    assert probes.copy_probe(model, tok, 200, 10)["exact"] == 1.0
    wrong = lambda p: SimpleNamespace(text=oracle(p).text.replace(".", "x", 1))  # noqa: E731
    monkeypatch.setattr(probes, "_greedy", _fake_greedy(wrong))
    assert probes.copy_probe(model, tok, 200, 10)["exact"] == 0.0


def test_recall_probe_needs_the_whole_number(monkeypatch, tiny):
    model, tok = tiny

    def answer(prompt, extra=""):
        key = prompt.rsplit("Q: ", 1)[1].removesuffix("? A:")
        return SimpleNamespace(text=" " + prompt.split(f"Fact: {key} ", 1)[1][:3] + extra)

    monkeypatch.setattr(probes, "_greedy", _fake_greedy(answer))
    r = probes.recall_probe(model, tok, episodes=2, facts=10, context=900)
    assert r["exact"] == 1.0 and r["n"] == 20 and 900 < r["tokens"] < 1000
    monkeypatch.setattr(probes, "_greedy", _fake_greedy(lambda p: answer(p, "7")))
    assert probes.recall_probe(model, tok, episodes=1, facts=10, context=900)["exact"] == 0.0


def test_chat_probe_checks_the_end_token(monkeypatch, tiny):
    model, tok = tiny
    hello = tok.encode("Hello")
    cases = [hello + [tok.end_id], hello, [tok.end_id], hello + [tok.eos_id, tok.end_id]]
    gens = iter([SimpleNamespace(token_ids=ids) for ids in cases])
    monkeypatch.setattr(probes, "_greedy", lambda *a, **k: [next(gens) for _ in a[2]])
    assert probes.chat_probe(model, tok, 4)["valid"] == 0.25


def test_untrained_model_probes(tiny):
    model, tok = tiny
    cfg = probes.ProbeConfig(copy_n=2, recall_episodes=1, recall_facts=2, arith_n=2, chat_n=2, loss_docs=2)
    out = probes.run_probes(model, tok, cfg)
    assert all(0.0 <= out[k] <= 1.0 for k in out if not k.startswith("loss/"))
    for comp in probes.COMPONENTS:
        assert abs(out[f"loss/{comp}"] - math.log(tok.vocab_size)) < 0.5


def test_bad_probe_config():
    with pytest.raises(TenfoldError, match="copy distances"):
        probes.ProbeConfig(copy_distances=(2000,)).validate()
    with pytest.raises(TenfoldError, match="recall_facts"):
        probes.ProbeConfig(recall_facts=30).validate()
