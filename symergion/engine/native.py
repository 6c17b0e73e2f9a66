"""llama.cpp's native objects, each owned by one Python object that frees it exactly once.

``NativeModel`` owns a ``llama_model``, ``NativeContext`` a ``llama_context``, ``TokenBatch`` a
``llama_batch``, ``SamplerChain`` a sampler chain and ``LoraAdapter`` a LoRA adapter. Each
frees its handle on ``close()``, or when it is garbage collected; an object that another
needs freed first (a context before its model, an adapter after the contexts it is applied
to) is kept alive by that other's finalizer, so the order holds whatever frees them. Above
this module nothing touches a raw handle: the generation loops (``engine.llama``,
``engine.batch``, ``engine.lookup``) call these objects' methods.

``llama_cpp`` is imported by ``load_llama_cpp``, never when this module is imported, so
commands that need no model stay fast.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import re
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from symergion.config.sampling import Sampling
from symergion.errors import ModelError

# llama.cpp's default batch: big enough for full prompt speed, small enough that a cancel
# request between two chunks is honoured within about a second on a 2-core CPU.
BATCH_TOKENS = 512
# Repetition penalty window, as in llama.cpp's defaults.
PENALTY_LAST_N = 64
_GGML_LOG_LEVEL_ERROR = 4  # ggml_log_level: 3 is WARN, 4 is ERROR
_GGML_LOG_LEVEL_CONT = 5
_STATE_HEADER = 8  # a sequence state's magic number and sequence id
_PARTIAL_ONLY = 1  # LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY: the sliding-window cache's part of a state alone

_llama_cpp: Any = None
_log_tail: deque[str] = deque(maxlen=4)
# The buffer types llama.cpp put the weights of the last loaded model in ("CPU_REPACK", ...).
_model_buffers: list[str] = []
_MODEL_BUFFER = re.compile(r"(\S+) model buffer size")
_log_callback: Any = None
_last_log_level = 0


def load_llama_cpp() -> Any:
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


def check_gguf_file(path: Path) -> None:
    """Raise a ModelError that names the fix unless ``path`` is a readable GGUF file."""
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


def _last_error() -> str:
    return f": {_log_tail[-1]}" if _log_tail else ""


def _call_quietly(free: Callable[[Any], None], handle: Any, *_keep_alive: object) -> None:
    # Called from close() or at garbage collection, where an error could only be printed.
    # ``_keep_alive`` holds the objects that must be freed after this one.
    with contextlib.suppress(Exception):
        free(handle)


class NativeModel:
    """A GGUF model's weights (memory-mapped) and vocabulary."""

    def __init__(self, llama: Any, path: Path, extra_buffers: bool) -> None:
        params = llama.llama_model_default_params()
        params.n_gpu_layers = 0
        # mmap: the weights stay in the page cache, shared, and cost no copy at load time.
        params.load_mode = llama.LLAMA_LOAD_MODE_MMAP
        # Extra buffer types (AMX, repacked weights) are faster, but llama.cpp's AMX kernel kills
        # the process on some Intel machines; see engine.extra_buffers.
        params.use_extra_bufts = extra_buffers
        _log_tail.clear()
        _model_buffers.clear()
        handle = llama.llama_model_load_from_file(str(path).encode(), params)
        if not handle:
            raise ModelError(
                f"llama.cpp cannot load {path}{_last_error()}",
                hint="the file may be truncated or damaged: download it again "
                "(`symergion models pull`), or upgrade llama-cpp-python if the model is newer",
            )
        self.llama = llama
        self.path = path
        self.handle = handle
        self._close = weakref.finalize(self, _call_quietly, llama.llama_model_free, handle)
        # What llama.cpp reported while loading: shows whether extra buffer types are in use.
        self.buffer_types = tuple(_model_buffers)
        self._vocab = llama.llama_model_get_vocab(handle)
        self.n_vocab = int(llama.llama_vocab_n_tokens(self._vocab))
        self.bos = int(llama.llama_vocab_bos(self._vocab))
        self.eos = int(llama.llama_vocab_eos(self._vocab))
        self.add_bos = bool(llama.llama_vocab_get_add_bos(self._vocab))
        self.n_ctx_train = int(llama.llama_model_n_ctx_train(handle))
        self._pieces: dict[int, bytes] = {}
        self._piece_buffer = ctypes.create_string_buffer(256)

    def close(self) -> None:
        """Free the model; every context and adapter of it must be closed before."""
        self._close()

    def chat_template(self) -> str | None:
        """Return the model's chat template (``tokenizer.chat_template``), None if it has none."""
        raw = self.llama.llama_model_chat_template(self.handle, None)
        return raw.decode("utf-8") if raw else None

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Return the token ids of ``text``; ``special`` parses special-token text as such."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buffer = (ctypes.c_int32 * capacity)()
            n = int(self.llama.llama_tokenize(self._vocab, data, len(data), buffer, capacity, add_bos,
                                              special))
            if n >= 0:
                break
            capacity = -n
        return buffer[:n]

    def piece(self, token: int) -> bytes:
        """Return the bytes of a token, special tokens rendered (cached per token)."""
        piece = self._pieces.get(token)
        if piece is None:
            buffer = self._piece_buffer
            n = int(self.llama.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, True))
            if n < 0:
                buffer = ctypes.create_string_buffer(-n)
                n = int(self.llama.llama_token_to_piece(self._vocab, token, buffer, -n, 0, True))
            piece = ctypes.string_at(buffer, n)
            self._pieces[token] = piece
        return piece

    def is_eog(self, token: int) -> bool:
        """Return whether ``token`` ends generation (EOS, end of turn)."""
        return bool(self.llama.llama_vocab_is_eog(self._vocab, token))


class NativeContext:
    """A llama.cpp context on a model: the KV cache of ``n_seq_max`` sequences and the logits."""

    def __init__(self, model: NativeModel, n_ctx: int, n_threads: int, *, n_seq_max: int = 1) -> None:
        llama = model.llama
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
        handle = llama.llama_init_from_model(model.handle, params)
        if not handle:
            raise ModelError(
                f"llama.cpp cannot create a context of {n_ctx} tokens for {model.path}{_last_error()}",
                hint="lower the checkpoint's context_size, or free some memory",
            )
        self.llama = llama
        self.model = model
        self.handle = handle
        # The adapters applied here are freed after this context, the model after both.
        self._adapters: list[LoraAdapter] = []
        self._close = weakref.finalize(self, _call_quietly, llama.llama_free, handle, model,
                                       self._adapters)
        self.n_ctx = int(llama.llama_n_ctx(handle))
        self.n_batch = int(llama.llama_n_batch(handle))
        self._memory = llama.llama_get_memory(handle)
        self._decode = llama.llama_decode
        self._logits_ith = llama.llama_get_logits_ith
        # numpy comes with llama-cpp-python; imported here to keep module import cheap.
        self._as_array = importlib.import_module("numpy").ctypeslib.as_array
        self._shape = (model.n_vocab,)

    def close(self) -> None:
        """Free the context (once)."""
        self._close()

    def apply_lora(self, adapter: LoraAdapter, scale: float) -> None:
        """Apply a loaded LoRA ``adapter`` at ``scale``.

        Every context of the model needs it: the batch contexts too, or their texts would be
        the base model's.
        """
        adapter.apply(self.handle, scale)
        self._adapters.append(adapter)

    def decode(self, batch: TokenBatch) -> int:
        """Evaluate ``batch``; return llama_decode's status (0 when it succeeded)."""
        return int(self._decode(self.handle, batch.native))

    def argmax(self, index: int) -> int:
        """Return the most likely token after batch position ``index`` (-1: the last one).

        An argmax over llama.cpp's logits buffer, viewed in place: the 262k-entry logits of a
        Gemma vocabulary are never copied into Python.
        """
        return int(self._as_array(self._logits_ith(self.handle, index), shape=self._shape).argmax())

    def clear(self) -> None:
        """Forget every sequence's cells."""
        self.llama.llama_memory_clear(self._memory, True)

    def seq_rm(self, seq: int, start: int, end: int) -> bool:
        """Drop sequence ``seq``'s cells from ``start`` to ``end`` (-1: all); False if refused."""
        return bool(self.llama.llama_memory_seq_rm(self._memory, seq, start, end))

    def seq_cp(self, source: int, target: int) -> None:
        """Copy every cell of sequence ``source`` into sequence ``target``."""
        self.llama.llama_memory_seq_cp(self._memory, source, target, -1, -1)

    def seq_pos_max(self, seq: int) -> int:
        """Return the last position sequence ``seq`` holds, -1 if it is empty."""
        return int(self.llama.llama_memory_seq_pos_max(self._memory, seq))

    def state_size(self, seq: int) -> int:
        """Return how many bytes sequence ``seq``'s KV state takes."""
        return int(self.llama.llama_state_seq_get_size(self.handle, seq))

    def save_state(self, seq: int) -> memoryview | None:
        """Return sequence ``seq``'s KV state, None if llama.cpp gives none."""
        size = self.state_size(seq)
        if size <= 0:
            return None
        buffer = (ctypes.c_uint8 * size)()
        written = int(self.llama.llama_state_seq_get_data(self.handle, buffer, size, seq))
        return memoryview(buffer).cast("B")[:written] if written > 0 else None

    def state_for_streams(self, seq: int, streams: int) -> bytearray | None:
        """Return sequence ``seq``'s KV state laid out for a context of ``streams`` KV streams.

        This context has one stream; a state of it loads only into a context with as many
        (llama.cpp checks the count). A sequence's state is a header (a magic number and the
        sequence) and each KV cache's part: a model with sliding-window layers has two, the
        base cache's, then the window's. A part starts with its stream count, then each
        stream's cell count and cells. So each part is rewritten with ``streams`` streams, all
        empty but the last: the cells of every stream load into the target sequence's stream.
        The window's part alone is what ``LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY`` writes, which
        tells where the two parts meet. None when llama.cpp gives no state, or its layout is
        not the one described (a later llama.cpp): the caller evaluates the prefix instead.
        """
        whole = self.save_state(seq)
        if whole is None or len(whole) < _STATE_HEADER:
            return None
        llama = self.llama
        size = int(llama.llama_state_seq_get_size_ext(self.handle, seq, _PARTIAL_ONLY))
        buffer = (ctypes.c_uint8 * max(size, 1))()
        written = int(llama.llama_state_seq_get_data_ext(self.handle, buffer, size, seq, _PARTIAL_ONLY))
        window = bytes(memoryview(buffer).cast("B")[_STATE_HEADER:max(written, _STATE_HEADER)])
        split = len(whole) - len(window)
        if written <= _STATE_HEADER or split < _STATE_HEADER or bytes(whole[split:]) != window:
            return None
        out = bytearray(whole[:_STATE_HEADER])
        for part in (bytes(whole[_STATE_HEADER:split]), window):
            if not part:
                continue  # a model without sliding-window layers: the window's part is the whole
            if len(part) < 4 or int.from_bytes(part[:4], "little") != 1:
                return None
            out += streams.to_bytes(4, "little") + bytes(4) * (streams - 1) + part[4:]
        return out

    def load_state(self, seq: int, data: bytearray) -> bool:
        """Load a saved KV state into sequence ``seq``; False if llama.cpp rejected it."""
        buffer = (ctypes.c_uint8 * len(data)).from_buffer(data)
        loaded = int(self.llama.llama_state_seq_set_data(self.handle, buffer, len(data), seq))
        del buffer
        return loaded != 0


class TokenBatch:
    """A llama.cpp batch of up to ``capacity`` tokens, each of one sequence."""

    def __init__(self, llama: Any, capacity: int) -> None:
        native = llama.llama_batch_init(capacity, 0, 1)
        self.native = native
        self._close = weakref.finalize(self, _call_quietly, llama.llama_batch_free, native)
        for i in range(capacity):
            native.n_seq_id[i] = 1
            native.seq_id[i][0] = 0

    def close(self) -> None:
        """Free the batch (once)."""
        self._close()

    def put(self, i: int, token: int, pos: int, *, seq: int = 0, logits: bool = False) -> None:
        """Set entry ``i``: ``token`` at position ``pos`` of ``seq``, asking for its logits or not."""
        native = self.native
        native.token[i] = token
        native.pos[i] = pos
        native.seq_id[i][0] = seq
        native.logits[i] = logits

    def set_size(self, n_tokens: int) -> None:
        """Make the first ``n_tokens`` entries the batch."""
        self.native.n_tokens = n_tokens


class SamplerChain:
    """A llama.cpp sampler chain: repetition penalty, then greedy or top-k/top-p/min-p/temperature."""

    def __init__(self, llama: Any, sampling: Sampling, n_vocab: int) -> None:
        params = llama.llama_sampler_chain_default_params()
        params.no_perf = True
        handle = llama.llama_sampler_chain_init(params)
        self.llama = llama
        self.handle = handle
        self._close = weakref.finalize(self, _call_quietly, llama.llama_sampler_free, handle)
        s = sampling
        if s.repeat_penalty != 1.0:
            self._add(llama.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, s.repeat_penalty, 0.0, 0.0))
        if s.temperature <= 0.0:
            self._add(llama.llama_sampler_init_greedy())
        else:
            self._add(llama.llama_sampler_init_top_k(s.top_k))
            self._add(llama.llama_sampler_init_top_p(s.top_p, 1))
            self._add(llama.llama_sampler_init_min_p(s.min_p, 1))
            self._add(llama.llama_sampler_init_temp(s.temperature))
            self._add(llama.llama_sampler_init_dist(s.seed & 0xFFFFFFFF))

    def _add(self, sampler: Any) -> None:
        # The chain owns the samplers added to it and frees them with itself.
        self.llama.llama_sampler_chain_add(self.handle, sampler)

    def close(self) -> None:
        """Free the chain and its samplers (once)."""
        self._close()

    def sample(self, context: NativeContext, index: int) -> int:
        """Return the token sampled from ``context``'s logits at batch position ``index``."""
        return int(self.llama.llama_sampler_sample(self.handle, context.handle, index))


def sampler_for(llama: Any, sampling: Sampling, n_vocab: int) -> SamplerChain | None:
    """Return a sampler chain for ``sampling``, or None for plain greedy decoding (an argmax).

    The chain would first fill a 262k-entry candidate array per token, which costs more than
    the argmax itself (about 0.5 ms a token here).
    """
    if sampling.temperature <= 0.0 and sampling.repeat_penalty == 1.0:
        return None
    return SamplerChain(llama, sampling, n_vocab)


def lora_api(llama: Any) -> tuple[Any, Any, Any]:
    """Return llama_cpp's adapter calls (init, set several, set one); a ModelError if it has none."""
    init = getattr(llama, "llama_adapter_lora_init", None)
    set_many = getattr(llama, "llama_set_adapters_lora", None)  # newer: a list of adapters
    set_one = getattr(llama, "llama_set_adapter_lora", None)  # the older, one-adapter call
    if init is None or (set_many is None and set_one is None):
        raise ModelError(
            f"llama-cpp-python {getattr(llama, '__version__', '?')} has no LoRA adapter API "
            "(llama_adapter_lora_init, llama_set_adapters_lora)",
            hint="upgrade it: pip install -U llama-cpp-python, or remove lora from the checkpoint",
        )
    return init, set_many, set_one


class LoraAdapter:
    """A GGUF LoRA adapter for one model.

    llama.cpp adds the adapter's low-rank product to the weights it targets while it computes,
    so the base weights stay memory-mapped and shared. Freed after the contexts it is applied
    to and before the model.
    """

    def __init__(self, model: NativeModel, path: Path) -> None:
        llama = model.llama
        init, self._set_many, self._set_one = lora_api(llama)
        if not path.is_file():
            raise ModelError(
                f"LoRA adapter {path} does not exist",
                hint="fix the checkpoint's lora; scripts/finetune/finetune.py makes adapters",
            )
        _log_tail.clear()
        handle = init(model.handle, str(path).encode())
        if not handle:
            raise ModelError(
                f"llama.cpp cannot load the LoRA adapter {path}{_last_error()}",
                hint="an adapter only fits the base model it was trained on: `symergion models list` "
                "shows which model it fits; point lora at an adapter for this model",
            )
        self.llama = llama
        self.path = path
        self.handle = handle
        self._close = weakref.finalize(self, _call_quietly, llama.llama_adapter_lora_free, handle, model)

    def close(self) -> None:
        """Free the adapter (once); the contexts it is applied to must be closed before."""
        self._close()

    def apply(self, ctx: Any, scale: float) -> None:
        """Apply the adapter to the context handle ``ctx`` at ``scale`` (see NativeContext)."""
        llama = self.llama
        if self._set_many is not None:
            adapters = (llama.llama_adapter_lora_p_ctypes * 1)(self.handle)
            scales = (ctypes.c_float * 1)(scale)
            status = int(self._set_many(ctx, adapters, 1, scales))
        else:
            status = int(self._set_one(ctx, self.handle, scale))
        if status != 0:
            raise ModelError(f"llama.cpp cannot apply the LoRA adapter {self.path} (status {status})",
                             hint="check that the adapter fits the model with `symergion models list`")
