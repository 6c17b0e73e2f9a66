"""The llama.cpp engine: a lean generation loop on llama-cpp-python's low-level API.

Per generated token the loop does one ``llama_decode`` of one token, one sample, and one piece
lookup. The 262k-entry logits of a Gemma vocabulary are never copied into Python: greedy
decoding takes the argmax of llama.cpp's logits buffer in place, any other sampling runs a
llama.cpp sampler chain on the context. The KV cache keeps the tokens of
the last call, so a prompt that shares a prefix with the previous one evaluates only its new
tokens; with a ``state_dir`` the KV state of the stable prefix is also kept on disk for the
next process. Optional prompt lookup decoding drafts tokens from earlier text and verifies
them in one batch (see ``docs/benchmarks.md`` for when it pays).

Special tokens are parsed only in a chat template's own text (``ChatPrompt``): a source file or
a note that contains ``<end_of_turn>`` is tokenized as the text it is. Whether llama.cpp may
use its extra buffer types is this machine's decision (``engine.extra_buffers``) unless the
caller passes ``extra_buffers`` explicitly (a measurement).

``llama_cpp`` is imported when the first engine is created, never when this module is
imported, so commands that need no model stay fast.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import importlib
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from symergion.config.sampling import Sampling
from symergion.engine.base import (
    ChatPrompt,
    EngineTotals,
    GenerationRequest,
    GenerationStats,
    batch_starts,
    prompt_segments,
)
from symergion.engine.batch import (
    BatchContext,
    BatchFigures,
    BatchRun,
    _common_prefix,
    context_size,
)
from symergion.engine.state import MIN_STATE_TOKENS, StateStore, model_fingerprint
from symergion.errors import ModelError

DEFAULT_MAX_CONTEXT = 8192
# How many sequences ``generate_many`` decodes together by default: 4 gains the most per
# sequence added on a 2-core CPU (see docs/benchmarks.md).
DEFAULT_SLOTS = 4
# llama.cpp's default batch: big enough for full prompt speed, small enough that a cancel
# request between two chunks is honoured within about a second on a 2-core CPU.
BATCH_TOKENS = 512
# Repetition penalty window, as in llama.cpp's defaults.
PENALTY_LAST_N = 64
# Tokenized prompt heads kept: a guided file's marks, one per test, and some to spare.
_HEADS_KEPT = 64
# Prompt lookup decoding: the n-gram that must recur, and the bounds of a draft. A draft of k
# tokens costs about as much as k/4 to k/3 single-token decodes here (the 262k-row output matrix is
# multiplied once per drafted position), so drafts stay short until they keep being accepted.
LOOKUP_NGRAM = 3
LOOKUP_MIN_DRAFT = 2
LOOKUP_MAX_DRAFT = 16
# After a draft is rejected outright, decode this many tokens plainly before drafting again.
LOOKUP_COOLDOWN = 8
_SEQ = 0
_GGML_LOG_LEVEL_ERROR = 4  # ggml_log_level: 3 is WARN, 4 is ERROR
_GGML_LOG_LEVEL_CONT = 5

_llama_cpp: Any = None
_log_tail: deque[str] = deque(maxlen=4)
# The buffer types llama.cpp put the weights of the last loaded model in ("CPU_REPACK", ...).
_model_buffers: list[str] = []
_MODEL_BUFFER = re.compile(r"(\S+) model buffer size")
# Stands for the user's message while the chat template is rendered, to find where it goes.
_MESSAGE_MARK = "\x00symergion-user-message\x00"
_log_callback: Any = None
_last_log_level = 0


def _load_llama_cpp() -> Any:
    """Import llama_cpp once and route its logging into a buffer instead of stderr.

    Typed as ``Any``: llama_cpp's ctypes bindings are only partly annotated.
    """
    global _llama_cpp, _log_callback
    if _llama_cpp is None:
        module = importlib.import_module("llama_cpp")

        def on_log(level: int, text: bytes | None, _user_data: int | None) -> None:
            # llama.cpp logs load progress and warnings to stderr, which would garble the
            # caller's progress output; keep only the last errors, to explain a failed load.
            global _last_log_level
            if level != _GGML_LOG_LEVEL_CONT:
                _last_log_level = level
            if text and b"model buffer size" in text:
                found = _MODEL_BUFFER.search(text.decode("utf-8", errors="replace"))
                if found:
                    _model_buffers.append(found.group(1))
            if _last_log_level == _GGML_LOG_LEVEL_ERROR and text:
                line = text.decode("utf-8", errors="replace").strip()
                if line:
                    _log_tail.append(line)

        # The ctypes callback must outlive every llama.cpp call, so it lives in the module.
        _log_callback = module.llama_log_callback(on_log)
        module.llama_log_set(_log_callback, ctypes.c_void_p(0))
        module.llama_backend_init()
        _llama_cpp = module
    return _llama_cpp


def render_chat_template(template: str, user_message: str, *, bos_token: str, eos_token: str) -> str:
    """Render one user turn with a Hugging Face chat template, generation prompt and thinking on.

    A leading BOS is dropped from the result because ``generate`` adds BOS when it tokenizes.
    """
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ModelError(
            f"the model's chat template refused the prompt: {message}",
            hint='use this model with the "coding" trait, or pick a model whose chat '
            "template accepts a single user message",
        )

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    rendered = environment.from_string(template).render(
        messages=[{"role": "user", "content": user_message}],
        add_generation_prompt=True,
        enable_thinking=True,
        bos_token=bos_token,
        eos_token=eos_token,
        raise_exception=raise_exception,
        strftime_now=lambda fmt: time.strftime(fmt),
    )
    if bos_token and rendered.startswith(bos_token):
        rendered = rendered[len(bos_token) :]
    return rendered


def chat_prompt(template: str, user_message: str, *, bos_token: str, eos_token: str) -> str:
    """Render one user turn as a ``ChatPrompt`` that knows where the message sits.

    Falls back to a plain string (no special tokens parsed at all) for a template that repeats
    or drops the message, where no single span is the message.
    """
    text = render_chat_template(template, user_message, bos_token=bos_token, eos_token=eos_token)
    # The template may trim or wrap the message: what lies between its text before and after
    # the message is the message, whatever the template did to it.
    parts = render_chat_template(
        template, _MESSAGE_MARK, bos_token=bos_token, eos_token=eos_token
    ).split(_MESSAGE_MARK)
    if len(parts) == 2 and text.startswith(parts[0]) and text.endswith(parts[1]) and (
        len(parts[0]) + len(parts[1]) <= len(text)
    ):
        return ChatPrompt(text, (len(parts[0]), len(text) - len(parts[1])))
    return text


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
        # Freed with the model, before it, whatever frees the engine.
        self._contexts: list[BatchContext] = []
        self._batch_stats: list[GenerationStats] = []
        self.batch_figures = BatchFigures()
        self.model_path = Path(model_path)
        self.sampling = sampling
        self._stats = GenerationStats()
        self._totals = EngineTotals()
        # The tokens in the KV cache, and the positions where each of their batches began.
        self._cached: list[int] = []
        self._starts: list[int] = []
        self._generation = 0
        self._pieces: dict[int, bytes] = {}
        self._heads: dict[str, list[int]] = {}  # prompt heads (stable prefix, marks) tokenized
        self._state_dir = state_dir
        self._state_max_bytes = state_max_bytes
        self.prompt_lookup = prompt_lookup
        self._store: StateStore | None = None
        self._batch_store: StateStore | None = None
        self._closed = False
        self.lora = Path(lora) if lora is not None else None
        self.lora_scale = lora_scale

        _check_gguf_file(self.model_path)
        llama = _load_llama_cpp()
        self._llama = llama
        # numpy comes with llama-cpp-python; imported here to keep module import cheap.
        self._numpy: Any = importlib.import_module("numpy")
        if extra_buffers is None:
            # The machine's decision, as the CLI makes it: on the Intel machines where
            # llama.cpp's AMX kernel faults, extra buffer types would kill this process.
            from symergion.engine.extra_buffers import machine_decision

            extra_buffers = machine_decision(self.model_path, llama=llama).use_extra_buffers
        self.extra_buffers = extra_buffers
        self._model = _load_model(llama, self.model_path, extra_buffers)
        # What llama.cpp reported while loading: shows whether extra buffer types are in use.
        self.buffer_types = tuple(_model_buffers)
        try:
            trained = int(llama.llama_model_n_ctx_train(self._model))
            wanted = n_ctx if n_ctx is not None else min(trained, DEFAULT_MAX_CONTEXT)
            self._ctx = _new_context(llama, self._model, wanted, n_threads, self.model_path)
        except BaseException:
            llama.llama_model_free(self._model)
            raise
        self._adapter: Any = None
        if self.lora is not None:
            try:
                self._adapter = _apply_lora(llama, self._model, self._ctx, self.lora, lora_scale)
            except BaseException:
                llama.llama_free(self._ctx)
                llama.llama_model_free(self._model)
                raise
        self._n_ctx = int(llama.llama_n_ctx(self._ctx))
        self._vocab = llama.llama_model_get_vocab(self._model)
        self._memory = llama.llama_get_memory(self._ctx)
        self._n_vocab = int(llama.llama_vocab_n_tokens(self._vocab))
        self._bos = int(llama.llama_vocab_bos(self._vocab))
        self._add_bos = bool(llama.llama_vocab_get_add_bos(self._vocab))
        self._n_batch = int(llama.llama_n_batch(self._ctx))
        self._batch = llama.llama_batch_init(self._n_batch, 0, 1)
        for i in range(self._n_batch):
            self._batch.n_seq_id[i] = 1
            self._batch.seq_id[i][0] = _SEQ
        self._piece_buffer = ctypes.create_string_buffer(256)
        # Free the native objects even if the caller forgets close().
        self._finalizer = weakref.finalize(
            self, _free_native, llama, self._model, self._ctx, self._batch, self._contexts,
            self._adapter,
        )

    # -- Engine protocol -------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """Return the context length the model was loaded with."""
        return self._n_ctx

    @property
    def stats(self) -> GenerationStats:
        """Return the figures of the last ``generate`` call."""
        return self._stats

    @property
    def batch_stats(self) -> list[GenerationStats]:
        """Return the figures of each request of the last ``generate_many`` call."""
        return self._batch_stats

    @property
    def totals(self) -> EngineTotals:
        """Return the running figures of every call since the engine was loaded."""
        return self._totals

    def count_tokens(self, text: str) -> int:
        """Return how many tokens ``text`` encodes to (with BOS; see ``tokenize``)."""
        return len(self.tokenize(text))

    def token_text(self, token_ids: list[int]) -> str:
        """Return the text of token ids, special tokens rendered."""
        return b"".join(self._piece(t) for t in token_ids).decode("utf-8", errors="replace")

    def chat_prompt(self, user_message: str) -> str:
        """Render one user turn with the model's chat template, thinking enabled."""
        self._check_open()
        raw = self._llama.llama_model_chat_template(self._model, None)
        if not raw:
            raise ModelError(
                f"{self.model_path.name} has no chat template (tokenizer.chat_template)",
                hint='use it as a "coding" model, or use a chat GGUF for the "reasoning" trait',
            )
        eos = int(self._llama.llama_vocab_eos(self._vocab))
        return chat_prompt(
            raw.decode("utf-8"),
            user_message,
            bos_token=self._special_text(self._bos),
            eos_token=self._special_text(eos),
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
        if not ids and self._add_bos:
            ids = [self._bos]
        return ids

    def _tokenize_part(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buffer = (ctypes.c_int32 * capacity)()
            n = int(self._llama.llama_tokenize(self._vocab, data, len(data), buffer, capacity, add_bos,
                                               special))
            if n >= 0:
                break
            capacity = -n
        ids = buffer[:n]
        # A chat template already starts with the BOS text; parsing it adds a second BOS.
        if add_bos and self._add_bos and len(ids) >= 2 and ids[0] == ids[1] == self._bos:
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
            self._cached = []
            self._starts = []
            self._batch_context = None
            self._finalizer()

    # -- internals -------------------------------------------------------------------------

    def _check_fits(self, ids: list[int]) -> None:
        if len(ids) >= self._n_ctx:
            raise ModelError(
                f"the prompt has {len(ids)} tokens but {self.model_name} is loaded with a "
                f"context of {self._n_ctx}",
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
        need = max(min(len(t) + r.max_tokens, self._n_ctx) for t, r in zip(ids, requests, strict=True))
        context = self._batch_context
        if context is None or context.slots_count < slots or context.per_seq < need:
            self._drop_batch_context()
            per_seq = context_size(need, self._n_ctx)
            context = self._new_batch_context(slots, per_seq)
            self._batch_context = context
            self._contexts.append(context)
        run = BatchRun(self, context, requests, ids, cancel, stopped, generation)
        self._batch_stats = run.stats
        self.batch_figures = run.figures
        try:
            yield from run.pieces()
        finally:
            # The prompts are evaluated one after another, the answers in shared steps: the
            # steps' time is the decoding time, once for all sequences.
            totals = self._totals
            totals.requests += len(run.stats)
            for stats in run.stats:
                if not stats.prompt_seconds:
                    continue  # never admitted: its prompt was not evaluated
                totals.prompt_tokens += max(0, stats.prompt_tokens - stats.reused_prefix_tokens)
                totals.reused_tokens += stats.reused_prefix_tokens
                totals.prompt_seconds += stats.prompt_seconds
            totals.decoded_tokens += run.figures.generated_tokens
            totals.decode_seconds += run.figures.step_seconds

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
        return self._piece(token).decode("utf-8", errors="replace")

    def _new_batch_context(self, slots: int, per_seq: int) -> BatchContext:
        """Return a context of ``slots`` sequences of ``per_seq`` tokens, with the LoRA if any."""
        llama = self._llama
        ctx = _new_context(llama, self._model, per_seq * slots, self.n_threads, self.model_path,
                           n_seq_max=slots)
        if self._adapter is not None and self.lora is not None:
            try:
                set_lora(llama, ctx, self._adapter, self.lora_scale, self.lora)
            except BaseException:
                llama.llama_free(ctx)
                raise
        return BatchContext(llama, ctx, slots, per_seq)

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            llama = self._llama
            buffer = self._piece_buffer
            n = int(llama.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, True))
            if n < 0:
                buffer = ctypes.create_string_buffer(-n)
                n = int(llama.llama_token_to_piece(self._vocab, token, buffer, -n, 0, True))
            piece = ctypes.string_at(buffer, n)
            self._pieces[token] = piece
        return piece

    def _state_store(self, batch: bool = False) -> StateStore | None:
        """Return the prefix-state store of the single-sequence context, or of the batch one.

        Their states do not load into each other's context (the batch context has a stream per
        sequence), so each has its own namespace: neither discards the other's entries.
        """
        if self._state_dir is None:
            return None
        store = self._batch_store if batch else self._store
        if store is None:
            # Repacked weights round differently: a state saved with extra buffers differs.
            context = (f"llama_cpp={self._llama.__version__};n_ctx={self._n_ctx};swa_full=1;"
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

    def _reset_memory(self) -> None:
        self._llama.llama_memory_clear(self._memory, True)
        self._cached = []
        self._starts = []

    def _truncate(self, keep: int) -> int:
        """Drop KV cells from position ``keep`` on; return how many tokens stay cached."""
        if keep < len(self._cached):
            if keep == 0 or not self._llama.llama_memory_seq_rm(self._memory, _SEQ, keep, -1):
                self._reset_memory()
                return 0
            del self._cached[keep:]
            self._starts = [s for s in self._starts if s < keep]
        return keep

    def _reuse_point(self, ids: list[int], starts: list[int]) -> int:
        """Return the longest cached prefix whose KV equals that of a cold evaluation.

        llama.cpp's results depend, in the last bits, on how tokens were split into batches,
        and a tiny model's greedy output can flip on such a difference. So a prefix is reused
        only up to a batch start of ``starts`` where the cache was computed with the very same
        batches: then a feedback round gives the same text as a cold run.
        """
        common = min(_common_prefix(self._cached, ids), len(ids) - 1)
        old = self._starts
        point = 0
        for i, start in enumerate(starts):
            if start > common or i > len(old) or (i > 0 and old[i - 1] != starts[i - 1]):
                break
            if (i < len(old) and old[i] == start) or (i == len(old) and start == len(self._cached)):
                point = start
        return point

    def _restore(self, store: StateStore, ids: list[int], starts: list[int], stable: int) -> bool:
        """Load the longest stored state at a batch start within the stable prefix."""
        usable = {s for s in starts if MIN_STATE_TOKENS <= s <= stable and s > len(self._cached)}
        if not usable:
            return False
        entry = store.find(ids[: max(usable)], min_tokens=min(usable), lengths=usable)
        if entry is None:
            return False
        self._reset_memory()
        buffer = (ctypes.c_uint8 * len(entry.data)).from_buffer(entry.data)
        loaded = int(self._llama.llama_state_seq_set_data(self._ctx, buffer, len(entry.data), _SEQ))
        del buffer
        if loaded == 0:
            # llama.cpp rejected it (other build or context layout): drop it, evaluate cold.
            store.discard(entry.path)
            self._reset_memory()
            return False
        self._cached = ids[: entry.n_tokens]
        # A saved prefix was evaluated cold, in batches from position 0.
        self._starts = list(range(0, entry.n_tokens, self._n_batch))
        return True

    def _save(self, store: StateStore, prefix: list[int]) -> None:
        llama = self._llama
        size = int(llama.llama_state_seq_get_size(self._ctx, _SEQ))
        if size <= 0:
            return
        buffer = (ctypes.c_uint8 * size)()
        written = int(llama.llama_state_seq_get_data(self._ctx, buffer, size, _SEQ))
        if written > 0:
            store.put(prefix, memoryview(buffer).cast("B")[:written])

    def _evaluate(self, ids: list[int], starts: list[int], upto: int, cancel: threading.Event | None) -> bool:
        """Decode the batches of ``ids`` that begin at ``starts`` below ``upto``.

        Only the prompt's last token asks for logits. Return False if cancelled.
        """
        batch = self._batch
        ends = [*starts[1:], len(ids)]
        for start, stop in zip(starts, ends, strict=True):
            if start < len(self._cached):
                continue
            if start >= upto:
                break
            if cancel is not None and cancel.is_set():
                return False
            count = stop - start
            for i in range(count):
                batch.token[i] = ids[start + i]
                batch.pos[i] = start + i
                batch.logits[i] = 0
            batch.n_tokens = count
            if stop == len(ids):
                batch.logits[count - 1] = 1
            self._decode(batch)
            self._cached.extend(ids[start:stop])
            self._starts.append(start)
        return True

    def _decode(self, batch: Any) -> None:
        result = int(self._llama.llama_decode(self._ctx, batch))
        if result != 0:
            # Part of the batch may have landed in the cache: forget it all.
            self._reset_memory()
            raise ModelError(
                f"llama.cpp could not evaluate the prompt of {self.model_name} "
                f"(llama_decode returned {result})",
                hint="raise the checkpoint's context_size, or shorten the prompt",
            )

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
            tokens = self._heads[head] = self.tokenize(head)
            while len(self._heads) > _HEADS_KEPT:
                del self._heads[next(iter(self._heads))]
        return _common_prefix(tokens, ids)

    def batch_bounds(self, prompt: str, ids: list[int], stable_prefix: int,
                     marks: Sequence[int], n_batch: int | None = None) -> tuple[int, list[int]]:
        """Return the stable prefix in tokens and the starts of the prompt's batches."""
        stable = min(self._stable_tokens(prompt, ids, stable_prefix), len(ids))
        bounds = [stable, *(self._stable_tokens(prompt, ids, m) for m in marks if 0 < m < len(prompt))]
        return stable, batch_starts(len(ids), bounds, n_batch or self._n_batch)

    def _sampler(self, seed: int | None = None, temperature: float | None = None) -> Any:
        """Return a llama.cpp sampler chain, or None for plain greedy decoding."""
        s = self.sampling if seed is None else replace(self.sampling, seed=seed)
        if temperature is not None:
            s = replace(s, temperature=temperature)
        if s.temperature <= 0.0 and s.repeat_penalty == 1.0:
            return None
        llama = self._llama
        params = llama.llama_sampler_chain_default_params()
        params.no_perf = True
        chain = llama.llama_sampler_chain_init(params)

        def add(sampler: Any) -> None:
            llama.llama_sampler_chain_add(chain, sampler)

        if s.repeat_penalty != 1.0:
            add(llama.llama_sampler_init_penalties(self._n_vocab, PENALTY_LAST_N, s.repeat_penalty, 0.0, 0.0))
        if s.temperature <= 0.0:
            add(llama.llama_sampler_init_greedy())
        else:
            add(llama.llama_sampler_init_top_k(s.top_k))
            add(llama.llama_sampler_init_top_p(s.top_p, 1))
            add(llama.llama_sampler_init_min_p(s.min_p, 1))
            add(llama.llama_sampler_init_temp(s.temperature))
            add(llama.llama_sampler_init_dist(s.seed & 0xFFFFFFFF))
        return chain

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
        max_tokens = min(max_tokens, self._n_ctx - len(ids))
        if max_tokens <= 0 or (cancel is not None and cancel.is_set()):
            return

        chain = self._sampler(seed, temperature)
        try:
            if self._evaluate_prompt(prompt, ids, stable_prefix, stats, started, cancel, marks):
                if chain is None and self.prompt_lookup:
                    loop = self._lookup_loop(generation, stats, started, max_tokens, cancel)
                else:
                    loop = self._sample_loop(generation, chain, stats, started, max_tokens, cancel)
                yield from loop
        finally:
            self._totals.count(stats)
            if chain is not None:
                self._llama.llama_sampler_free(chain)

    def _evaluate_prompt(
        self,
        prompt: str,
        ids: list[int],
        stable_prefix: int,
        stats: GenerationStats,
        started: float,
        cancel: threading.Event | None,
        marks: Sequence[int] = (),
    ) -> bool:
        """Bring the KV cache to ``ids``, reusing what it can; return False if cancelled."""
        # Batches start at multiples of n_batch, and again at the end of the stable prefix and
        # at each mark, so that every prompt sharing that prefix evaluates it, and what
        # follows, alike.
        stable, starts = self.batch_bounds(prompt, ids, stable_prefix, marks)
        reused = self._truncate(self._reuse_point(ids, starts))
        source = "memory" if reused else "none"
        store = self._state_store()
        if store is not None and self._restore(store, ids, starts, stable):
            reused = len(self._cached)
            source = "disk"
        save = store is not None and stable >= MIN_STATE_TOKENS and not store.contains(ids[:stable])
        if save and reused > stable:
            # Re-evaluate the few tokens past the prefix so that its state can be saved.
            reused = self._truncate(stable)
        stats.reused_prefix_tokens = reused
        stats.prefix_source = source if reused else "none"

        if save and store is not None:
            if not self._evaluate(ids, starts, stable, cancel):
                return False
            self._save(store, ids[:stable])
        if not self._evaluate(ids, starts, len(ids), cancel):
            return False
        stats.prompt_seconds = time.perf_counter() - started
        return True

    def _sample_loop(
        self,
        generation: int,
        chain: Any,
        stats: GenerationStats,
        started: float,
        max_tokens: int,
        cancel: threading.Event | None,
    ) -> Iterator[str]:
        llama = self._llama
        ctx = self._ctx
        vocab = self._vocab
        batch = self._batch
        cached = self._cached
        starts = self._starts
        piece_of: Callable[[int], bytes] = self._piece
        if chain is None:
            # Greedy: an argmax over llama.cpp's logits buffer, viewed in place (no copy).
            # The sampler chain would first fill a 262k-entry candidate array per token,
            # which costs more than the argmax itself (about 0.5 ms a token here).
            as_array = self._numpy.ctypeslib.as_array
            logits_ith = llama.llama_get_logits_ith
            shape = (self._n_vocab,)

            def sample(_chain: Any, ctx: Any, index: int) -> int:
                return int(as_array(logits_ith(ctx, index), shape=shape).argmax())

        else:
            sample = llama.llama_sampler_sample
        is_eog = llama.llama_vocab_is_eog
        decode = llama.llama_decode
        clock = time.perf_counter
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        batch.n_tokens = 1
        batch.logits[0] = 1
        generated = 0
        loop_started = clock()
        paused = 0.0
        try:
            while True:
                token = sample(chain, ctx, -1)
                if is_eog(vocab, token):
                    break
                generated += 1
                stats.generated_tokens = generated
                if generated == 1:
                    stats.first_token_seconds = clock() - started
                text = decoder.decode(piece_of(token))
                if text:
                    # Time spent by the caller between tokens is not generation time.
                    before = clock()
                    yield text
                    paused += clock() - before
                    if generation != self._generation:
                        return
                if generated >= max_tokens or (cancel is not None and cancel.is_set()):
                    break
                batch.token[0] = token
                batch.pos[0] = len(cached)
                if decode(ctx, batch) != 0:
                    self._reset_memory()
                    raise ModelError(
                        f"llama.cpp failed while generating with {self.model_name}",
                        hint="raise the checkpoint's context_size, or lower ntokens",
                    )
                cached.append(token)
                starts.append(batch.pos[0])
            tail = decoder.decode(b"", final=True)
            if tail and generation == self._generation:
                yield tail
        finally:
            stats.generation_seconds = clock() - loop_started - paused

    def _lookup_loop(
        self,
        generation: int,
        stats: GenerationStats,
        started: float,
        max_tokens: int,
        cancel: threading.Event | None,
    ) -> Iterator[str]:
        """Decode greedily with prompt lookup: draft from earlier text, verify in one batch.

        When the last ``LOOKUP_NGRAM`` tokens occurred before (in the prompt or the answer so
        far), the tokens that followed them are guessed to come next. One ``llama_decode``
        evaluates the pending token and the guesses; each guess is kept while it equals the
        argmax after its predecessor. The text is greedy decoding's, except where two tokens
        are nearly tied: llama.cpp's batched kernels round differently from its one-token
        path (by up to 1-2 logits on Gemma 3 270M), so drafted positions can tip the other way.
        """
        llama = self._llama
        ctx = self._ctx
        vocab = self._vocab
        batch = self._batch
        cached = self._cached
        starts = self._starts
        piece_of = self._piece
        is_eog = llama.llama_vocab_is_eog
        as_array = self._numpy.ctypeslib.as_array
        logits_ith = llama.llama_get_logits_ith
        shape = (self._n_vocab,)
        clock = time.perf_counter
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        def argmax(index: int) -> int:
            return int(as_array(logits_ith(ctx, index), shape=shape).argmax())

        history = list(cached)
        # Where each n-gram of the history last ended.
        seen: dict[tuple[int, ...], int] = {}
        for end in range(LOOKUP_NGRAM, len(history) + 1):
            seen[tuple(history[end - LOOKUP_NGRAM : end])] = end
        pending = argmax(-1)
        draft_len = LOOKUP_MIN_DRAFT
        cooldown = 0
        generated = 0
        loop_started = clock()
        paused = 0.0
        try:
            while True:
                # Emit the pending token, the argmax after everything in the cache.
                if is_eog(vocab, pending):
                    break
                generated += 1
                stats.generated_tokens = generated
                if generated == 1:
                    stats.first_token_seconds = clock() - started
                history.append(pending)
                text = decoder.decode(piece_of(pending))
                if text:
                    before = clock()
                    yield text
                    paused += clock() - before
                    if generation != self._generation:
                        return
                if generated >= max_tokens or (cancel is not None and cancel.is_set()):
                    break

                key = tuple(history[-LOOKUP_NGRAM:])
                match_end = seen.get(key)
                seen[key] = len(history)
                draft: list[int] = []
                if cooldown:
                    cooldown -= 1
                elif match_end is not None:
                    limit = min(draft_len, max_tokens - generated)
                    draft = history[match_end : match_end + limit]

                position = len(cached)
                for i, token in enumerate([pending, *draft]):
                    batch.token[i] = token
                    batch.pos[i] = position + i
                    batch.logits[i] = 1
                batch.n_tokens = 1 + len(draft)
                self._decode(batch)
                accepted = 0
                following = argmax(0)
                while accepted < len(draft) and following == draft[accepted]:
                    accepted += 1
                    following = argmax(accepted)
                if accepted < len(draft):
                    llama.llama_memory_seq_rm(self._memory, _SEQ, position + 1 + accepted, -1)
                cached.append(pending)
                cached.extend(draft[:accepted])
                starts.append(position)
                if draft:
                    if accepted == len(draft):
                        draft_len = min(LOOKUP_MAX_DRAFT, 2 * draft_len)
                    elif accepted == 0:
                        draft_len = LOOKUP_MIN_DRAFT
                        cooldown = LOOKUP_COOLDOWN
                    else:
                        draft_len = max(LOOKUP_MIN_DRAFT, accepted + 1)

                # Emit the accepted guesses: each is the greedy token after its predecessor.
                stop = False
                for token in draft[:accepted]:
                    if is_eog(vocab, token):
                        stop = True
                        break
                    generated += 1
                    stats.generated_tokens = generated
                    history.append(token)
                    seen[tuple(history[-LOOKUP_NGRAM:])] = len(history)
                    text = decoder.decode(piece_of(token))
                    if text:
                        before = clock()
                        yield text
                        paused += clock() - before
                        if generation != self._generation:
                            return
                    if generated >= max_tokens:
                        stop = True
                        break
                if stop:
                    break
                pending = following
            tail = decoder.decode(b"", final=True)
            if tail and generation == self._generation:
                yield tail
        finally:
            stats.generation_seconds = clock() - loop_started - paused


def _check_gguf_file(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise ModelError(
            f"model file {path} does not exist",
            hint="check the checkpoint's name_or_path, or download it with `symergion models pull`",
        ) from None
    except OSError as exc:
        raise ModelError(
            f"cannot read model file {path}: {exc.strerror or exc}",
            hint="check the file's permissions",
        ) from None
    if magic != b"GGUF":
        raise ModelError(
            f"{path} is not a GGUF file",
            hint="point name_or_path at a .gguf file (convert checkpoints with scripts/convert)",
        )


def _load_model(llama: Any, path: Path, extra_buffers: bool) -> Any:
    params = llama.llama_model_default_params()
    params.n_gpu_layers = 0
    # mmap: the weights stay in the page cache, shared, and cost no copy at load time.
    params.load_mode = llama.LLAMA_LOAD_MODE_MMAP
    # Extra buffer types (AMX, repacked weights) are faster, but llama.cpp's AMX kernel kills
    # the process on some Intel machines; see engine.extra_buffers.
    params.use_extra_bufts = extra_buffers
    _log_tail.clear()
    _model_buffers.clear()
    model = llama.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        detail = f": {_log_tail[-1]}" if _log_tail else ""
        raise ModelError(
            f"llama.cpp cannot load {path}{detail}",
            hint="the file may be truncated or damaged: download it again "
            "(`symergion models pull`), or upgrade llama-cpp-python if the model is newer",
        )
    return model


def _new_context(llama: Any, model: Any, n_ctx: int, n_threads: int, path: Path, *,
                 n_seq_max: int = 1) -> Any:
    params = llama.llama_context_default_params()
    params.n_ctx = n_ctx
    # A KV stream per sequence; n_ctx is their sum (see engine.batch for why not unified).
    params.n_seq_max = n_seq_max
    params.kv_unified = False
    params.n_batch = min(n_ctx, BATCH_TOKENS)
    params.n_ubatch = min(n_ctx, BATCH_TOKENS)
    params.n_threads = n_threads
    params.n_threads_batch = n_threads
    params.no_perf = True
    # The same attention kernels as llama-cpp-python's Llama, so speed comparisons are fair.
    params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
    # Prefix reuse cuts the cache back to an earlier position; a sliding-window cache that
    # dropped old cells could not continue from there, so keep the full cache.
    params.swa_full = True
    _log_tail.clear()
    ctx = llama.llama_init_from_model(model, params)
    if not ctx:
        detail = f": {_log_tail[-1]}" if _log_tail else ""
        raise ModelError(
            f"llama.cpp cannot create a context of {n_ctx} tokens for {path}{detail}",
            hint="lower the checkpoint's context_size, or free some memory",
        )
    return ctx


def _apply_lora(llama: Any, model: Any, ctx: Any, path: Path, scale: float) -> Any:
    """Load a GGUF LoRA adapter for ``model`` and apply it to ``ctx`` at ``scale``.

    llama.cpp adds the adapter's low-rank product to the weights it targets while it computes,
    so the base weights stay memory-mapped and shared. Returns the adapter, which must be freed
    after the context and before the model.
    """
    init = getattr(llama, "llama_adapter_lora_init", None)
    set_many = getattr(llama, "llama_set_adapters_lora", None)  # newer: a list of adapters
    set_one = getattr(llama, "llama_set_adapter_lora", None)  # the older, one-adapter call
    if init is None or (set_many is None and set_one is None):
        raise ModelError(
            f"llama-cpp-python {getattr(llama, '__version__', '?')} has no LoRA adapter API "
            "(llama_adapter_lora_init, llama_set_adapters_lora)",
            hint="upgrade it: pip install -U llama-cpp-python, or remove lora from the checkpoint",
        )
    if not path.is_file():
        raise ModelError(
            f"LoRA adapter {path} does not exist",
            hint="fix the checkpoint's lora; scripts/finetune/finetune.py makes adapters",
        )
    _log_tail.clear()
    adapter = init(model, str(path).encode())
    if not adapter:
        detail = f": {_log_tail[-1]}" if _log_tail else ""
        raise ModelError(
            f"llama.cpp cannot load the LoRA adapter {path}{detail}",
            hint="an adapter only fits the base model it was trained on: `symergion models list` "
            "shows which model it fits; point lora at an adapter for this model",
        )
    try:
        set_lora(llama, ctx, adapter, scale, path)
    except ModelError:
        llama.llama_adapter_lora_free(adapter)
        raise
    return adapter


def set_lora(llama: Any, ctx: Any, adapter: Any, scale: float, path: Path) -> None:
    """Apply a loaded LoRA ``adapter`` to the context ``ctx`` at ``scale``.

    Every context of the model needs it: the batch contexts too, or their texts would be the
    base model's.
    """
    set_many = getattr(llama, "llama_set_adapters_lora", None)
    if set_many is not None:
        adapters = (llama.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(scale)
        status = int(set_many(ctx, adapters, 1, scales))
    else:
        status = int(llama.llama_set_adapter_lora(ctx, adapter, scale))
    if status != 0:
        raise ModelError(f"llama.cpp cannot apply the LoRA adapter {path} (status {status})",
                         hint="check that the adapter fits the model with `symergion models list`")


def _free_native(llama: Any, model: Any, ctx: Any, batch: Any, contexts: list[BatchContext],
                 adapter: Any = None) -> None:
    # Called from close() or at garbage collection, where an error could only be printed.
    # The batch contexts use the model: they go first.
    for context in contexts:
        with contextlib.suppress(Exception):
            context.free()
    contexts.clear()
    with contextlib.suppress(Exception):
        llama.llama_batch_free(batch)
    with contextlib.suppress(Exception):
        llama.llama_free(ctx)
    if adapter:
        # After the context that uses it, before the model that lists it.
        with contextlib.suppress(Exception):
            llama.llama_adapter_lora_free(adapter)
    with contextlib.suppress(Exception):
        llama.llama_model_free(model)
