"""The engine interface every model backend implements, and the token budget."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
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
    prefix_source: str = "none"  # "none" | "memory" | "disk"


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
        """Return how many tokens ``text`` encodes to (with BOS, special tokens parsed)."""
        ...

    def token_text(self, token_ids: list[int]) -> str:
        """Return the text of token ids, special tokens rendered."""
        ...

    def chat_prompt(self, user_message: str) -> str:
        """Render one user turn with the model's chat template, thinking enabled."""
        ...

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        cancel: threading.Event | None = None,
        stable_prefix: int = 0,
    ) -> Iterator[str]:
        """Yield the text of each generated token until EOS, ``max_tokens`` or cancel.

        ``stable_prefix`` is the length in characters of the start of ``prompt`` that later
        prompts are likely to share (everything before the feedback section): an engine may
        keep or persist the KV state of that prefix so the next round evaluates only the rest.
        """
        ...

    @property
    def stats(self) -> GenerationStats:
        """Return the figures of the last ``generate`` call."""
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
