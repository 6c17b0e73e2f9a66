"""Run the steps of guided writing against a model, one test at a time or several together.

A test of a guided file is written in steps: each bound value, then the assertion, each a
completion the model makes of a prompt. ``symergion.verify.guide`` writes a test as a
generator, a *writing*, that yields an ``Ask`` (a prompt to complete) and is then sent the
completion's pieces one by one. After each piece it yields None for more, or the next
``Ask`` (the completion it has is enough), or returns its result. It is sent None when the
model's completion ended by itself (end of text, its ``max_tokens``, a cancel).

The writing does not know how its prompts are served:

- ``run_one`` serves one writing through a generate function, one completion after another.
  This is how the greedy round writes, so its texts are those of a plain loop over ``generate``.
- ``run_together`` serves several writings in lockstep through one batched generation per
  step: every writing's first ``Ask`` is decoded together, then every writing's next one. The
  variants of one round are independent of each other, so a batching engine decodes them in
  one ``llama_decode`` per token, the shared start of their prompts evaluated once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Ask:
    """One completion a writing asks the model for."""

    prompt: str
    max_tokens: int
    stable_prefix: int  # the prompt start later prompts share (the engine may keep its KV)


# Yields an Ask, then None per piece it wants more of; is sent pieces, None at the stream's end.
Writing = Generator[Ask | None, str | None, T]
# (prompt, max_tokens, stable_prefix) -> the text of each generated token.
Generate = Callable[[str, int, int], Iterable[str]]
# (asks, their seeds, stopped) -> (index of the ask, piece) pairs; an index added to stopped ends
# that completion (pieces that still come for it are dropped).
GenerateMany = Callable[[Sequence[Ask], Sequence[int], Collection[int]], Iterable[tuple[int, str]]]


def _close(pieces: Iterator[object]) -> None:
    close = getattr(pieces, "close", None)
    if close is not None:
        close()  # the engine stops generating before the next prompt


def run_one(generate: Generate, writing: Writing[T]) -> T:
    """Serve a writing's asks one after another through ``generate``; return its result."""
    try:
        ask = next(writing)
        while True:
            if ask is None:
                raise RuntimeError("a writing asked for more before it asked for a completion")
            pieces = iter(generate(ask.prompt, ask.max_tokens, ask.stable_prefix))
            try:
                reply: Ask | None = None
                for piece in pieces:
                    reply = writing.send(piece)
                    if reply is not None:
                        break
                else:
                    reply = writing.send(None)
            finally:
                _close(pieces)
            ask = reply
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def capped(generate_many: GenerateMany, tokens: int) -> GenerateMany:
    """Return ``generate_many`` ending every completion once ``tokens`` pieces came, over all its calls.

    A round of tests written together shares what is left of the file's budget: the step
    that spends it ends there for every test in flight, and later steps generate nothing.
    """
    left = tokens

    def within(asks: Sequence[Ask], seeds: Sequence[int], stopped: Collection[int]
               ) -> Iterator[tuple[int, str]]:
        nonlocal left
        if left <= 0:
            return
        pieces = iter(generate_many(asks, seeds, stopped))
        try:
            for pair in pieces:
                left -= 1
                yield pair
                if left <= 0:
                    return
        finally:
            _close(pieces)
    return within


@dataclass(frozen=True)
class _Finished(Generic[T]):
    """What a writing returned."""

    value: T


def _resume(writing: Writing[T], piece: str | None) -> Ask | _Finished[T] | None:
    """Send a writing a piece (None: start it, or its completion ended); return what it yields next."""
    try:
        return writing.send(piece)
    except StopIteration as done:
        return _Finished(done.value)


def run_together(generate_many: GenerateMany, writings: Sequence[Writing[T]], seeds: Sequence[int]
                 ) -> list[T]:
    """Serve several writings in lockstep: each step's asks in one ``generate_many``; return their results.

    A writing whose completion is done waits for the step's others before its next ask, so
    every step is one batch. Each writing samples with its own seed of ``seeds``: their
    prompts differ only where their tests do, so with one seed they would sample alike. The
    results come in the order of ``writings``.
    """
    results: dict[int, T] = {}

    def next_asks(indices: Iterable[int]) -> dict[int, Ask]:
        # Started, or told that their completion ended: each returns, or asks for another.
        asks: dict[int, Ask] = {}
        for i in indices:
            reply = _resume(writings[i], None)
            if isinstance(reply, _Finished):
                results[i] = reply.value
            elif reply is None:
                raise RuntimeError("a writing asked for more without a completion to come")
            else:
                asks[i] = reply
        return asks

    asks = next_asks(range(len(writings)))
    while asks:
        order = list(asks)
        stopped: set[int] = set()
        following: dict[int, Ask] = {}
        stream = iter(generate_many([asks[i] for i in order], [seeds[i] for i in order], stopped))
        try:
            for k, piece in stream:
                if k in stopped:
                    continue  # an engine in another process may send a piece after the stop
                reply = _resume(writings[order[k]], piece)
                if isinstance(reply, _Finished):
                    results[order[k]] = reply.value
                    stopped.add(k)
                elif reply is not None:
                    following[order[k]] = reply
                    stopped.add(k)
        finally:
            _close(stream)
        following |= next_asks(i for k, i in enumerate(order) if k not in stopped)
        asks = following
    return [results[i] for i in range(len(writings))]


__all__ = ["Ask", "Generate", "GenerateMany", "Writing", "capped", "run_one", "run_together"]
