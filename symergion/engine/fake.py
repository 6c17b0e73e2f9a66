"""A deterministic engine with canned replies, for unit tests."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence

from symergion.engine.base import EngineTotals, GenerationRequest, GenerationStats

Reply = Callable[[str], str]
SeededReply = Callable[[str, int], str]


class FakeEngine:
    """Replies with ``reply(prompt)``, one character-group "token" at a time.

    A token is a run of up to four characters, so stop and trim logic is exercised on
    partial lines the way a real tokenizer would. A request of ``generate_many`` with its own
    ``seed`` gets ``seeded(prompt, seed)`` when given (a sampling model's samples differ by
    seed), else the same reply (as greedy decoding ignores the seed).
    """

    def __init__(self, model_name: str, reply: Reply | str, *, n_ctx: int = 4096,
                 slots: int = 4, seeded: SeededReply | None = None) -> None:
        self.model_name = model_name
        self.slots = slots
        self._batch_stats: list[GenerationStats] = []
        self._reply: Reply = (lambda _p: reply) if isinstance(reply, str) else reply
        self._seeded = seeded
        self._n_ctx = n_ctx
        self._stats = GenerationStats()
        self._totals = EngineTotals()
        self.calls: list[str] = []
        self.batches: list[int] = []  # the size of each generate_many call
        self.closed = False

    @property
    def n_ctx(self) -> int:
        """Return the fake context length."""
        return self._n_ctx

    @property
    def stats(self) -> GenerationStats:
        """Return the figures of the last call."""
        return self._stats

    @property
    def batch_stats(self) -> list[GenerationStats]:
        """Return the figures of each request of the last ``generate_many`` call."""
        return self._batch_stats

    @property
    def totals(self) -> EngineTotals:
        """Return the running figures: every prompt evaluated whole, no time spent."""
        return self._totals

    def count_tokens(self, text: str) -> int:
        """Count four characters as one token."""
        return (len(text) + 3) // 4 + 1

    def token_text(self, token_ids: list[int]) -> str:
        """Render ids as ``<id>`` markers."""
        return "".join(f"<{i}>" for i in token_ids)

    def chat_prompt(self, user_message: str) -> str:
        """Wrap the message in a minimal chat frame."""
        return f"<user>{user_message}</user><assistant>"

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        cancel: threading.Event | None = None,
        stable_prefix: int = 0,
        marks: tuple[int, ...] = (),
    ) -> Iterator[str]:
        """Yield the canned reply in four-character tokens (no KV: the marks change nothing)."""
        self.calls.append(prompt)
        text = self._reply(prompt)
        stats = self._stats = GenerationStats(prompt_tokens=self.count_tokens(prompt))
        try:
            for count, start in enumerate(range(0, len(text), 4)):
                if count >= max_tokens or (cancel is not None and cancel.is_set()):
                    return
                stats.generated_tokens = count + 1
                yield text[start : start + 4]
        finally:
            self._count(stats)

    def _count(self, stats: GenerationStats) -> None:
        totals = self._totals
        totals.requests += 1
        totals.prompt_tokens += stats.prompt_tokens
        totals.decoded_tokens += stats.generated_tokens

    def generate_many(
        self,
        requests: Sequence[GenerationRequest],
        *,
        cancel: threading.Event | None = None,
        stopped: Collection[int] | None = None,
    ) -> Iterator[tuple[int, str]]:
        """Play the replies as a batch of ``slots``: one token of each running reply per step.

        A reply ends at its text's end, its ``max_tokens``, a stop or the cancel, and the next
        waiting request takes its slot, as ``LlamaEngine.generate_many`` does.
        """
        stopped = stopped if stopped is not None else ()
        self.calls.extend(request.prompt for request in requests)
        self.batches.append(len(requests))
        self._batch_stats = stats = [GenerationStats(prompt_tokens=self.count_tokens(r.prompt))
                                     for r in requests]
        pending = deque(range(len(requests)))
        running: list[tuple[int, str]] = []
        try:
            while pending or running:
                if cancel is not None and cancel.is_set():
                    break
                while pending and len(running) < self.slots:
                    index = pending.popleft()
                    running.append((index, self._reply_to(requests[index])))
                for index, text in list(running):
                    done = stats[index].generated_tokens
                    reason = ("stopped" if index in stopped else
                              "max_tokens" if done >= requests[index].max_tokens else
                              "eos" if done * 4 >= len(text) else "")
                    if reason:
                        stats[index].stop = reason
                        running.remove((index, text))
                        continue
                    stats[index].generated_tokens = done + 1
                    yield index, text[done * 4 : done * 4 + 4]
        finally:
            for index in [*pending, *(i for i, _ in running)]:
                if not stats[index].stop:
                    stats[index].stop = "cancelled"
            for figures in stats:
                self._count(figures)

    def _reply_to(self, request: GenerationRequest) -> str:
        if request.seed is not None and self._seeded is not None:
            return self._seeded(request.prompt, request.seed)
        return self._reply(request.prompt)

    def close(self) -> None:
        """Mark the engine closed."""
        self.closed = True
