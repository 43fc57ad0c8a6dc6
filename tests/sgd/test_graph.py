import asyncio

from tenfold.core.backends import Completion
from tenfold.sgd.graph import critical_tokens, decode_graph
from tenfold.sgd.skeleton import parse_skeleton


class Scripted:
    """Answers point k with its title plus the parents' answers it was shown; `delay` per call."""

    def __init__(self, name, delays=None):
        self.model, self.delays, self.calls = name, delays or {}, []

    async def chat(self, messages, max_tokens=64, **kw):
        point = messages[-1]["content"]
        self.calls.append(point)
        title = point.split("POINT: ")[1].split("\n")[0]
        await asyncio.sleep(self.delays.get(title, 0.0))
        shown = [line for line in point.split("\n") if line.startswith("PARENT ")]
        text = title + "".join(f" <{s.split(': ', 1)[1]}>" for s in shown)
        return Completion(text, "stop", 10, len(text.split()))


def prompt(question, skeleton, point, parents):
    lines = [f"Q: {question}", skeleton.format(), f"POINT: {point.title}"]
    lines += [f"PARENT {i}: {t}" for i, t in sorted(parents.items())]
    return [{"role": "user", "content": "\n".join(lines)}]


SK = "1. a | deps: none | hard\n2. b | deps: none | easy\n3. c | deps: 2 | hard\n4. d | deps: 1, 3 | hard"


def run(**kw):
    large, small = Scripted("large", kw.pop("delays", None)), Scripted("small")
    res = asyncio.run(decode_graph("q", parse_skeleton(SK), prompt, large, small, **kw))
    return res, large, small


def test_parents_answers_are_forwarded_and_order_is_kept():
    res, large, small = run()
    assert [r.text for r in res.points] == ["a", "b", "c <b>", "d <a> <c <b>>"]
    assert [r.model for r in res.points] == ["large", "small", "large", "large"]
    assert len(small.calls) == 1 and len(large.calls) == 3
    assert res.trace["waves"] == 3 and res.trace["max_parallel"] == 2


def test_without_forwarding_points_see_only_question_and_skeleton():
    res, _, _ = run(forward=False)
    assert [r.text for r in res.points] == ["a", "b", "c", "d"]


def test_eager_starts_a_point_when_its_own_parents_finish():
    # a is slow, c depends only on the fast b: eagerly c starts before a ends; in waves it waits for a
    eager, _, _ = run(delays={"a": 0.3})
    waves, _, _ = run(delays={"a": 0.3}, eager=False)
    a, c = eager.points[0], eager.points[2]
    assert c.start < a.end
    assert waves.points[2].start >= waves.points[0].end
    for res in (eager, waves):  # a child never starts before its parents end
        by = {r.id: r for r in res.points}
        assert by[4].start >= max(by[1].end, by[3].end) and by[3].start >= by[2].end


def test_critical_tokens_by_hand():
    sk = parse_skeleton(SK)
    # chains: 1->4 = 5+1, 2->3->4 = 2+3+1; the longest is 6
    assert critical_tokens(sk, {1: 5, 2: 2, 3: 3, 4: 1}) == 6
    assert critical_tokens(sk, {1: 1, 2: 4, 3: 4, 4: 2}) == 10
    # points that could start only after some plan tokens: 1 at 7, 2 at 1, 3 at 9 (3 waits for its
    # line, not for 2), 4 at 12 -> chains 7+5=12 -> 4: max(12, 12, 9+3=12) + 1 = 13
    ready = {1: 7, 2: 1, 3: 9, 4: 12}
    assert critical_tokens(sk, {1: 5, 2: 2, 3: 3, 4: 1}, ready) == 13
    assert critical_tokens(sk, {1: 5, 2: 2, 3: 3, 4: 1}, {i: 0 for i in ready}) == 6


class Unsure(Scripted):
    """Answers with one token of logprob `lp` per point title in `unsure`, else sure tokens."""

    def __init__(self, name, unsure):
        super().__init__(name)
        self.unsure = unsure

    async def chat(self, messages, max_tokens=64, logprobs=False, **kw):
        c = await super().chat(messages, max_tokens, **kw)
        title = messages[-1]["content"].split("POINT: ")[1].split("\n")[0]
        c.logprobs = [-0.01, -3.0 if title in self.unsure else -0.02] if logprobs else None
        c.text = f"{self.model}:{c.text}"
        return c


def test_escalation_reanswers_unsure_small_points_on_the_large_model():
    sk = "1. a | deps: none | easy\n2. b | deps: none | easy\n3. c | deps: 1, 2 | hard"
    large, small = Scripted("large"), Unsure("small", unsure={"b"})
    res = asyncio.run(decode_graph("q", parse_skeleton(sk), prompt, large, small, escalate_below=-1.0))
    by = {r.id: r for r in res.points}
    assert by[1].model == "small" and by[1].text == "small:a"
    assert by[2].model == "small>large" and by[2].text == "b"  # the large model's answer is kept
    assert by[3].text == "c <small:a> <b>"  # children see the kept answer
    assert by[2].tokens == 2 and by[2].small_tokens == 1  # both decodes count (one word each here)
    assert res.trace["escalated"] == 1 and res.trace["tokens_small"] == 2
    off = asyncio.run(decode_graph("q", parse_skeleton(sk), prompt, large, Unsure("small", {"b"})))
    assert [r.model for r in off.points] == ["small", "small", "large"]  # off by default
