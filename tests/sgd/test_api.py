import asyncio
import re

import pytest

from tenfold.core.errors import TenfoldError
from tenfold.envs.chains import ChainConfig, generate, score
from tenfold.sgd.api import SGDConfig, answer
from tenfold.sgd.prompts import POINT_SYSTEM, SKELETON_SYSTEM, expert_skeleton
from tenfold.sgd.skeleton import parse_skeleton

from .fakes import Reader, StreamingReader


def question():
    for seed in range(100):  # one with dependent and independent parts, easy and hard
        q = generate(ChainConfig(parts=6, max_depth=2, seed=seed))
        kinds = {(bool(p.deps), p.difficulty) for p in q.parts}
        if {(True, "easy"), (False, "easy"), (True, "hard")} <= kinds:
            return q
    raise AssertionError("no suitable question")


def run(mode, **kw):
    q, large, small = question(), Reader("large"), Reader("small")
    a = asyncio.run(answer(q.text, large, small, SGDConfig(mode=mode, **kw)))
    return q, a, large, small


def test_sgd_and_ar_get_every_part_and_sot_misses_the_dependent_ones():
    for mode in ("ar", "sgd"):
        q, a, _, _ = run(mode)
        assert a.mode == mode and all(score(q, a.text).values()), (mode, a.text)
    q, a, _, _ = run("sot")
    s = score(q, a.text)
    assert all(s[p.name] for p in q.parts if not p.deps)
    assert not any(s[p.name] for p in q.parts if p.deps)


def test_easy_points_go_to_the_small_model():
    q, a, large, small = run("sgd")
    easy = sum(p.difficulty == "easy" for p in q.parts)
    assert small.calls.count(POINT_SYSTEM) == easy and large.calls.count(POINT_SYSTEM) == len(q.parts) - easy
    assert a.trace["points"] == len(q.parts) and a.trace["waves"] == q.depth() + 1
    _, _, large, small = run("sgd", route=False)
    assert small.calls == [] and large.calls.count(POINT_SYSTEM) == len(q.parts)


def test_unusable_skeleton_falls_back_to_autoregressive():
    q = question()
    large = Reader("large", plan="Sure! Here is my answer without a plan.")
    a = asyncio.run(answer(q.text, large, None, SGDConfig()))
    assert a.mode == "ar" and all(score(q, a.text).values())
    assert any("no usable skeleton" in w for w in a.warnings)


def test_expert_skeleton_parses_to_the_question_graph():
    q = question()
    sk = parse_skeleton(expert_skeleton(q))
    assert sk.warnings == [] and len(sk.points) == len(q.parts)
    for p, part in zip(sk.points, q.parts, strict=True):
        assert [q.parts[d - 1].name for d in p.deps] == list(part.deps) and p.difficulty == part.difficulty


def test_bad_mode():
    with pytest.raises(TenfoldError, match="mode"):
        SGDConfig(mode="fast").validate()
    with pytest.raises(TenfoldError, match="forward"):
        SGDConfig(forward="summary").validate()


def test_both_forward_modes_give_every_part():
    """Parents' results and parents' whole texts both carry what a dependent point needs."""
    for forward in ("result", "text"):
        q, a, _, _ = run("sgd", forward=forward)
        assert all(score(q, a.text).values()), (forward, a.text)


def test_bench_arms_on_the_same_questions():
    from tenfold.sgd.bench import ARMS, BenchConfig, run_arms, summarize

    cfg = BenchConfig(questions=8, max_depth=2)
    rows = asyncio.run(run_arms(cfg, StreamingReader("large"), StreamingReader("small")))
    assert len(rows) == 8 * len(ARMS) and {r["question"] for r in rows} == set(range(8))
    s = summarize(rows)["arms"]
    assert s["ar"]["part_em"] == s["sgd"]["part_em"] == s["sgd-large-only"]["part_em"] == 1.0
    assert s["sot"]["part_em_by_depth"][0] == 1.0 and all(
        v == 0.0 for d, v in s["sot"]["part_em_by_depth"].items() if d > 0
    )
    assert s["sgd"]["small_token_share"] > 0 and s["sgd-large-only"]["small_token_share"] == 0
    ar_tokens = sum(r["tokens"] for r in rows if r["arm"] == "ar")
    serial = sum(r["critical_tokens"] + r["skeleton_tokens"] for r in rows if r["arm"] == "sgd-plan-first")
    assert s["ar"]["token_bound_vs_ar"] == 1.0 and s["sgd-plan-first"]["token_bound_vs_ar"] == pytest.approx(
        ar_tokens / serial
    )
    # streaming starts points early and decodes fewer tokens one after another
    assert s["sgd"]["started_early"] > 0 and s["sgd-plan-first"]["started_early"] == 0
    assert s["sgd"]["token_bound_vs_ar"] > s["sgd-plan-first"]["token_bound_vs_ar"]
    assert s["sgd"]["part_em"] == s["sgd-plan-first"]["part_em"] and s["sgd"]["redone"] == 0
    assert all(a["fallbacks"] == 0 for a in s.values()) and s["ar"]["speedup_vs_ar"] == 1.0
    assert s["sgd"]["ideal_speedup"] >= 1.0


def test_bench_config_rejects_impossible_shapes():
    from tenfold.sgd.bench import BenchConfig, questions

    qs = questions(BenchConfig(questions=6, min_parts=7, max_parts=8, max_depth=1))
    assert [len(q.parts) for q in qs] == [7, 8] * 3 and max(q.depth() for q in qs) <= 1
    for bad, match in (
        (dict(min_parts=5, max_parts=4), "min_parts <= max_parts"),
        (dict(max_parts=9), "<= 8"),
        (dict(max_depth=-1), "max_depth"),
        (dict(questions=0), "questions"),
        (dict(arms=["ar", "fast"]), "unknown arms"),
    ):
        with pytest.raises(TenfoldError, match=match):
            BenchConfig(**bad).validate()


def test_bench_table_plot_and_json(tmp_path):
    import json

    from tenfold.core.benchkit import write_json
    from tenfold.sgd.bench import ARMS, BenchConfig, markdown_table, plot, run_arms, summarize

    summary = summarize(asyncio.run(run_arms(BenchConfig(questions=4), Reader("large"), Reader("small"))))
    table = markdown_table(summary)
    assert table.count("\n") == 1 + len(ARMS) and "| sot |" in table
    assert plot(summary, tmp_path / "p.png").stat().st_size > 1000
    assert json.loads(write_json({"summary": summary}, tmp_path / "r.json").read_text())["summary"]["arms"]


def test_cli_names_a_bad_model():
    from typer.testing import CliRunner

    from tenfold.cli import app

    r = CliRunner().invoke(app, ["sgd", "run", "--large", "/no/such/model", "--mode", "ar"])
    assert r.exit_code != 0 and "/no/such/model" in (r.output + str(r.exception))
    # a bad benchmark shape is refused before any model is trained or served
    r = CliRunner().invoke(app, ["sgd", "bench", "--min-parts", "9", "--max-parts", "9"])
    assert r.exit_code != 0 and "max_parts <= 8" in (r.output + str(r.exception))


def test_judge_scores_are_parsed_and_averaged():
    from tenfold.core.backends import Completion
    from tenfold.sgd.bench import BenchConfig, markdown_table, run_arms, summarize
    from tenfold.sgd.judge import parse_score

    assert parse_score("score: 7") == 0.7 and parse_score("Score = 10.") == 1.0
    assert parse_score("I think it is fine") is None and parse_score("score: 42") is None

    class Judge:  # grades by the exact-match share, read from the prompt it is given
        model = "judge"

        async def chat(self, messages, **kw):
            user = messages[-1]["content"]
            q = user.split("Question:\n")[1].split("\n\nReference")[0]
            cand = user.split("Candidate answer:\n")[1]
            q = next(x for x in bench_questions if x.text == q)
            s = score(q, cand)
            return Completion(f"score: {10 * sum(s.values()) / len(s)}", "stop", 1, 1)

    cfg = BenchConfig(questions=4)
    from tenfold.sgd.bench import questions

    bench_questions = questions(cfg)
    rows = asyncio.run(run_arms(cfg, Reader("large"), Reader("small"), judge=Judge()))
    s = summarize(rows)["arms"]
    for arm in s.values():  # the judge's mean is the mean per-question part share, never missing
        assert arm["judge_missing"] == 0 and 0 <= arm["judge_score"] <= 1
    assert s["ar"]["judge_score"] == 1.0 and s["sot"]["judge_score"] < 1.0
    assert "judge score" in markdown_table(summarize(rows))


def run_streamed(plan=None, **kw):
    q, log = question(), []
    large, small = StreamingReader("large", plan, log), StreamingReader("small", log=log)
    a = asyncio.run(answer(q.text, large, small, SGDConfig(mode="sgd", **kw)))
    return q, a, log


def test_streaming_starts_points_while_the_plan_is_written():
    q, a, log = run_streamed(early_small=False)
    plan_done = log.index(("done", "large", SKELETON_SYSTEM))
    assert any(e[0] == "point" for e in log[:plan_done])  # points started before the plan ended
    assert all(score(q, a.text).values()) and a.trace["redone"] == 0
    assert 1 <= a.trace["started_early"] <= len(q.parts) - 1  # the last line ends without a newline
    # a point that started early is shown the plan through its own line; the small model's points
    # (early_small=False) and those that need them wait for the whole plan and see all of it
    sk = a.skeleton.by_id()

    def waits(i):
        return sk[i].difficulty == "easy" or any(waits(d) for d in sk[i].deps)

    assert any(waits(i) for i in sk) and not all(waits(i) for i in sk)  # precondition: both kinds
    for _, model, user in (e for e in log if e[0] == "point"):
        shown = [
            int(line.split(".")[0]) for line in user.split("Plan:\n")[1].split("\nKnown:")[0].splitlines()
        ]
        part = int(re.search(r"Part (\d+):", user).group(1))
        assert shown == (list(sk) if waits(part) else list(range(1, part + 1))), (part, model)
        assert model == ("small" if sk[part].difficulty == "easy" else "large")
    # by default (early_small), every point is shown the plan through its own line, whenever it started
    _, c, log = run_streamed()
    assert c.trace["started_early"] == len(q.parts) - 1 and c.text == a.text
    for _, _, user in (e for e in log if e[0] == "point"):
        shown = [
            int(line.split(".")[0]) for line in user.split("Plan:\n")[1].split("\nKnown:")[0].splitlines()
        ]
        assert shown == list(range(1, int(re.search(r"Part (\d+):", user).group(1)) + 1))
    # the same answer without streaming; and less decoded one after another with it
    _, b, _ = run_streamed(stream=False, early_small=False)
    assert b.text == a.text and b.trace["started_early"] == 0
    assert c.trace["serial_tokens"] < b.trace["serial_tokens"]
    assert a.trace["serial_tokens"] <= b.trace["serial_tokens"]
    assert b.trace["serial_tokens"] == b.trace["skeleton_tokens"] + b.trace["critical_tokens"]


def test_a_point_a_later_plan_line_changes_is_decoded_again():
    q = question()
    first = next(p for p in parse_skeleton(expert_skeleton(q)).points if p.difficulty == "easy")
    plan = expert_skeleton(q) + f"\n{first.id}.{first.title}|-|hard"  # a repeat: merged, now hard
    _, a, log = run_streamed(plan=plan)
    assert a.trace["redone"] >= 1 and all(score(q, a.text).values())
    started_small = [e for e in log if e[0] == "point" and f"Part {first.id}:" in e[2]]
    assert started_small[0][1] == "small" and started_small[-1][1] == "large"  # redone, on the large model
    assert a.skeleton.by_id()[first.id].difficulty == "hard"


def test_stream_needs_eager():
    with pytest.raises(TenfoldError, match="eager"):
        SGDConfig(stream=True, eager=False).validate()
    SGDConfig(stream=False, eager=False).validate()


def test_a_failing_plan_stops_the_points_it_started():
    q = question()

    class Slow(StreamingReader):  # points take long: still running when the plan fails
        async def chat(self, messages, max_tokens=64, **kw):
            self.log.append(("point", self.model, messages[-1]["content"]))
            await asyncio.sleep(30)

    class Breaks(Slow):
        async def chat_stream(self, messages, on_delta, max_tokens=64, **kw):
            c = await Reader.chat(self, messages, max_tokens, **kw)
            for ch in c.text[: len(c.text) // 2]:  # half the plan: some points start
                on_delta(ch)
                await asyncio.sleep(0)
            raise ConnectionError("server went away")

    async def run():
        log = []
        with pytest.raises(ConnectionError):
            await answer(q.text, Breaks("large", log=log), Slow("small", log=log), SGDConfig(route=True))
        # checked here, as asyncio.run cancels whatever is left when run() returns
        others = asyncio.all_tasks() - {asyncio.current_task()}
        return log, [t for t in others if not (t.done() or t.cancelling())]

    log, running = asyncio.run(run())
    assert any(e[0] == "point" for e in log)  # points had started
    assert running == []  # and none is left running
