"""The llama.cpp engine: a lean generation loop on llama-cpp-python's low-level API.

Per generated token the loop does one ``llama_decode`` of one token, one sample, and one piece
lookup. The 262k-entry logits of a Gemma vocabulary are never copied into Python: greedy
decoding takes the argmax of llama.cpp's logits buffer in place, any other sampling runs a
llama.cpp sampler chain on the context. The KV cache keeps the tokens of
the last call, so a prompt that shares a prefix with the previous one evaluates only its new
tokens; with a ``state_dir`` the KV state of the stable prefix is also kept on disk for the
next process. Optional prompt lookup decoding (``engine.lookup``) drafts tokens from earlier
text and verifies them in one batch (see ``docs/benchmarks.md`` for when it pays).

The native objects (model, context, batch, sampler chain, adapter) are ``engine.native``'s,
each freeing its own handle; the bookkeeping of the KV cache is ``engine.decoding``'s, and
``generate_many`` runs in ``engine.batch``.

Special tokens are parsed only in a chat template's own text (``ChatPrompt``): a source file or
a note that contains ``<end_of_turn>`` is tokenized as the text it is. Whether llama.cpp may
use its extra buffer types is this machine's decision (``engine.extra_buffers``) unless the
caller passes ``extra_buffers`` explicitly (a measurement).

``llama_cpp`` is imported when the first engine is created, never when this module is
imported, so commands that need no model stay fast.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from symergion.config.sampling import Sampling
from symergion.engine.base import (
    EngineTotals,
    GenerationRequest,
    GenerationStats,
    prompt_segments,
)
from symergion.engine.batch import (
    BatchContext,
    BatchFigures,
    BatchRun,
    context_size,
)
from symergion.engine.chat import chat_prompt
from symergion.engine.decoding import KvCache, PromptHeads, TextOutput, sample_decode
from symergion.engine.lookup import lookup_decode
from symergion.engine.native import (
    LoraAdapter,
    NativeContext,
    NativeModel,
    SamplerChain,
    TokenBatch,
    check_gguf_file,
    load_llama_cpp,
    sampler_for,
)
from symergion.engine.state import StateStore, model_fingerprint
from symergion.errors import ModelError

DEFAULT_MAX_CONTEXT = 8192
# How many sequences ``generate_many`` decodes together by default: 4 gains the most per
# sequence added on a 2-core CPU (see docs/benchmarks.md).
DEFAULT_SLOTS = 4


class LlamaEngine:
    """A GGUF model loaded with llama.cpp, generating on the CPU.

    Not thread-safe: one generation at a time. Starting a new ``generate`` or
    ``generate_many`` ends the previous one, even if its iterator was not closed.
    ``generate_many`` runs up to ``slots`` sequences at once in a second context (see
    ``engine.batch``).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        model_name: str,
        n_ctx: int | None = None,
        n_threads: int,
        sampling: Sampling,
        state_dir: Path | None = None,
        state_max_bytes: int = 2 * 1024**3,
        prompt_lookup: bool = False,
        extra_buffers: bool | None = None,
        lora: Path | None = None,
        lora_scale: float = 1.0,
        slots: int = DEFAULT_SLOTS,
    ) -> None:
        self.model_name = model_name
        self.n_threads = n_threads
        self.slots = max(1, slots)
        self._batch_context: BatchContext | None = None
        # Freed before the model, whatever frees the engine.
        self._contexts: list[BatchContext] = []
        self._batch_stats: list[GenerationStats] = []
        self.batch_figures = BatchFigures()
        self.model_path = Path(model_path)
        self.sampling = sampling
        self._stats = GenerationStats()
        self._totals = EngineTotals()
        self._generation = 0
        self._heads = PromptHeads(self.tokenize)
        self._state_dir = state_dir
        self._state_max_bytes = state_max_bytes
        self.prompt_lookup = prompt_lookup
        self._store: StateStore | None = None
        self._batch_store: StateStore | None = None
        self._closed = False
        self.lora = Path(lora) if lora is not None else None
        self.lora_scale = lora_scale

        check_gguf_file(self.model_path)
        llama = load_llama_cpp()
        if extra_buffers is None:
            # The machine's decision, as the CLI makes it: on the Intel machines where
            # llama.cpp's AMX kernel faults, extra buffer types would kill this process.
            from symergion.engine.extra_buffers import machine_decision

            extra_buffers = machine_decision(self.model_path, llama=llama).use_extra_buffers
        self.extra_buffers = extra_buffers
        with contextlib.ExitStack() as undo:
            self._model = model = NativeModel(llama, self.model_path, extra_buffers)
            undo.callback(model.close)
            wanted = n_ctx if n_ctx is not None else min(model.n_ctx_train, DEFAULT_MAX_CONTEXT)
            context = NativeContext(model, wanted, n_threads)
            undo.callback(context.close)
            self._adapter: LoraAdapter | None = None
            if self.lora is not None:
                self._adapter = LoraAdapter(model, self.lora)
                undo.callback(self._adapter.close)
                context.apply_lora(self._adapter, lora_scale)
            batch = TokenBatch(llama, context.n_batch)
            undo.pop_all()
        # What llama.cpp reported while loading: shows whether extra buffer types are in use.
        self.buffer_types = model.buffer_types
        self._cache = KvCache(context, batch, model_name)
        # Free the native objects in order even if the caller forgets close().
        self._finalizer = weakref.finalize(self, _close_native, self._contexts, batch, context,
                                           self._adapter, model)

    # -- Engine protocol -------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """Return the context length the model was loaded with."""
        return self._cache.context.n_ctx

    @property
    def model(self) -> NativeModel:
        """Return the loaded model: its vocabulary, for the batch runs."""
        return self._model

    @property
    def generation(self) -> int:
        """Return the number of the current call; an older call's iterator stops when it changes."""
        return self._generation

    @property
    def stats(self) -> GenerationStats:
        """Return the figures of the last ``generate`` call."""
        return self._stats

    @property
    def batch_stats(self) -> list[GenerationStats]:
        """Return the figures of each request of the last ``generate_many`` call."""
        return self._batch_stats

    @property
    def batch_context(self) -> BatchContext | None:
        """Return the context ``generate_many`` decodes in, None before its first batch."""
        return self._batch_context

    @property
    def totals(self) -> EngineTotals:
        """Return the running figures of every call since the engine was loaded."""
        return self._totals

    def count_tokens(self, text: str) -> int:
        """Return how many tokens ``text`` encodes to (with BOS; see ``tokenize``)."""
        return len(self.tokenize(text))

    def token_text(self, token_ids: list[int]) -> str:
        """Return the text of token ids, special tokens rendered."""
        return b"".join(self._model.piece(t) for t in token_ids).decode("utf-8", errors="replace")

    def chat_prompt(self, user_message: str) -> str:
        """Render one user turn with the model's chat template, thinking enabled."""
        self._check_open()
        template = self._model.chat_template()
        if template is None:
            raise ModelError(
                f"{self.model_path.name} has no chat template (tokenizer.chat_template)",
                hint='use it as a "coding" model, or use a chat GGUF for the "reasoning" trait',
            )
        return chat_prompt(
            template,
            user_message,
            bos_token=self._special_text(self._model.bos),
            eos_token=self._special_text(self._model.eos),
        )

    def tokenize(self, text: str) -> list[int]:
        """Return the token ids of ``text``, BOS added.

        Special tokens are parsed in a ``ChatPrompt``'s template text only; everything else
        (a coder's prompt, the user's message) is tokenized as plain text.
        """
        self._check_open()
        ids: list[int] = []
        for part, special in prompt_segments(text):
            ids += self._tokenize_part(part, add_bos=not ids, special=special)
        if not ids and self._model.add_bos:
            ids = [self._model.bos]
        return ids

    def _tokenize_part(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        model = self._model
        ids = model.tokenize(text, add_bos=add_bos, special=special)
        # A chat template already starts with the BOS text; parsing it adds a second BOS.
        if add_bos and model.add_bos and len(ids) >= 2 and ids[0] == ids[1] == model.bos:
            del ids[0]
        return ids

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

        Args:
            prompt: the full prompt text.
            max_tokens: the most tokens to generate (cut to what the context has left).
            cancel: when set, generation stops before the next llama.cpp call.
            stable_prefix: how many leading characters of ``prompt`` later prompts will
                share; their KV state is saved in the state store for other processes.
            marks: more prefix lengths (characters) the next prompts share; batches start
                there too, so their KV is reused by a prompt with the same marks.

        Raises:
            ModelError: the prompt does not fit the context, or llama.cpp failed.
        """
        self._check_open()
        self._generation += 1
        return self._generate(self._generation, prompt, max_tokens, cancel, stable_prefix,
                              marks=marks)

    def generate_many(
        self,
        requests: Sequence[GenerationRequest],
        *,
        cancel: threading.Event | None = None,
        stopped: Collection[int] | None = None,
    ) -> Iterator[tuple[int, str]]:
        """Generate for several prompts together; yield ``(request index, piece)``.

        Up to ``slots`` sequences decode in one ``llama_decode`` per step; the others wait for
        a slot. One request runs as ``generate`` does (prompt lookup included). Greedy texts
        are those of ``generate``, see ``engine.batch``.

        Args:
            requests: the prompts, each with its ``max_tokens`` and ``stable_prefix``.
            cancel: when set, every sequence stops before the next llama.cpp call.
            stopped: indices the caller is done with, read after each piece: that sequence
                ends and frees its slot.

        Raises:
            ModelError: a prompt does not fit the context, or llama.cpp failed.
        """
        self._check_open()
        self._generation += 1
        ids = [self.tokenize(request.prompt) for request in requests]
        for tokens in ids:
            self._check_fits(tokens)
        self._batch_stats = [GenerationStats(prompt_tokens=len(tokens)) for tokens in ids]
        self.batch_figures = BatchFigures()
        if len(requests) == 1:
            return self._generate_one(self._generation, requests[0], cancel, stopped)
        return self._generate_many(self._generation, requests, ids, cancel, stopped)

    def close(self) -> None:
        """Free the model and its context."""
        if not self._closed:
            self._closed = True
            self._generation += 1
            self._cache.cached = []
            self._cache.starts = []
            self._batch_context = None
            self._finalizer()

    # -- internals -------------------------------------------------------------------------

    def _check_fits(self, ids: list[int]) -> None:
        if len(ids) >= self.n_ctx:
            raise ModelError(
                f"the prompt has {len(ids)} tokens but {self.model_name} is loaded with a "
                f"context of {self.n_ctx}",
                hint="raise the checkpoint's context_size, or shorten the source file",
            )

    def _generate_one(
        self,
        generation: int,
        request: GenerationRequest,
        cancel: threading.Event | None,
        stopped: Collection[int] | None,
    ) -> Iterator[tuple[int, str]]:
        """Play one request of ``generate_many`` on the single-sequence path."""
        pieces = self._generate(generation, request.prompt, request.max_tokens, cancel,
                                request.stable_prefix, request.seed, request.temperature,
                                request.marks)
        stop = "cancelled"
        try:
            for piece in pieces:
                yield 0, piece
                if stopped is not None and 0 in stopped:
                    stop = "stopped"
                    break
            else:
                stats = self._stats
                stop = ("cancelled" if cancel is not None and cancel.is_set() else
                        "max_tokens" if stats.generated_tokens >= request.max_tokens else "eos")
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
            self._stats.stop = stop
            self._batch_stats = [self._stats]
            self.batch_figures.generated_tokens = self._stats.generated_tokens

    def _generate_many(
        self,
        generation: int,
        requests: Sequence[GenerationRequest],
        ids: list[list[int]],
        cancel: threading.Event | None,
        stopped: Collection[int] | None,
    ) -> Iterator[tuple[int, str]]:
        if not requests:
            return
        slots = min(self.slots, len(requests))
        need = max(min(len(t) + r.max_tokens, self.n_ctx) for t, r in zip(ids, requests, strict=True))
        context = self._batch_context
        if context is None or context.slots_count < slots or context.per_seq < need:
            self._drop_batch_context()
            per_seq = context_size(need, self.n_ctx)
            context = self._new_batch_context(slots, per_seq)
            self._batch_context = context
            self._contexts.append(context)
        run = BatchRun(self, context, requests, ids, cancel, stopped, generation)
        self._batch_stats = run.stats
        self.batch_figures = run.figures
        try:
            yield from run.pieces()
        finally:
            run.count(self._totals)

    def _drop_batch_context(self) -> None:
        if self._batch_context is not None:
            self._contexts.remove(self._batch_context)
            self._batch_context.free()
            self._batch_context = None

    def _check_open(self) -> None:
        if self._closed:
            raise ModelError(f"the engine of {self.model_name} is closed")

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._model.piece(token).decode("utf-8", errors="replace")

    def _new_batch_context(self, slots: int, per_seq: int) -> BatchContext:
        """Return a context of ``slots`` sequences of ``per_seq`` tokens, with the LoRA if any."""
        context = NativeContext(self._model, per_seq * slots, self.n_threads, n_seq_max=slots)
        if self._adapter is not None:
            try:
                context.apply_lora(self._adapter, self.lora_scale)
            except BaseException:
                context.close()
                raise
        return BatchContext(context, slots, per_seq)

    def state_store(self, batch: bool = False) -> StateStore | None:
        """Return the prefix-state store of the single-sequence context, or of the batch one.

        Their states do not load into each other's context (the batch context has a stream per
        sequence), so each has its own namespace: neither discards the other's entries.
        """
        if self._state_dir is None:
            return None
        store = self._batch_store if batch else self._store
        if store is None:
            # Repacked weights round differently: a state saved with extra buffers differs.
            context = (f"llama_cpp={self._model.llama.__version__};n_ctx={self.n_ctx};swa_full=1;"
                       f"extra_bufts={int(self.extra_buffers)}" + (";streams=batch" if batch else ""))
            if self.lora is not None:
                context += f";lora_scale={self.lora_scale!r}"
            try:
                namespace = model_fingerprint(self.model_path, context, adapter=self.lora)
            except OSError:
                return None
            store = StateStore(self._state_dir, namespace, max_bytes=self._state_max_bytes)
            if batch:
                self._batch_store = store
            else:
                self._store = store
        return store

    def batch_bounds(self, prompt: str, ids: list[int], stable_prefix: int,
                     marks: Sequence[int], n_batch: int | None = None) -> tuple[int, list[int]]:
        """Return the stable prefix in tokens and the starts of the prompt's batches."""
        return self._heads.bounds(prompt, ids, stable_prefix, marks, n_batch or self._cache.context.n_batch)

    def lend_prefix(self, ids: list[int], starts: list[int], streams: int, more_than: int
                    ) -> tuple[int, list[int], bytearray] | None:
        """Return the single-sequence context's KV of a prefix of ``ids`` (``KvCache.lend``)."""
        return self._cache.lend(ids, starts, streams, more_than)

    def sampler(self, seed: int | None = None, temperature: float | None = None) -> SamplerChain | None:
        """Return a sampler chain for the engine's sampling, or None for plain greedy decoding.

        ``seed`` and ``temperature``, when given, replace the engine's for this one request.
        """
        s = self.sampling if seed is None else replace(self.sampling, seed=seed)
        if temperature is not None:
            s = replace(s, temperature=temperature)
        return sampler_for(self._model.llama, s, self._model.n_vocab)

    def _generate(
        self,
        generation: int,
        prompt: str,
        max_tokens: int,
        cancel: threading.Event | None,
        stable_prefix: int,
        seed: int | None = None,
        temperature: float | None = None,
        marks: Sequence[int] = (),
    ) -> Iterator[str]:
        started = time.perf_counter()
        stats = GenerationStats()
        self._stats = stats
        ids = self.tokenize(prompt)
        stats.prompt_tokens = len(ids)
        self._check_fits(ids)
        max_tokens = min(max_tokens, self.n_ctx - len(ids))
        if max_tokens <= 0 or (cancel is not None and cancel.is_set()):
            return

        chain = self.sampler(seed, temperature)
        try:
            # Batches start at multiples of n_batch, and again at the end of the stable prefix
            # and at each mark, so that every prompt sharing that prefix evaluates it, and what
            # follows, alike.
            stable, starts = self.batch_bounds(prompt, ids, stable_prefix, marks)
            if not self._cache.load_prompt(ids, starts, stable, self.state_store(), stats, cancel):
                return
            stats.prompt_seconds = time.perf_counter() - started
            out = TextOutput(self._model.piece, stats, started, lambda: generation == self._generation)
            if chain is None and self.prompt_lookup:
                yield from lookup_decode(self._cache, self._model, out, max_tokens, cancel)
            else:
                yield from sample_decode(self._cache, self._model, out, chain, max_tokens, cancel)
        finally:
            self._totals.count(stats)
            if chain is not None:
                chain.close()

def _close_native(contexts: list[BatchContext], *natives: TokenBatch | NativeContext | LoraAdapter
                  | NativeModel | None) -> None:
    """Free an engine's native objects in order: the batch contexts use the model, so go first.

    The adapter goes after the context that uses it, before the model that lists it.
    """
    for context in contexts:
        context.free()
    contexts.clear()
    for native in natives:
        if native is not None:
            native.close()
