"""What the single-sequence generation loops share: the KV cache's bookkeeping and the text out.

``KvCache`` knows which tokens the context's KV cache holds and the positions where each of
their batches began, which is what decides how much of a new prompt can be reused (see
``LlamaEngine.generate``); ``PromptHeads`` decides where a prompt's batches start, on
which that reuse depends. ``TextOutput`` turns generated tokens into the caller's text and
keeps the figures of it. The sampling loop (``sample_decode``) and ``engine.lookup``'s prompt
lookup loop are both built on them.
"""

from __future__ import annotations

import codecs
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from symergion.engine.base import ChatPrompt, GenerationStats, batch_starts
from symergion.engine.batch import common_prefix, reuse_point
from symergion.engine.native import NativeContext, NativeModel, SamplerChain, TokenBatch
from symergion.engine.state import MIN_STATE_TOKENS, StateStore, find_prefix
from symergion.errors import ModelError

SEQ = 0
# Tokenized prompt heads kept: a guided file's marks, one per test, and some to spare.
_HEADS_KEPT = 64


class KvCache:
    """The one sequence of a single-sequence context: the tokens it holds and its batch starts."""

    def __init__(self, context: NativeContext, batch: TokenBatch, model_name: str) -> None:
        self.context = context
        self.batch = batch
        self.model_name = model_name
        self.cached: list[int] = []
        self.starts: list[int] = []

    def reset(self) -> None:
        """Forget every cell."""
        self.context.clear()
        self.cached = []
        self.starts = []

    def truncate(self, keep: int) -> int:
        """Drop KV cells from position ``keep`` on; return how many tokens stay cached."""
        if keep < len(self.cached):
            if keep == 0 or not self.context.seq_rm(SEQ, keep, -1):
                self.reset()
                return 0
            del self.cached[keep:]
            self.starts = [s for s in self.starts if s < keep]
        return keep

    def reuse_point(self, ids: list[int], starts: list[int]) -> int:
        """Return the longest cached prefix whose KV equals that of a cold evaluation.

        llama.cpp's results depend, in the last bits, on how tokens were split into batches,
        and a tiny model's greedy output can flip on such a difference. So a prefix is reused
        only up to a batch start of ``starts`` where the cache was computed with the very same
        batches: then a feedback round gives the same text as a cold run.
        """
        return reuse_point(self.cached, self.starts, ids, starts)

    def lend(self, ids: list[int], starts: list[int], streams: int, more_than: int
             ) -> tuple[int, list[int], bytearray] | None:
        """Return the KV of the prefix of ``ids`` held here, if longer than ``more_than``, for a batch slot.

        As ``(tokens, their batch starts, the state for a context of streams)``. The cache is
        cut back to that prefix first: a state holds only the sliding-window cells the
        sequence's last position still sees, so it must end where the borrower goes on. What is
        cut is the tail the borrower's prompt does not share.
        """
        keep = self.reuse_point(ids, starts)
        if keep <= more_than:
            return None
        keep = self.truncate(keep)
        state = self.context.state_for_streams(SEQ, streams) if keep else None
        if state is None:
            return None
        return keep, [s for s in self.starts if s < keep], state

    def restore(self, store: StateStore, ids: list[int], starts: list[int], stable: int) -> bool:
        """Load the longest stored state at a batch start within the stable prefix."""
        entry = find_prefix(store, ids, starts, stable, len(self.cached))
        if entry is None:
            return False
        self.reset()
        if not self.context.load_state(SEQ, entry.data):
            # llama.cpp rejected it (other build or context layout): drop it, evaluate cold.
            store.discard(entry.path)
            self.reset()
            return False
        self.cached = ids[: entry.n_tokens]
        # A saved prefix was evaluated cold, in batches from position 0.
        self.starts = list(range(0, entry.n_tokens, self.context.n_batch))
        return True

    def save(self, store: StateStore, prefix: list[int]) -> None:
        """Store the KV state of the cache, which holds ``prefix`` exactly."""
        state = self.context.save_state(SEQ)
        if state is not None:
            store.put(prefix, state)

    def load_prompt(self, ids: list[int], starts: list[int], stable: int, store: StateStore | None,
                    stats: GenerationStats, cancel: threading.Event | None) -> bool:
        """Bring the cache to ``ids``, reusing what it can; return False if cancelled.

        ``starts`` are where the prompt's batches begin and ``stable`` how many of its tokens
        later prompts share: with a ``store``, their KV state is loaded from it or saved to it.
        """
        reused = self.truncate(self.reuse_point(ids, starts))
        source = "memory" if reused else "none"
        if store is not None and self.restore(store, ids, starts, stable):
            reused = len(self.cached)
            source = "disk"
        save = store is not None and stable >= MIN_STATE_TOKENS and not store.contains(ids[:stable])
        if save and reused > stable:
            # Re-evaluate the few tokens past the prefix so that its state can be saved.
            reused = self.truncate(stable)
        stats.reused_prefix_tokens = reused
        stats.prefix_source = source if reused else "none"

        if save and store is not None:
            if not self.evaluate(ids, starts, stable, cancel):
                return False
            self.save(store, ids[:stable])
        return self.evaluate(ids, starts, len(ids), cancel)

    def evaluate(self, ids: list[int], starts: list[int], upto: int, cancel: threading.Event | None) -> bool:
        """Decode the batches of ``ids`` that begin at ``starts`` below ``upto``.

        Only the prompt's last token asks for logits. Return False if cancelled.
        """
        batch = self.batch
        ends = [*starts[1:], len(ids)]
        for start, stop in zip(starts, ends, strict=True):
            if start < len(self.cached):
                continue
            if start >= upto:
                break
            if cancel is not None and cancel.is_set():
                return False
            for i in range(stop - start):
                batch.put(i, ids[start + i], start + i, logits=start + i == len(ids) - 1)
            batch.set_size(stop - start)
            self.decode()
            self.cached.extend(ids[start:stop])
            self.starts.append(start)
        return True

    def decode(self, *, generating: bool = False) -> None:
        """Evaluate the batch; on failure forget the whole cache and raise a ModelError."""
        result = self.context.decode(self.batch)
        if result == 0:
            return
        # Part of the batch may have landed in the cache: forget it all.
        self.reset()
        if generating:
            raise ModelError(f"llama.cpp failed while generating with {self.model_name}",
                             hint="raise the checkpoint's context_size, or lower ntokens")
        raise ModelError(
            f"llama.cpp could not evaluate the prompt of {self.model_name} "
            f"(llama_decode returned {result})",
            hint="raise the checkpoint's context_size, or shorten the prompt",
        )


class PromptHeads:
    """Where a prompt's batches start: at multiples of n_batch and at its stable prefixes.

    Batches start again at the end of the stable prefix and at each mark, so that every prompt
    sharing that prefix evaluates it, and what follows, alike.
    """

    def __init__(self, tokenize: Callable[[str], list[int]]) -> None:
        self._tokenize = tokenize
        self._heads: dict[str, list[int]] = {}  # prompt heads (stable prefix, marks) tokenized

    def bounds(self, prompt: str, ids: list[int], stable_prefix: int, marks: Sequence[int],
               n_batch: int) -> tuple[int, list[int]]:
        """Return the stable prefix in tokens and the starts of the prompt's batches."""
        stable = min(self._stable_tokens(prompt, ids, stable_prefix), len(ids))
        bounds = [stable, *(self._stable_tokens(prompt, ids, m) for m in marks if 0 < m < len(prompt))]
        return stable, batch_starts(len(ids), bounds, n_batch)

    def _stable_tokens(self, prompt: str, ids: list[int], stable_prefix: int) -> int:
        if stable_prefix <= 0:
            return 0
        if stable_prefix >= len(prompt):
            return len(ids)
        # The prefix's last token may merge with what follows, so only the tokens both
        # tokenizations agree on are stable.
        head = prompt.head(stable_prefix) if isinstance(prompt, ChatPrompt) else prompt[:stable_prefix]
        tokens = self._heads.get(head)
        if tokens is None:
            # A writer's marks come back with every prompt: tokenize each head once.
            tokens = self._heads[head] = self._tokenize(head)
            while len(self._heads) > _HEADS_KEPT:
                del self._heads[next(iter(self._heads))]
        return common_prefix(tokens, ids)


class TextOutput:
    """Turns one generation's tokens into the caller's text, and keeps its figures in ``stats``.

    Time the caller spends between two pieces is not generation time: ``paused`` sums it.
    """

    def __init__(self, piece: Callable[[int], bytes], stats: GenerationStats, started: float,
                 current: Callable[[], bool]) -> None:
        self._piece = piece
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stats = stats
        self.started = started
        self._current = current
        self.generated = 0
        self.paused = 0.0

    @property
    def superseded(self) -> bool:
        """Return whether a newer call of the engine ended this generation."""
        return not self._current()

    def emit(self, token: int) -> Iterator[str]:
        """Count ``token`` and yield its text, if it completes any characters."""
        self.generated += 1
        self.stats.generated_tokens = self.generated
        if self.generated == 1:
            self.stats.first_token_seconds = time.perf_counter() - self.started
        text = self._decoder.decode(self._piece(token))
        if text:
            before = time.perf_counter()
            yield text
            self.paused += time.perf_counter() - before

    def tail(self) -> Iterator[str]:
        """Yield what the decoder still holds (an incomplete character) unless superseded."""
        tail = self._decoder.decode(b"", final=True)
        if tail and not self.superseded:
            yield tail


def sample_decode(cache: KvCache, model: NativeModel, out: TextOutput, chain: SamplerChain | None,
                  max_tokens: int, cancel: threading.Event | None) -> Iterator[str]:
    """Decode one token at a time, each sampled from the logits of the one before.

    Without a ``chain``, greedy decoding: the argmax of llama.cpp's logits, in place.
    """
    pick: Callable[[int], int] = (cache.context.argmax if chain is None
                                  else functools.partial(chain.sample, cache.context))
    clock = time.perf_counter
    loop_started = clock()
    try:
        while True:
            token = pick(-1)
            if model.is_eog(token):
                break
            yield from out.emit(token)
            if out.superseded:
                return
            if out.generated >= max_tokens or (cancel is not None and cancel.is_set()):
                break
            position = len(cache.cached)
            cache.batch.put(0, token, position, logits=True)
            cache.batch.set_size(1)
            cache.decode(generating=True)
            cache.cached.append(token)
            cache.starts.append(position)
        yield from out.tail()
    finally:
        out.stats.generation_seconds = clock() - loop_started - out.paused
