"""A continuous-batching decode loop in a background thread, shared by the server and `LocalBackend`.

Requests are submitted from any thread or event loop; the engine thread adds waiting requests to the
running `DecodeBatch` before every decode step (so a request never waits for another to finish), and
streams each request's text deltas back to the caller's event loop. A failing sequence fails alone:
bad input is rejected at `submit`; an error while choosing one sequence's token ends that sequence
(`DecodeBatch.step`); an error in the shared forward pass rebuilds the batch from every sequence's
tokens so far, and a sequence that cannot be prefilled even alone is the one that fails.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from tenfold.core.errors import TenfoldError
from tenfold.core.sampler import (
    DecodeBatch,
    Generation,
    Prefill,
    SamplingParams,
    SeqState,
    StepState,
    new_sequence,
)

log = logging.getLogger("tenfold.engine")

# A per-sequence hook: called at every decode step with the batch's StepState and this sequence's row,
# it may force or stop that row only (e.g. `ThinkingHook.step`, a request's thinking cutoff).
SeqHook = Callable[[StepState, int], None]


@dataclass
class _Event:
    delta: str
    final: Generation | None = None
    error: BaseException | None = None


class Handle:
    """One submitted sequence: `async for delta in handle.stream()`, or `await handle.result()`."""

    def __init__(
        self, seq: SeqState, loop: asyncio.AbstractEventLoop, stream: bool, hook: SeqHook | None = None
    ):
        self.seq, self.loop, self.wants_deltas, self.hook = seq, loop, stream, hook
        self.posted_at = 0.0  # when text was last handed to the caller (perf_counter)
        self.queue: asyncio.Queue[_Event] = asyncio.Queue()
        self.cancelled = False

    def _post(self, ev: _Event) -> None:  # called from the engine thread
        _post_all(self.loop, [(self, ev)])

    async def stream(self) -> AsyncIterator[str]:
        """Yield text deltas; then `self.generation` holds the final result.

        If the consumer is cancelled or stops early, the sequence is cancelled and its slot freed.
        """
        done = False
        try:
            while True:
                ev = await self.queue.get()
                if ev.error is not None:
                    done = True
                    raise ev.error
                if ev.delta:
                    yield ev.delta
                if ev.final is not None:
                    self.generation = ev.final
                    done = True
                    return
        finally:
            if not done:
                self.cancelled = True

    async def result(self) -> Generation:
        async for _ in self.stream():
            pass
        return self.generation


def _deliver(events: list[tuple[Handle, _Event]]) -> None:
    for h, ev in events:
        h.queue.put_nowait(ev)


def _post_all(loop: asyncio.AbstractEventLoop, events: list[tuple[Handle, _Event]]) -> None:
    """Hand a step's events to one event loop in a single wake-up (less GIL ping-pong with the engine)."""
    try:
        loop.call_soon_threadsafe(_deliver, events)
    except RuntimeError:  # the caller's loop is closed: nobody is listening
        for h, _ in events:
            h.cancelled = True


class Engine:
    """Owns a model and a thread that decodes all submitted requests together."""

    def __init__(
        self,
        model,
        tokenizer,
        max_batch: int = 64,
        prefill: Prefill | None = None,
        stream_interval: float = 0.0,
    ):
        """`stream_interval` (seconds): a streamed sequence's new text is handed over at most this often
        (its first text at once, the rest at the interval and when it ends); 0 hands it over every
        step. Each hand-over wakes the caller's event loop, which on a one-core server takes time from
        decoding."""
        if stream_interval < 0:
            raise TenfoldError(f"stream_interval must be >= 0 seconds, got {stream_interval}")
        self.model, self.tok, self.max_batch, self.prefill = model, tokenizer, max_batch, prefill
        self.stream_interval = stream_interval
        self._waiting: deque[Handle] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.stats = {
            "steps": 0,
            "max_batch_seen": 0,
            "tokens": 0,
            "aborted": 0,
            "failed": 0,  # sequences ended by an error (each alone; the others went on)
            "running": 0,
            "waiting": 0,
            "shared_prefix": 0,  # tokens of the prompt prefix the running rows share (one K/V copy)
            "shared_prefix_max": 0,
        }

    def start(self) -> Engine:
        """Start the decode thread (again, after `stop()`); a no-op while it runs."""
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None  # exited after stop(): start afresh
        if self._thread is None:
            with self._cond:
                self._stopping = False
            self._thread = threading.Thread(target=self._run, name="tenfold-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def submit(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        index: int = 0,
        stream: bool = False,
        hook: SeqHook | None = None,
    ) -> Handle:
        """Validate and queue one sequence; must be called from a running event loop.

        With `stream`, text deltas are delivered every step; otherwise only the final result (cheaper).
        `hook` runs at every decode step of this sequence only (see `SeqHook`).
        Raises TenfoldError / ContextLengthError on bad input, before anything is queued.
        """
        seq = new_sequence(self.model, self.tok, index, prompt_ids, params)
        handle = Handle(seq, asyncio.get_running_loop(), stream, hook)
        seq.user = handle
        with self._cond:
            self._waiting.append(handle)
            self._cond.notify()
        return handle

    def cancel(self, handles: Sequence[Handle]) -> None:
        """Stop decoding these (a client went away); their slots free up at the next step."""
        for h in handles:
            h.cancelled = True

    # the engine thread -------------------------------------------------------------------------------
    @staticmethod
    def _seq_hooks(state: StepState) -> None:
        for i, s in enumerate(state.seqs):
            if s.user.hook is not None:
                s.user.hook(state, i)

    def _fail(self, seqs, exc: BaseException) -> None:
        for s in seqs:
            s.finish_reason, s.error = "error", exc
            s.user._post(_Event("", error=exc))
        self.stats["failed"] += len(seqs)

    def _isolate(self, batch: DecodeBatch, seqs: list, exc: BaseException) -> DecodeBatch:
        """After a failed step: a fresh batch with every sequence of `seqs` that can still run; a sequence
        that cannot be prefilled even alone fails alone, with its own error."""
        log.warning(
            "decode step failed (%s: %s); rebuilding %d sequences", type(exc).__name__, exc, len(seqs)
        )
        try:
            return batch.rebuild(seqs)
        except Exception:  # noqa: BLE001 - find the culprit below
            pass
        ok = []
        for s in seqs:
            try:
                batch.rebuild([s])
                ok.append(s)
            except Exception as own:  # noqa: BLE001
                log.warning("sequence %d fails alone (%s: %s); ending it", s.index, type(own).__name__, own)
                self._fail([s], own)
        try:
            return batch.rebuild(ok)
        except Exception as together:  # noqa: BLE001 - each runs alone but not together: give up on them
            log.exception("sequences fail only together; ending %d", len(ok))
            self._fail(ok, together)
            return batch.rebuild([])

    def _run(self) -> None:
        batch = DecodeBatch(self.model, self.tok, prefill=self.prefill)
        failed_steps = 0  # consecutive: a step that fails again after a rebuild fails its sequences
        while True:
            with self._cond:
                while not self._stopping and not self._waiting and not batch.seqs:
                    self.stats["running"], self.stats["waiting"] = 0, 0
                    self._cond.wait()
                if self._stopping:
                    break
                joining = []
                room = self.max_batch - len(batch.seqs)
                while self._waiting and room > 0 and (batch.can_merge or not batch.seqs):
                    h = self._waiting.popleft()
                    if not h.cancelled:
                        joining.append(h.seq)
                        room -= 1
                self.stats["waiting"] = len(self._waiting)
            gone = [s for s in batch.seqs if s.user.cancelled]
            running = [s for s in batch.seqs if not s.user.cancelled]
            before: list = []  # the batch as the step began (who finished if the step fails midway)
            try:
                batch.abort(gone)
                self.stats["aborted"] += len(gone)
                batch.add(joining)
                self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], len(batch.seqs))
                before = list(batch.seqs)
                # the batch's hook only while some sequence has one: a step without it skips the entropy
                hooked = any(s.user.hook is not None for s in batch.seqs)
                batch.hook = self._seq_hooks if hooked else None
                done = batch.step()
                failed_steps = 0
            except Exception as exc:  # noqa: BLE001 - the requests that can go on, go on
                done = [s for s in before if s.finish_reason is not None]
                alive = [s for s in [*running, *joining] if s.finish_reason is None]
                if failed_steps and not joining:  # it failed again right after a rebuild: not transient
                    log.exception("decode step failed again after a rebuild; failing %d", len(alive))
                    self._fail(alive, exc)
                    batch, failed_steps = batch.rebuild([]), 0
                else:
                    failed_steps += 1
                    batch = self._isolate(batch, alive, exc)
            self.stats["steps"] += 1
            self.stats["running"] = len(batch.seqs)
            self.stats["tokens"] += len(batch.seqs) + len(done)
            self.stats["shared_prefix"] = len(batch.prefix_ids)
            self.stats["shared_prefix_max"] = max(self.stats["shared_prefix_max"], len(batch.prefix_ids))
            events: dict[asyncio.AbstractEventLoop, list] = {}
            now = time.perf_counter()
            for s in batch.seqs:
                h = s.user
                if h.wants_deltas and now - h.posted_at >= self.stream_interval and (delta := s.take_delta()):
                    h.posted_at = now
                    events.setdefault(h.loop, []).append((h, _Event(delta)))
            for s in done:
                if s.finish_reason == "error":  # this sequence failed alone (see DecodeBatch.step)
                    self.stats["failed"] += 1
                    ev = _Event("", error=s.error)
                else:
                    ev = _Event(s.take_delta(), final=s.result())
                events.setdefault(s.user.loop, []).append((s.user, ev))
            for loop, evs in events.items():
                _post_all(loop, evs)
        for h in [*self._waiting, *(s.user for s in batch.seqs)]:
            h._post(_Event("", error=RuntimeError("engine stopped")))
        self._waiting.clear()
        self.stats["running"] = self.stats["waiting"] = 0
