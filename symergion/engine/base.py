"""The engine interface every model backend implements, and the token budget."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass
class GenerationStats:
    """Figures of the last ``generate`` call."""

    prompt_tokens: int = 0
    reused_prefix_tokens: int = 0
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    generation_seconds: float = 0.0
    first_token_seconds: float = 0.0
    prefix_source: str = "none"  # "none" | "memory" | "disk" | "main" (lent by the single-sequence context)
    # Why generation ended: "eos", "max_tokens", "stopped" (by the caller), "cancelled", or
    # "" while it runs.
    stop: str = ""


@dataclass
class EngineTotals:
    """What an engine has done since it was loaded: the running sums a pass's ledger reads.

    Prompt tokens are those llama.cpp evaluated; the ones a prompt took from the KV cache (in
    memory or restored from disk) are ``reused_tokens``. Decoded tokens are every token
    generated, whatever the caller kept of them. Seconds are llama.cpp's own time: a batch's
    decoding counts once, not once per sequence.
    """

    requests: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    prompt_seconds: float = 0.0
    decoded_tokens: int = 0
    decode_seconds: float = 0.0

    def add(self, other: EngineTotals) -> None:
        """Add another engine's (or call's) figures to these."""
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)

    def since(self, earlier: EngineTotals) -> EngineTotals:
        """Return what was done between ``earlier`` and now."""
        return EngineTotals(**{name: value - getattr(earlier, name)
                               for name, value in vars(self).items()})

    def copy(self) -> EngineTotals:
        """Return a snapshot of these figures."""
        return EngineTotals(**vars(self))

    def count(self, stats: GenerationStats) -> None:
        """Add one single-sequence generation's figures."""
        self.requests += 1
        if stats.prompt_seconds:  # else stopped before its prompt was evaluated
            self.prompt_tokens += max(0, stats.prompt_tokens - stats.reused_prefix_tokens)
            self.reused_tokens += stats.reused_prefix_tokens
            self.prompt_seconds += stats.prompt_seconds
        self.decoded_tokens += stats.generated_tokens
        self.decode_seconds += stats.generation_seconds


def batch_starts(length: int, bounds: Sequence[int], n_batch: int) -> list[int]:
    """Return where the batches of a ``length``-token prompt begin: every ``n_batch`` tokens,
    counted again from each of ``bounds`` (token positions: the stable prefix, the marks)."""
    edges = sorted({0, *(b for b in bounds if 0 < b < length), length})
    return [start for begin, end in itertools.pairwise(edges) for start in range(begin, end, n_batch)]


def engine_totals(engine: object) -> EngineTotals:
    """Return an engine's running figures; zeros for an engine that keeps none."""
    totals = getattr(engine, "totals", None)
    return totals.copy() if isinstance(totals, EngineTotals) else EngineTotals()


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt of ``generate_many``, with its own budget and stable prefix.

    ``seed`` replaces the checkpoint's sampling seed for this request, so that several samples
    of one prompt (best of n) differ; it changes nothing when decoding is greedy.
    ``temperature`` replaces the checkpoint's temperature: a sampled request of a greedy
    checkpoint (the variants of guided generation).
    ``marks`` are more prefixes later prompts share, see ``Engine.generate``.
    """

    prompt: str
    max_tokens: int
    stable_prefix: int = 0
    seed: int | None = None
    temperature: float | None = None
    marks: tuple[int, ...] = ()


class ChatPrompt(str):
    """A prompt rendered by a chat template, knowing where the user's message sits in it.

    Engines parse special tokens only in the template's own text: an ``<end_of_turn>`` or
    ``<eos>`` written in a source file or a note stays plain text. Any other string, including
    the result of a string operation on a ``ChatPrompt``, is tokenized as plain text throughout.
    """

    content: tuple[int, int]

    def __new__(cls, text: str, content: tuple[int, int]) -> ChatPrompt:
        prompt = super().__new__(cls, text)
        prompt.content = content
        return prompt

    def __reduce__(self) -> tuple[type[ChatPrompt], tuple[str, tuple[int, int]]]:
        # Keeps the span when the prompt crosses a process boundary.
        return (ChatPrompt, (str(self), self.content))

    def head(self, length: int) -> ChatPrompt:
        """Return the first ``length`` characters, the message span cut to match."""
        start, end = self.content
        return ChatPrompt(self[:length], (min(start, length), min(end, length)))


def prompt_segments(prompt: str) -> list[tuple[str, bool]]:
    """Split a prompt into ``(text, parse_special)`` parts, in order, none empty."""
    if isinstance(prompt, ChatPrompt):
        start, end = prompt.content
        parts = [(prompt[:start], True), (prompt[start:end], False), (prompt[end:], True)]
    else:
        parts = [(prompt, False)]
    return [(str(text), special) for text, special in parts if text]


class Engine(Protocol):
    """A loaded model that completes text.

    ``generate`` yields the text of each new token, with special tokens rendered (so that
    reasoning markers such as ``</think>`` are visible to the caller). The caller stops
    generation by closing the iterator; ``cancel`` is checked between llama.cpp calls.
    """

    model_name: str

    @property
    def n_ctx(self) -> int:
        """Return the context length the model was loaded with."""
        ...

    def count_tokens(self, text: str) -> int:
        """Return how many tokens ``text`` encodes to (with BOS; see ``prompt_segments``)."""
        ...

    def token_text(self, token_ids: list[int]) -> str:
        """Return the text of token ids, special tokens rendered."""
        ...

    def chat_prompt(self, user_message: str) -> str:
        """Render one user turn with the model's chat template, thinking enabled.

        A real engine returns a ``ChatPrompt``, so that ``generate`` parses special tokens in
        the template's text only.
        """
        ...

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        cancel: threading.Event | None = None,
        stable_prefix: int = 0,
        marks: tuple[int, ...] = (),
    ) -> Iterator[str]:
        """Yield the text of each generated token until EOS, ``max_tokens`` or cancel.

        ``stable_prefix`` is the length in characters of the start of ``prompt`` that later
        prompts are likely to share (everything before the feedback section): an engine may
        keep or persist the KV state of that prefix so the next round evaluates only the rest.
        ``marks`` are other such lengths (a file written piece by piece, each piece a mark):
        the KV of the prompt up to a mark the next prompt also has is kept for it. A llama.cpp
        engine starts a batch at each mark, so a prompt evaluated cold with the same marks
        gets the same KV, and the same greedy text.
        """
        ...

    def generate_many(
        self,
        requests: Sequence[GenerationRequest],
        *,
        cancel: threading.Event | None = None,
        stopped: Collection[int] | None = None,
    ) -> Iterator[tuple[int, str]]:
        """Generate for several prompts together; yield ``(request index, piece)``.

        Each request ends on its own (EOS, its ``max_tokens``, or the caller adding its index
        to ``stopped``, which is read after every piece); ``cancel`` ends them all. Pieces of
        one request come in order, those of different requests interleaved. A greedy request
        gives the text ``generate`` gives for it alone. An engine in another process may still
        deliver a few pieces of a request after its stop: the caller drops them.
        """
        ...

    @property
    def stats(self) -> GenerationStats:
        """Return the figures of the last ``generate`` call."""
        ...

    @property
    def batch_stats(self) -> list[GenerationStats]:
        """Return the figures of each request of the last ``generate_many`` call."""
        ...

    @property
    def totals(self) -> EngineTotals:
        """Return the running figures of every call since the engine was made."""
        ...

    def close(self) -> None:
        """Free the model and its context."""
        ...


def max_new_tokens(n_ctx: int, prompt_tokens: int, ntokens: int) -> int:
    """Return the original SymErgion token budget for a prompt.

    ``capacity - (capacity - ntokens) * exp(-prompt_tokens / (capacity - ntokens))`` where
    ``capacity = n_ctx - prompt_tokens``: short prompts get about ``ntokens``, longer ones more,
    and the budget never exceeds what is left of the context.

    Args:
        n_ctx: the context length the model is loaded with.
        prompt_tokens: the prompt's length in tokens.
        ntokens: the config's ``ntokens``.
    """
    capacity = n_ctx - prompt_tokens
    if capacity <= 0:
        return 0
    spare = capacity - ntokens
    if spare <= 0:
        return capacity
    estimate = capacity - spare * math.exp(-prompt_tokens / spare)
    return max(0, min(capacity, round(estimate)))
