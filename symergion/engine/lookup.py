"""Prompt lookup decoding: draft tokens from earlier text, verify them in one batch.

When the last ``LOOKUP_NGRAM`` tokens occurred before (in the prompt or the answer so far), the
tokens that followed them are guessed to come next. One ``llama_decode`` evaluates the pending
token and the guesses; each guess is kept while it equals the argmax after its predecessor.
The text is greedy decoding's, except where two tokens are nearly tied: llama.cpp's batched
kernels round differently from its one-token path (by up to 1-2 logits on Gemma 3 270M), so
drafted positions can tip the other way. See ``docs/benchmarks.md`` for when it pays.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from symergion.engine.decoding import SEQ, KvCache, TextOutput
from symergion.engine.native import NativeModel

# The n-gram that must recur, and the bounds of a draft. A draft of k tokens costs about as much
# as k/4 to k/3 single-token decodes here (the 262k-row output matrix is multiplied once per
# drafted position), so drafts stay short until they keep being accepted.
LOOKUP_NGRAM = 3
LOOKUP_MIN_DRAFT = 2
LOOKUP_MAX_DRAFT = 16
# After a draft is rejected outright, decode this many tokens plainly before drafting again.
LOOKUP_COOLDOWN = 8


class _Drafts:
    """The text so far, where each of its n-grams last ended, and how long a draft may be."""

    def __init__(self, history: list[int]) -> None:
        self.history = history
        self.seen: dict[tuple[int, ...], int] = {}
        for end in range(LOOKUP_NGRAM, len(history) + 1):
            self.seen[tuple(history[end - LOOKUP_NGRAM : end])] = end
        self.length = LOOKUP_MIN_DRAFT
        self.cooldown = 0

    def propose(self, budget: int) -> list[int]:
        """Return the tokens that followed the last n-gram before, at most ``budget`` of them."""
        history = self.history
        key = tuple(history[-LOOKUP_NGRAM:])
        match_end = self.seen.get(key)
        self.seen[key] = len(history)
        if self.cooldown:
            self.cooldown -= 1
            return []
        if match_end is None:
            return []
        return history[match_end : match_end + min(self.length, budget)]

    def judge(self, drafted: int, accepted: int) -> None:
        """Lengthen drafts that were all accepted, shorten or pause those that were not."""
        if not drafted:
            return
        if accepted == drafted:
            self.length = min(LOOKUP_MAX_DRAFT, 2 * self.length)
        elif accepted == 0:
            self.length = LOOKUP_MIN_DRAFT
            self.cooldown = LOOKUP_COOLDOWN
        else:
            self.length = max(LOOKUP_MIN_DRAFT, accepted + 1)

    def extend(self, token: int) -> None:
        """Add an accepted guess to the text, and its n-gram to those seen."""
        self.history.append(token)
        self.seen[tuple(self.history[-LOOKUP_NGRAM:])] = len(self.history)


def lookup_decode(cache: KvCache, model: NativeModel, out: TextOutput, max_tokens: int,
                  cancel: threading.Event | None) -> Iterator[str]:
    """Decode greedily with prompt lookup, from the logits the prompt's evaluation left."""
    clock = time.perf_counter
    drafts = _Drafts(list(cache.cached))
    pending = cache.context.argmax(-1)
    loop_started = clock()
    try:
        while True:
            # Emit the pending token, the argmax after everything in the cache.
            if model.is_eog(pending):
                break
            drafts.history.append(pending)
            yield from out.emit(pending)
            if out.superseded:
                return
            if out.generated >= max_tokens or (cancel is not None and cancel.is_set()):
                break
            draft = drafts.propose(max_tokens - out.generated)
            accepted, following = _verify(cache, pending, draft)
            drafts.judge(len(draft), accepted)
            # Emit the accepted guesses: each is the greedy token after its predecessor.
            stop = False
            for token in draft[:accepted]:
                if model.is_eog(token):
                    stop = True
                    break
                drafts.extend(token)
                yield from out.emit(token)
                if out.superseded:
                    return
                if out.generated >= max_tokens:
                    stop = True
                    break
            if stop:
                break
            pending = following
        yield from out.tail()
    finally:
        out.stats.generation_seconds = clock() - loop_started - out.paused


def _verify(cache: KvCache, pending: int, draft: list[int]) -> tuple[int, int]:
    """Decode ``pending`` and ``draft`` in one batch; return the guesses kept and the next token.

    The cells of rejected guesses are dropped, so the KV cache holds exactly ``cache.cached``.
    """
    context = cache.context
    batch = cache.batch
    position = len(cache.cached)
    for i, token in enumerate([pending, *draft]):
        batch.put(i, token, position + i, logits=True)
    batch.set_size(1 + len(draft))
    cache.decode()
    accepted = 0
    following = context.argmax(0)
    while accepted < len(draft) and following == draft[accepted]:
        accepted += 1
        following = context.argmax(accepted)
    if accepted < len(draft):
        context.seq_rm(SEQ, position + 1 + accepted, -1)
    cache.cached.append(pending)
    cache.cached.extend(draft[:accepted])
    cache.starts.append(position)
    return accepted, following
