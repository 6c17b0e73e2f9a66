"""Batched generation for ``LlamaEngine``: several prompts decode together, one step at a time.

Each request runs in one of ``slots`` sequences of a second llama.cpp context (the single-sequence
path keeps its own context, its KV reuse and its on-disk prefix state untouched). A prompt is
evaluated alone, in the same batches as ``generate`` would use; then every running sequence
adds its next token to one ``llama_decode`` per step, which reads the weights once for all of
them. A sequence that ends frees the cells of its answer (``llama_memory_seq_rm``) and a waiting
request takes its slot. A request whose prompt shares a prefix with what another slot holds
starts from a copy of that slot (``llama_memory_seq_cp``) and evaluates only the rest. A prefix
the single-sequence context holds (the file a guided round wrote so far, with its prompt) is
lent to a slot as a KV state (``NativeContext.state_for_streams``), not evaluated again.

Why every sequence has its own KV stream (``kv_unified`` off), although the context then needs
``slots`` x the per-sequence length: with one unified buffer, the queries of all sequences are
multiplied with the keys in one matrix product, whose kernel rounds differently from the
one-query product of ``generate``, and a tiny model's greedy text flips on such differences
(measured: one of four texts diverged after 32 tokens). With a stream each, every sequence's
attention is the same one-query product as alone, so greedy texts stay those of ``generate``
(with one exception, see ``docs/benchmarks.md``: repacked weights, ``extra_buffers``). The
context is sized to what the batch needs, not to the model's whole context, so the KV cells
allocated stay close to those used.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections import deque
from collections.abc import Collection, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from symergion.engine.base import EngineTotals, GenerationRequest, GenerationStats
from symergion.engine.native import NativeContext, NativeModel, SamplerChain, TokenBatch
from symergion.engine.state import MIN_STATE_TOKENS, StateStore, find_prefix
from symergion.errors import ModelError

# Per-sequence lengths are rounded up to this, so that a slightly longer batch reuses the context.
_CTX_STEP = 1024


class BatchEngine(Protocol):
    """What a batch run uses of its engine (``LlamaEngine``): its model and helpers.

    A batch run is the engine's own decoding loop for several sequences; naming what it uses
    here lets ``engine.llama`` build on this module without this module importing it back.
    """

    model_name: str

    @property
    def model(self) -> NativeModel:
        """Return the loaded model."""

    @property
    def generation(self) -> int:
        """Return the number of the engine's current call."""

    @property
    def n_ctx(self) -> int:
        """Return the context length the model was loaded with."""

    def batch_bounds(self, prompt: str, ids: list[int], stable_prefix: int,
                     marks: Sequence[int], n_batch: int | None = None) -> tuple[int, list[int]]:
        """Return the stable prefix in tokens and the starts of the prompt's batches."""

    def state_store(self, batch: bool = False) -> StateStore | None:
        """Return the prefix-state store of the single-sequence context, or of the batch one."""

    def sampler(self, seed: int | None = None, temperature: float | None = None) -> SamplerChain | None:
        """Return a llama.cpp sampler chain, or None for plain greedy decoding."""

    def lend_prefix(self, ids: list[int], starts: list[int], streams: int, more_than: int
                    ) -> tuple[int, list[int], bytearray] | None:
        """Return the single-sequence context's KV of a prefix of ``ids`` longer than ``more_than``.

        As ``(tokens, their batch starts, the state for a context of streams)``; None when it
        holds no such prefix or cannot give its state.
        """


@dataclass
class BatchFigures:
    """Figures of the last ``generate_many`` call's decode steps, for the benchmarks."""

    steps: int = 0
    step_seconds: float = 0.0
    step_tokens: int = 0  # tokens decoded by the steps (one per running sequence and step)
    generated_tokens: int = 0


@dataclass
class _Slot:
    """One sequence of the batch context: the tokens its KV holds and where its batches began."""

    seq: int
    cached: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)


@dataclass
class _Running:
    index: int
    slot: _Slot
    budget: int
    stats: GenerationStats
    chain: SamplerChain | None
    decoder: codecs.IncrementalDecoder
    token: int = -1
    shared: int = 0  # the prompt's last batch start: later prompts (a writer's marks) may share it
    began: float = 0.0
    paused_at_start: float = 0.0


class BatchContext:
    """A llama.cpp context of ``slots`` sequences, each ``per_seq`` tokens, on an engine's model."""

    def __init__(self, ctx: NativeContext, slots: int, per_seq: int) -> None:
        self.slots_count = slots
        self.per_seq = per_seq
        self.ctx = ctx  # made by the engine (``LlamaEngine._new_batch_context``), freed here
        self.n_batch = ctx.n_batch
        self.batch = TokenBatch(ctx.llama, max(self.n_batch, slots))
        self.slots = [_Slot(seq) for seq in range(slots)]

    def reset(self) -> None:
        """Forget every slot's cells."""
        self.ctx.clear()
        for slot in self.slots:
            slot.cached, slot.starts = [], []

    def free(self) -> None:
        """Free the native context and batch (once)."""
        self.batch.close()
        self.ctx.close()


def reuse_point(cached: Sequence[int], old_starts: Sequence[int], ids: Sequence[int],
                starts: Sequence[int]) -> int:
    """Return the longest cached prefix whose KV equals that of a cold evaluation of ``ids``.

    A prefix counts only up to a batch start of ``starts`` where the cache was computed with the
    very same batches (see ``KvCache.reuse_point``).
    """
    common = min(common_prefix(cached, ids), len(ids) - 1)
    point = 0
    for i, start in enumerate(starts):
        if start > common or i > len(old_starts) or (i > 0 and old_starts[i - 1] != starts[i - 1]):
            break
        same = i < len(old_starts) and old_starts[i] == start
        if same or (i == len(old_starts) and start == len(cached)):
            point = start
    return point


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Return how many leading items ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class BatchRun:
    """One ``generate_many`` call: admits requests into slots and steps them together."""

    def __init__(self, engine: BatchEngine, context: BatchContext, requests: Sequence[GenerationRequest],
                 ids: list[list[int]], cancel: threading.Event | None,
                 stopped: Collection[int] | None, generation: int) -> None:
        self.engine = engine
        self.context = context
        self.requests = requests
        self.ids = ids
        self.cancel = cancel
        self.stopped: Collection[int] = stopped if stopped is not None else ()
        self.generation = generation
        self.stats = [GenerationStats(prompt_tokens=len(i)) for i in ids]
        self.figures = BatchFigures()
        self.paused = 0.0
        self.started = time.perf_counter()

    # -- the loop --------------------------------------------------------------------------

    def pieces(self) -> Iterator[tuple[int, str]]:
        """Yield ``(index, piece)`` until every request has ended."""
        engine = self.engine
        pending = deque(i for i, request in enumerate(self.requests))
        running: list[_Running] = []
        clock = time.perf_counter
        try:
            while pending or running:
                if self._cancelled():
                    break
                free = [s for s in self.context.slots if all(r.slot is not s for r in running)]
                while pending and free:
                    index = pending.popleft()
                    budget = min(self.requests[index].max_tokens, engine.n_ctx - len(self.ids[index]))
                    if index in self.stopped or budget <= 0:
                        self.stats[index].stop = "stopped" if index in self.stopped else "max_tokens"
                        continue
                    run = self._admit(index, budget, free)
                    if run is None:
                        self.stats[index].stop = "cancelled"
                        break
                    running.append(run)
                    free.remove(run.slot)
                if self._cancelled():
                    break
                for run in list(running):
                    stop = yield from self._emit(run)
                    if self.generation != engine.generation:
                        return
                    if stop:
                        self._finish(run, stop)
                        running.remove(run)
                        tail = run.decoder.decode(b"", final=True)
                        if tail:
                            yield run.index, tail
                for run in [r for r in running if r.index in self.stopped]:
                    self._finish(run, "stopped")
                    running.remove(run)
                if not running or self._cancelled():
                    continue
                before = clock()
                self._step(running)
                self.figures.steps += 1
                self.figures.step_tokens += len(running)
                self.figures.step_seconds += clock() - before
        finally:
            for run in running:
                self._finish(run, "cancelled")
            for index in pending:
                if not self.stats[index].stop:
                    self.stats[index].stop = "cancelled"

    def count(self, totals: EngineTotals) -> None:
        """Add the run's figures to the engine's ``totals``.

        The prompts are evaluated one after another, the answers in shared steps: the steps'
        time is the decoding time, once for all sequences.
        """
        totals.requests += len(self.stats)
        for stats in self.stats:
            if not stats.prompt_seconds:
                continue  # never admitted: its prompt was not evaluated
            totals.prompt_tokens += max(0, stats.prompt_tokens - stats.reused_prefix_tokens)
            totals.reused_tokens += stats.reused_prefix_tokens
            totals.prompt_seconds += stats.prompt_seconds
        totals.decoded_tokens += self.figures.generated_tokens
        totals.decode_seconds += self.figures.step_seconds

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _emit(self, run: _Running) -> Generator[tuple[int, str], None, str]:
        """Hand over a sequence's sampled token; return why it ends, or "" to go on."""
        token = run.token
        if self.engine.model.is_eog(token):
            return "eos"
        stats = run.stats
        stats.generated_tokens += 1
        self.figures.generated_tokens += 1
        if stats.generated_tokens == 1:
            stats.first_token_seconds = time.perf_counter() - self.started
        text = run.decoder.decode(self.engine.model.piece(token))
        if text:
            before = time.perf_counter()
            yield run.index, text
            self.paused += time.perf_counter() - before
        if stats.generated_tokens >= run.budget:
            return "max_tokens"
        return ""

    def _finish(self, run: _Running, reason: str) -> None:
        """End a sequence: free the cells of its answer, keep its prompt up to its last batch start.

        A batch start is the stable prefix, a mark or a full batch: a later prompt that shares
        it (the next step of a test written piece by piece) goes on from there.
        """
        run.stats.stop = reason
        run.stats.generation_seconds = (time.perf_counter() - run.began
                                        - (self.paused - run.paused_at_start))
        if run.chain is not None:
            run.chain.close()
            run.chain = None
        slot = run.slot
        keep = max((s for s in slot.starts if s <= run.shared), default=0)
        if keep < len(slot.cached):
            self._truncate(slot, keep)

    def _truncate(self, slot: _Slot, keep: int) -> None:
        ctx = self.context.ctx
        if keep == 0 or not ctx.seq_rm(slot.seq, keep, -1):
            ctx.seq_rm(slot.seq, -1, -1)
            slot.cached, slot.starts = [], []
            return
        del slot.cached[keep:]
        slot.starts = [s for s in slot.starts if s < keep]

    def _step(self, running: list[_Running]) -> None:
        """Decode every running sequence's last token in one call, then sample each."""
        batch = self.context.batch
        for i, run in enumerate(running):
            batch.put(i, run.token, len(run.slot.cached), seq=run.slot.seq, logits=True)
        batch.set_size(len(running))
        self._decode()
        for i, run in enumerate(running):
            run.slot.starts.append(len(run.slot.cached))
            run.slot.cached.append(run.token)
            run.token = self._sample(run, i)

    def _sample(self, run: _Running, index: int) -> int:
        if run.chain is not None:
            return run.chain.sample(self.context.ctx, index)
        return self.context.ctx.argmax(index)

    def _decode(self) -> None:
        result = self.context.ctx.decode(self.context.batch)
        if result != 0:
            self.context.reset()
            raise ModelError(
                f"llama.cpp failed while generating a batch with {self.engine.model_name} "
                f"(llama_decode returned {result})",
                hint="lower the number of batch slots, or the checkpoint's context_size",
            )

    # -- admitting a request ---------------------------------------------------------------

    def _admit(self, index: int, budget: int, free: list[_Slot]) -> _Running | None:
        """Put a request in a free slot and evaluate its prompt; None if cancelled meanwhile."""
        engine = self.engine
        request = self.requests[index]
        ids = self.ids[index]
        began = time.perf_counter()
        stats = self.stats[index]
        stable, starts = engine.batch_bounds(request.prompt, ids, request.stable_prefix,
                                             request.marks, self.context.n_batch)
        slot, source = self._best_slot(ids, starts, free)
        reused = reuse_point(source.cached, source.starts, ids, starts)
        borrowed = self._borrow(slot, ids, starts, reused)
        if borrowed:
            reused = len(slot.cached)
        else:
            reused = reuse_point(source.cached, source.starts, ids, starts)  # the slot may be empty now
            if source is not slot:
                self._copy(source, slot)
        self._truncate(slot, reused)
        stats.prefix_source = ("main" if borrowed else "memory") if reused else "none"
        store = engine.state_store(batch=True)
        if store is not None and self._restore(store, slot, ids, starts, stable):
            stats.prefix_source = "disk"
        save = store is not None and stable >= MIN_STATE_TOKENS and not store.contains(ids[:stable])
        if save and len(slot.cached) > stable:
            self._truncate(slot, max((s for s in slot.starts if s <= stable), default=0))
        stats.reused_prefix_tokens = len(slot.cached)
        if stats.reused_prefix_tokens == 0:
            stats.prefix_source = "none"
        if save and store is not None:
            if not self._evaluate(slot, ids, starts, stable):
                return None
            self._save(store, slot, ids[:stable])
        if not self._evaluate(slot, ids, starts, len(ids)):
            return None
        stats.prompt_seconds = time.perf_counter() - began
        run = _Running(index, slot, budget, stats, engine.sampler(request.seed, request.temperature),
                       codecs.getincrementaldecoder("utf-8")(errors="replace"), shared=max([stable, *starts]),
                       began=time.perf_counter(), paused_at_start=self.paused)
        run.token = self._sample(run, -1)
        return run

    def _best_slot(self, ids: list[int], starts: list[int], free: list[_Slot]) -> tuple[_Slot, _Slot]:
        """Return the free slot to use and the slot whose cells to start from."""
        def reuse(slot: _Slot) -> int:
            return reuse_point(slot.cached, slot.starts, ids, starts)

        target = max(free, key=reuse)
        source = max(self.context.slots, key=reuse)
        if reuse(source) <= reuse(target):
            source = target
        return target, source

    def _borrow(self, slot: _Slot, ids: list[int], starts: list[int], reused: int) -> bool:
        """Load into ``slot`` the single-sequence context's prefix of ``ids``, if it beats ``reused``."""
        lent = self.engine.lend_prefix(ids, starts, self.context.slots_count, reused + MIN_STATE_TOKENS)
        if lent is None:
            return False
        tokens, lent_starts, state = lent
        ctx = self.context.ctx
        if not ctx.load_state(slot.seq, state):
            ctx.seq_rm(slot.seq, -1, -1)  # a failed load may leave some cells
            slot.cached, slot.starts = [], []
            return False
        slot.cached, slot.starts = ids[:tokens], lent_starts
        return True

    def _copy(self, source: _Slot, target: _Slot) -> None:
        # Between streams llama.cpp copies whole sequences only; the caller cuts the tail.
        ctx = self.context.ctx
        ctx.seq_rm(target.seq, -1, -1)
        ctx.seq_cp(source.seq, target.seq)
        target.cached, target.starts = list(source.cached), list(source.starts)

    def _evaluate(self, slot: _Slot, ids: list[int], starts: list[int], upto: int) -> bool:
        """Decode the batches of ``ids`` from ``starts`` below ``upto`` in ``slot``."""
        batch = self.context.batch
        ends = [*starts[1:], len(ids)]
        for start, stop in zip(starts, ends, strict=True):
            if start < len(slot.cached):
                continue
            if start >= upto:
                break
            if self._cancelled():
                return False
            for i in range(stop - start):
                batch.put(i, ids[start + i], start + i, seq=slot.seq, logits=start + i == len(ids) - 1)
            batch.set_size(stop - start)
            self._decode()
            slot.cached.extend(ids[start:stop])
            slot.starts.append(start)
        return True

    def _restore(self, store: StateStore, slot: _Slot, ids: list[int], starts: list[int],
                 stable: int) -> bool:
        entry = find_prefix(store, ids, starts, stable, len(slot.cached))
        if entry is None:
            return False
        ctx = self.context.ctx
        ctx.seq_rm(slot.seq, -1, -1)
        if not ctx.load_state(slot.seq, entry.data):
            # Not usable here (another llama.cpp build): evaluate instead, the next save replaces it.
            ctx.seq_rm(slot.seq, -1, -1)
            slot.cached, slot.starts = [], []
            return False
        slot.cached = ids[: entry.n_tokens]
        slot.starts = list(range(0, entry.n_tokens, self.context.n_batch))
        return True

    def _save(self, store: StateStore, slot: _Slot, prefix: list[int]) -> None:
        state = self.context.ctx.save_state(slot.seq)
        if state is not None:
            store.put(prefix, state)


def context_size(need: int, n_ctx: int) -> int:
    """Return the per-sequence length for a batch whose longest sequence needs ``need`` tokens."""
    return min(n_ctx, -(-need // _CTX_STEP) * _CTX_STEP)
