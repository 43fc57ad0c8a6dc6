"""T2PO's thinking intervention (`tenfold.core.thinking`): the signal, the state machine, the sampler
hook on the byte-level tokenizer, the Hugging Face logits processor and the server option.

Expectations are computed independently: M_t by hand with `math` (log-softmax and entropy written
out), cut steps by hand from given signal sequences, and the byte tokenizer's `</think>` as its 8 bytes.
"""

import json
import math
import threading

import httpx
import pytest
import torch

from tenfold.core.errors import TenfoldError
from tenfold.core.models import build_preset
from tenfold.core.sampler import SamplingParams, generate
from tenfold.core.thinking import (
    STOP,
    CutoffMachine,
    ThinkingCutoff,
    ThinkingHook,
    ThinkingLogitsProcessor,
    uncertainty_signal,
)
from tenfold.core.tokenizer import Tokenizer

CLOSE = list(b"</think>")  # byte values; the byte tokenizer's ids are these + 8
GREEDY = SamplingParams(max_new_tokens=30, ignore_eos=True)


def hand_signal(logits: list[float], alpha: float = 0.6) -> float:
    """M_t written out: log p = x - log sum exp x, H = -sum p log p (0 log 0 = 0), |V| = len(logits)."""
    top = max(x for x in logits if x != -math.inf)
    lse = top + math.log(sum(math.exp(x - top) for x in logits if x != -math.inf))
    logp = [x - lse for x in logits]
    entropy = -sum(math.exp(lp) * lp for lp in logp if lp != -math.inf)
    return alpha * max(logp) + (1 - alpha) * (1 - entropy / math.log(len(logits)))


@pytest.fixture(scope="module")
def micro():
    return build_preset("micro", seed=0)


def byte_ids(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text)


# the signal ----------------------------------------------------------------------------------------
def test_signal_matches_a_hand_computation():
    rows = [[2.0, 1.0, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0], [3.0, -math.inf, 1.0, -math.inf]]
    got = uncertainty_signal(torch.tensor(rows)).tolist()
    for row, m in zip(rows, got, strict=True):
        assert m == pytest.approx(hand_signal(row), abs=1e-6)
    # uniform over 4: max log p = -log 4, H = log|V|, so M = -0.6 log 4
    assert got[1] == pytest.approx(-0.6 * math.log(4), abs=1e-6)
    assert uncertainty_signal(torch.tensor([rows[0]]), alpha=0.3).item() == pytest.approx(
        hand_signal(rows[0], 0.3), abs=1e-6
    )


def test_signal_stays_in_its_range_on_random_logits():
    gen = torch.Generator().manual_seed(0)
    for scale in (0.01, 1.0, 30.0):
        logits = torch.randn(64, 1000, generator=gen) * scale
        logits[:8, 500:] = -math.inf  # masked vocabulary: still finite
        m = uncertainty_signal(logits)
        assert torch.isfinite(m).all()
        assert (m >= -0.6 * math.log(1000) - 1e-5).all() and (m <= 0.4 + 1e-6).all()
    assert torch.isnan(uncertainty_signal(torch.full((1, 5), -math.inf))).all()


# the state machine ---------------------------------------------------------------------------------
def drive(machine: CutoffMachine, signals):
    return [machine.step(m) for m in signals]


def test_stagnation_cuts_at_the_hand_computed_step():
    # eps 0.01, patience 3: counter after each step 0 (no previous), 0 (+0.1), 1, 2, 3 -> cut at step 4
    cfg = ThinkingCutoff(eps=0.01, patience=3, budget=None)
    m = CutoffMachine(cfg, close_ids=[70, 71], inside=True)
    actions = drive(m, [0.1, 0.2, 0.205, 0.21, 0.212, 0.5])
    assert actions == [None, None, None, None, 70, 71]  # the close tag, one token per step
    assert (m.trace.cut_reason, m.trace.cut_at, m.trace.think_tokens) == ("stagnation", 4, 4)
    assert m.trace.signals == [0.1, 0.2, 0.205, 0.21, 0.212, 0.5]  # forced steps recorded too


def test_a_jump_resets_the_counter_and_outside_thinking_stagnation_stops():
    cfg = ThinkingCutoff(eps=0.01, patience=2, budget=None)
    m = CutoffMachine(cfg, close_ids=[70], inside=False)
    # 0, 1, 0 (jump), 1, 2 -> stop at step 4, which emits nothing
    assert drive(m, [0.3, 0.305, 0.9, 0.905, 0.91]) == [None, None, None, None, STOP]
    assert (m.trace.cut_reason, m.trace.cut_at, m.trace.ended) == ("stagnation", 4, True)
    assert len(m.trace.signals) == 4 and m.trace.think_tokens == 0


def test_budget_cut_and_record_only_mode():
    signals = [0.1 * k for k in range(10)]  # never stagnant
    m = CutoffMachine(ThinkingCutoff(budget=3), close_ids=[70, 71], inside=True)
    assert drive(m, signals[:5]) == [None, None, None, 70, 71]
    m.inside = False  # what the tag scanner concludes once the close tag is out
    assert drive(m, signals[5:7]) == [None, None]
    assert (m.trace.cut_reason, m.trace.cut_at, m.trace.think_tokens) == ("budget", 3, 3)
    m = CutoffMachine(ThinkingCutoff(budget=3, patience=1, eps=1.0, cut=False), close_ids=[70], inside=True)
    assert drive(m, signals) == [None] * 10 and m.trace.cut_reason is None and len(m.trace.signals) == 10


def test_min_position_skips_the_first_tokens():
    m = CutoffMachine(ThinkingCutoff(eps=1.0, patience=2, min_position=3), close_ids=[70], inside=True)
    # counting starts at token 3: counter 0, 1, 2 at tokens 3, 4, 5 -> cut at token 5
    assert drive(m, [0.0] * 6) == [None] * 5 + [70]
    assert m.trace.cut_at == 5 and m.trace.signals == [0.0] * 3


@pytest.mark.parametrize(
    "bad, name",
    [
        ({"alpha": 1.5}, "alpha"),
        ({"eps": -1.0}, "eps"),
        ({"eps": math.nan}, "eps"),
        ({"patience": 0}, "patience"),
        ({"patience": 2.0}, "patience"),
        ({"budget": -1}, "budget"),
        ({"min_position": -2}, "min_position"),
        ({"close_tag": ""}, "close_tag"),
        ({"open_tag": "<a>", "close_tag": "<a>"}, "tags"),
    ],
)
def test_validate_names_the_bad_value(bad, name):
    with pytest.raises(TenfoldError, match=name):
        ThinkingCutoff(**bad).validate()


# the sampler hook on the byte-level tokenizer --------------------------------------------------------
def test_stagnation_forces_the_byte_close_tag_then_stops(micro):
    model, tok = micro
    hook = ThinkingHook(tok, ThinkingCutoff(patience=1, eps=1e9))
    g = generate(model, tok, ["Question: 2+2? <think>"], GREEDY, hook=hook)[0]
    # step 0 samples one token (no previous M_t), step 1 cuts: 8 bytes of </think>, then stagnation
    # outside thinking ends the sequence
    assert [t - 8 for t in g.token_ids[1:]] == CLOSE and len(g.token_ids) == 9
    assert g.text.endswith("</think>") and g.finish_reason == "hook"
    t = hook.trace(0)
    assert (t.cut_reason, t.cut_at, t.think_tokens, t.ended) == ("stagnation", 1, 1, True)
    assert len(t.signals) == 9 and hook.turn_score(0) == pytest.approx(sum(t.signals) / 9)


def test_budget_closes_after_exactly_budget_thinking_tokens(micro):
    model, tok = micro
    hook = ThinkingHook(tok, ThinkingCutoff(budget=5, patience=10**6))
    prompts = ["<think>", "Question: 2+2? <think>"]
    gens = generate(model, tok, prompts, GREEDY, hook=hook)
    for g in gens:
        assert [t - 8 for t in g.token_ids[5:13]] == CLOSE
        assert g.finish_reason == "length" and len(g.token_ids) == 30
        t = hook.trace(g.index)
        assert (t.cut_reason, t.cut_at, t.think_tokens) == ("budget", 5, 5)
        assert len(t.signals) == 30
        assert t.forced == list(range(5, 13))  # the 8 bytes of the close tag, and nothing else


def test_outside_thinking_the_sequence_stops(micro):
    model, tok = micro
    hook = ThinkingHook(tok, ThinkingCutoff(patience=3, eps=1e9))
    # a closed think block in the prompt: outside thinking; M_t counted at steps 1..3 -> stop at step 3
    g = generate(model, tok, ["<think>done</think> answer:"], GREEDY, hook=hook)[0]
    assert g.finish_reason == "hook" and len(g.token_ids) == 3
    t = hook.trace(0)
    assert (t.cut_reason, t.cut_at, t.think_tokens, t.ended) == ("stagnation", 3, 0, True)


def test_record_only_never_changes_the_output_and_records_the_signal(micro):
    model, tok = micro
    params = SamplingParams(max_new_tokens=25, temperature=1.0, seed=7)
    prompts = ["<think>", "hi"]
    plain = generate(model, tok, prompts, params)
    seen: dict[int, list] = {0: [], 1: []}
    hook = ThinkingHook(tok, ThinkingCutoff(patience=1, eps=1e9, budget=0, cut=False))

    def both(state):  # keep each row's raw logits, for an independent M_t
        for i, s in enumerate(state.seqs):
            seen[s.index].append(state.logits[i].double().tolist())
        hook(state)

    hooked = generate(model, tok, prompts, params, hook=both)
    for a, b in zip(plain, hooked, strict=True):
        assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
        t = hook.trace(b.index)
        assert t.cut_reason is None and len(t.signals) == len(b.token_ids)
        assert t.signals == pytest.approx([hand_signal(row) for row in seen[b.index]], abs=1e-5)
    assert hook.trace(0).think_tokens == 25 and hook.trace(1).think_tokens == 0


def test_state_does_not_leak_across_generate_calls(micro):
    model, tok = micro
    cfg = ThinkingCutoff(budget=4, patience=10**6)
    hook = ThinkingHook(tok, cfg)
    generate(model, tok, ["<think>first prompt"], GREEDY, hook=hook)
    hook.reset()
    with pytest.raises(TenfoldError, match="no sequence 0"):
        hook.trace(0)
    second = generate(model, tok, ["<think>another"], GREEDY, hook=hook)[0]
    fresh = ThinkingHook(tok, cfg)
    again = generate(model, tok, ["<think>another"], GREEDY, hook=fresh)[0]
    assert second.token_ids == again.token_ids and hook.trace(0) == fresh.trace(0)
    assert hook.trace(0).cut_at == 4 and len(hook.trace(0).signals) == 30
    # even without reset(): a new call's sequence (a new SeqState at index 0) starts clean
    third = generate(model, tok, ["<think>another"], GREEDY, hook=hook)[0]
    assert third.token_ids == again.token_ids and hook.trace(0) == fresh.trace(0)


def test_turn_score_is_nan_without_signals(micro):
    model, tok = micro
    hook = ThinkingHook(tok, ThinkingCutoff(min_position=100, budget=None))
    generate(model, tok, ["x"], SamplingParams(max_new_tokens=3), hook=hook)
    assert hook.trace(0).signals == [] and math.isnan(hook.turn_score(0))


# the Hugging Face logits processor -----------------------------------------------------------------
def tiny_llama(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(cfg).eval()


def hf_generate(model, proc, ids: list[int], n: int) -> list[int]:
    from transformers import LogitsProcessorList

    x = torch.tensor([ids])
    out = model.generate(
        x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=n,
        do_sample=False,
        logits_processor=LogitsProcessorList([proc]),
        pad_token_id=0,
        eos_token_id=2,
    )
    return out[0, len(ids) :].tolist()


def test_hf_processor_forces_the_byte_close_tag():
    tok = Tokenizer.byte_level()
    model = tiny_llama(tok.vocab_size)
    proc = ThinkingLogitsProcessor(tok, ThinkingCutoff(budget=3, patience=10**6))
    new = hf_generate(model, proc, [tok.bos_id, *byte_ids(tok, "Q? <think>")], 16)
    assert [t - 8 for t in new[3:11]] == CLOSE
    assert (proc.trace(0).cut_reason, proc.trace(0).cut_at, proc.trace(0).think_tokens) == ("budget", 3, 3)
    # a second generate call starts clean (no reset needed): same prompt, same result
    again = hf_generate(model, proc, [tok.bos_id, *byte_ids(tok, "Q? <think>")], 16)
    assert again == new and proc.trace(0).cut_at == 3 and len(proc.trace(0).signals) == 16


def test_hf_processor_one_token_close_tag_and_stop():
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    from tenfold.core.tokenizer import _build_byte_level

    tk = _build_byte_level()
    tk.add_tokens([AddedToken("<think>", special=False), AddedToken("</think>", special=False)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|eos|>")
    close = hf.convert_tokens_to_ids("</think>")
    assert hf.encode("</think>", add_special_tokens=False) == [close]  # as Qwen3's tokenizer
    model = tiny_llama(len(hf))
    proc = ThinkingLogitsProcessor(hf, ThinkingCutoff(patience=1, eps=1e9))
    new = hf_generate(model, proc, hf.encode("Q? <think>", add_special_tokens=False), 10)
    # token 0 sampled, token 1 the close tag, token 2: stagnation outside thinking forces eos (then HF stops)
    assert new[1:3] == [close, hf.eos_token_id]
    t = proc.trace(0)
    assert (t.cut_reason, t.cut_at, t.ended, len(t.signals)) == ("stagnation", 1, True, 3)


# the server option ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny):
    from tenfold.core.server import ServerThread, create_app

    model, tok = tiny
    with (
        ServerThread(create_app(model, tok, "tiny")) as s,
        httpx.Client(base_url=s.base_url, timeout=60) as c,
    ):
        yield c


def test_server_option_cuts_only_its_request(server, tiny):
    model, tok = tiny
    body = {"model": "tiny", "prompt": "Q? <think>", "max_tokens": 30, "temperature": 0, "ignore_eos": True}
    ref = generate(model, tok, ["Q? <think>"], GREEDY)[0]
    got = {}

    def post(name, extra):
        got[name] = server.post("/completions", json={**body, **extra})

    threads = [
        threading.Thread(target=post, args=("cut", {"thinking_cutoff": {"budget": 5, "patience": 10**6}})),
        threading.Thread(target=post, args=("plain", {"thinking_cutoff": None})),
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    plain, cut = got["plain"].json()["choices"][0], got["cut"].json()["choices"][0]
    assert plain["text"] == ref.text and "tenfold" not in plain
    assert cut["text"][5:13] == "</think>" and cut["text"][:5] == ref.text[:5]
    report = cut["tenfold"]["thinking"]
    assert (report["cut"], report["cut_at"], report["thinking_tokens"], report["ended"]) == (
        "budget",
        5,
        5,
        False,
    )
    assert isinstance(report["turn_score"], float)


def test_server_chat_stop_and_stream(server):
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 20,
        "temperature": 0,
        "thinking_cutoff": {"patience": 2, "eps": 1e9},
    }
    r = server.post("/chat/completions", json=body)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    # the chat prompt has no <think>: stagnation outside thinking ends the answer after 2 tokens
    assert choice["finish_reason"] == "hook" and r.json()["usage"]["completion_tokens"] == 2
    assert choice["tenfold"]["thinking"]["cut"] == "stagnation" and choice["tenfold"]["thinking"]["ended"]
    with server.stream("POST", "/chat/completions", json={**body, "stream": True}) as s:
        lines = [ln for ln in s.iter_lines() if ln.startswith("data: {")]
    last = json.loads(lines[-1][len("data: ") :])["choices"][0]
    assert last["finish_reason"] == "hook" and last["tenfold"]["thinking"]["cut_at"] == 2


@pytest.mark.parametrize(
    "option", [{"patience": 0}, {"eps": "x"}, {"alpha": 2.0}, {"budget": -1}, {"pateince": 3}, 5]
)
def test_server_option_bad_values_are_400(server, option):
    r = server.post("/completions", json={"model": "tiny", "prompt": "hi", "thinking_cutoff": option})
    assert r.status_code == 400, r.text
    assert "thinking_cutoff" in r.json()["error"]["message"]


def test_server_option_infinite_eps_is_400(server):
    # 1e400 overflows to inf when parsed: pydantic takes it, ThinkingCutoff.validate refuses it
    raw = b'{"model": "tiny", "prompt": "hi", "thinking_cutoff": {"eps": 1e400}}'
    r = server.post("/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "thinking_cutoff" and "eps" in r.json()["error"]["message"]


def test_end_outside_false_only_ever_closes_thinking():
    from tenfold.core.thinking import STOP

    flat = [0.4] * 12
    ends = CutoffMachine(ThinkingCutoff(eps=0.01, patience=3, budget=None), [99], inside=False)
    assert STOP in [ends.step(m) for m in flat]  # the paper: stagnation outside thinking ends the answer
    keeps = CutoffMachine(
        ThinkingCutoff(eps=0.01, patience=3, budget=None, end_outside=False), [99], inside=False
    )
    assert [keeps.step(m) for m in flat] == [None] * 12 and keeps.trace.cut_reason is None
    keeps.inside = True  # entering thinking: the counter starts from 0, not from the flat run before it
    assert [keeps.step(m) for m in flat[:3]] == [None, None, 99]  # 3 flat steps inside, then the cut


def test_reset_at_tags_keeps_a_flat_thought_from_ending_the_answer():
    from tenfold.core.thinking import STOP

    cfg = ThinkingCutoff(eps=0.01, patience=4, budget=None, reset_at_tags=True)
    m = CutoffMachine(cfg, [99], inside=True)
    assert [m.step(0.4) for _ in range(3)] == [None] * 3  # 2 flat comparisons so far, no cut yet
    m.inside = False  # thinking closed by the model itself: the answer starts counting afresh
    # the first answer step compares with the thought's last M_t and restarts at 0; 4 more flat steps
    assert [m.step(0.4) for _ in range(5)] == [None, None, None, None, STOP]
    plain = CutoffMachine(ThinkingCutoff(eps=0.01, patience=4, budget=None), [99], inside=True)
    [plain.step(0.4) for _ in range(3)]
    plain.inside = False
    assert plain.step(0.4) is None and plain.step(0.4) == STOP  # the paper's rule: the run carries over
