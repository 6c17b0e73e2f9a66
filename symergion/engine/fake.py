"""A deterministic engine with canned replies, for unit tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from symergion.engine.base import GenerationStats

Reply = Callable[[str], str]


class FakeEngine:
    """Replies with ``reply(prompt)``, one character-group "token" at a time.

    A token is a run of up to four characters, so stop and trim logic is exercised on
    partial lines the way a real tokenizer would.
    """

    def __init__(self, model_name: str, reply: Reply | str, *, n_ctx: int = 4096) -> None:
        self.model_name = model_name
        self._reply: Reply = (lambda _p: reply) if isinstance(reply, str) else reply
        self._n_ctx = n_ctx
        self._stats = GenerationStats()
        self.calls: list[str] = []
        self.closed = False

    @property
    def n_ctx(self) -> int:
        """Return the fake context length."""
        return self._n_ctx

    @property
    def stats(self) -> GenerationStats:
        """Return the figures of the last call."""
        return self._stats

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
    ) -> Iterator[str]:
        """Yield the canned reply in four-character tokens."""
        self.calls.append(prompt)
        text = self._reply(prompt)
        self._stats = GenerationStats(prompt_tokens=self.count_tokens(prompt))
        for count, start in enumerate(range(0, len(text), 4)):
            if count >= max_tokens or (cancel is not None and cancel.is_set()):
                return
            self._stats.generated_tokens = count + 1
            yield text[start : start + 4]

    def close(self) -> None:
        """Mark the engine closed."""
        self.closed = True
