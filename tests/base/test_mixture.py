"""The pretraining mixture: deterministic, held out where it says, and every document's answer right
by an independent computation (Python for programs, the environment's checker for arithmetic)."""

import random
import re

import pytest

from tenfold.base import mixture as mx
from tenfold.core.errors import TenfoldError
from tenfold.core.tokenizer import Tokenizer
from tenfold.core.train import IGNORE

TOK = Tokenizer.byte_level()


def test_documents_are_a_function_of_the_seed():
    assert mx.documents(3, 50) == mx.documents(3, 50)
    assert mx.documents(3, 50) != mx.documents(4, 50)


def test_every_component_appears_and_weights_are_checked():
    kinds = {d.component for d in mx.documents(0, 400)}
    assert kinds == set(mx.COMPONENTS)
    only = {d.component for d in mx.documents(0, 50, {"arith": 1.0})}
    assert only == {"arith"}
    with pytest.raises(TenfoldError, match="unknown mixture component"):
        mx.documents(0, 5, {"poetry": 1.0})
    with pytest.raises(TenfoldError, match="positive sum"):
        mx.documents(0, 5, {"arith": 0.0})


@pytest.mark.parametrize("distance", [10, 50, 200, 800])
def test_copy_answer_is_in_the_context_at_the_distance(distance):
    for i in range(20):
        prompt, answer = mx.copy_doc(random.Random(i), distance)
        key = prompt.rsplit("Repeat ", 1)[1].rstrip(":")
        note = f"Note {key}:{answer}"
        assert note in prompt, "the value asked for is written in the context under its key"
        assert prompt.count(f"Note {key}:") == 1, "keys are distinct"
        gap = len(prompt) - (prompt.index(note) + len(note)) - len(mx.copy_query(key))
        assert distance - 20 <= gap <= distance + 2


def test_recall_answers_match_the_facts():
    body, qa = mx.recall_doc(random.Random(1), 10, 900, 10)
    assert len(qa) == 10 and 850 <= len(body) <= 960
    for q, a in qa:
        key = q.removeprefix("Q: ").removesuffix("? A:")
        assert body.count(f"Fact: {key} ") == 1 and f"Fact: {key}{a}." in body


def test_arith_documents_are_right():
    from tenfold.envs.arith import evaluate

    for d in mx.component_documents("arith", 0, 30):
        for expr, worked in re.findall(r"Q: (.+)\nA: (.+)", d.text):
            assert int(worked.rsplit("=", 1)[1]) == evaluate(expr)


def test_program_traces_and_fixes_agree_with_python():
    for d in mx.component_documents("programs", 0, 60):
        code = re.findall(r"^\d+: (.+)$", d.text, flags=re.M)
        printed = code[-1][len("print(") : -1]
        env: dict = {}
        exec("\n".join(code[:-1]), {}, env)  # noqa: S102 - our own generated straight-line programs
        output = int(re.search(r"Output: (-?\d+)", d.text).group(1))
        assert output == env[printed]
        if "Trace: " in d.text:
            trace = re.search(r"Trace: (.+)", d.text).group(1)
            assert trace.endswith(f"{_last_assignment(code)}={env[_last_assignment(code)]}")
        else:
            want = int(re.search(r"Wanted: (-?\d+)", d.text).group(1))
            fix = re.search(r"Fix: insert line \d+: (.+)", d.text).group(1)
            exec(fix, {}, env)  # noqa: S102
            assert env[printed] == want


def _last_assignment(code):
    return code[-2].split(" = ")[0]


def test_game_action_is_admissible_and_goal_directed():
    for d in mx.component_documents("games", 0, 40):
        target = re.search(r"Goal: take the (\w+)", d.text).group(1)
        for turn in re.findall(r"Observation: (.+)\nGoal: .+\nActions: (.+)\nAction: (.+)", d.text):
            obs, actions, action = turn
            assert action in actions.split(" | ")
            if f" {target}" in obs.split("Exits")[0]:
                assert action == f"take {target}"
            else:
                assert action.startswith("go ") and f"is {action[3:]}." in obs


def test_encoding_frames_documents_and_chat_loss_is_on_the_assistant():
    text = mx.Doc("text", "The cook is wise.")
    ids, labels = mx.encode_doc(TOK, text)
    assert ids[0] == TOK.bos_id and ids[-1] == TOK.eos_id and labels[0] == IGNORE and labels[1:] == ids[1:]
    chat = mx.Doc(
        "chat", messages=({"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hi!"})
    )
    ids, labels = mx.encode_doc(TOK, chat)
    trained = TOK.decode(
        [t for t, y in zip(ids, labels, strict=True) if y != IGNORE], skip_special_tokens=False
    )
    assert trained == "Hi!<|end|>"


def test_packing_keeps_documents_whole_and_order():
    docs = [([1] * n, [2] * n) for n in (5, 4, 3, 9, 2)]
    packed = mx.pack(docs, 10)
    assert [len(x) for x, _ in packed] == [9, 3, 9, 2]
    assert sum((x for x, _ in packed), []) == sum((x for x, _ in docs), [])
    assert [len(x) for x, _ in mx.pack([([1] * 15, [1] * 15)], 10)] == [10]


def test_held_out_probes_do_not_repeat_training_documents():
    train = {d.text for d in mx.documents(0, 3000) if d.component == "copy"}
    held = {mx.copy_doc(random.Random(f"probe-copy:{mx.HELD_OUT_SEED + i}:200"), 200) for i in range(50)}
    assert not any(p + a in train for p, a in held)


def test_copy_and_recall_take_the_loss_on_questions_and_answers_only():
    for d in mx.component_documents("copy", 3, 40) + mx.component_documents("recall", 3, 20):
        ids, labels = mx.encode_doc(TOK, d)
        trained = TOK.decode([t for t, y in zip(ids, labels, strict=True) if y != IGNORE])
        assert trained == d.text[d.loss_from :] and 0 < d.loss_from < len(d.text)
        if d.text.startswith("Say it twice: "):
            assert trained.strip() == d.text.split(" | ")[0].removeprefix("Say it twice: ")
        elif d.component == "copy":
            assert trained.startswith(" Repeat ")
        else:
            assert trained.startswith("\nQ: ")
