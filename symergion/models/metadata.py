"""Check a GGUF file, fingerprint it, and summarise what its metadata says about the model."""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symergion.config.schema import Checkpoint
from symergion.errors import ModelError
from symergion.models.errors import ModelNotFoundError
from symergion.models.gguf_reader import open_reader, unreadable_error

if TYPE_CHECKING:
    import gguf


GGUF_MAGIC = b"GGUF"
LFS_POINTER_PREFIX = b"version https://git-lfs"
FINGERPRINT_CHUNK = 1 << 20

CONVERT_HINT = (
    "convert it to GGUF: python scripts/convert/convert.py convert {path} "
    "--llama-cpp /path/to/llama.cpp"
)

# Pairs of (start, stop) markers that chat templates use around a model's reasoning, the most
# common first. Only pairs that actually occur in a model's template are reported.
THINKING_MARKERS: tuple[tuple[str, str], ...] = (
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("<seed:think>", "</seed:think>"),
    ("<|START_THINKING|>", "<|END_THINKING|>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
    ("[THINK]", "[/THINK]"),
    ("◁think▷", "◁/think▷"),
)

# How a newline is spelled in a vocab: a token of its own (SentencePiece with byte pieces, Gemma),
# GPT-2 byte-level BPE's "Ċ", or a byte-fallback piece.
_NEWLINE_PIECES = ("\n", "Ċ", "<0x0A>")

# A part of a split GGUF (NAME-00001-of-00003.gguf): llama.cpp loads the others through the first.
SPLIT_PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def check_gguf(path: Path) -> None:
    """Check that ``path`` is a complete GGUF file, without reading its tensor data.

    Raises:
        ModelError: the file is missing, a directory, a Git LFS pointer, not a GGUF, or
            truncated; the message names the file and the fix.
    """
    _inspect(path)


def read_metadata(path: Path) -> ModelInfo:
    """Return the GGUF metadata summary of ``path`` (checked as ``check_gguf`` does).

    Raises:
        ModelError: as ``check_gguf``.
    """
    return _inspect(path)


def model_fingerprint(path: Path) -> str:
    """Return a cheap identity of a model file for cache keys.

    It hashes the size, the modification time and the first and last MiB, so it changes when
    the file is replaced or rewritten, and costs two small reads however large the file is.

    Raises:
        ModelError: the file cannot be read.
    """
    try:
        stat = path.stat()
        digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(FINGERPRINT_CHUNK))
            if stat.st_size > FINGERPRINT_CHUNK:
                handle.seek(max(FINGERPRINT_CHUNK, stat.st_size - FINGERPRINT_CHUNK))
                digest.update(handle.read(FINGERPRINT_CHUNK))
    except OSError as exc:
        raise unreadable_error(path, exc) from None
    return digest.hexdigest()


@dataclass(frozen=True)
class ThinkingMarkers:
    """The reasoning markers of a chat template and their token ids in the vocab."""

    start: str
    stop: str
    start_token_id: int | None
    stop_token_id: int | None
    start_tokens: tuple[int, ...]
    stop_tokens: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    """What a GGUF file says about the model in it."""

    path: Path
    file_size: int
    architecture: str
    name: str | None
    parameter_count: int
    size_label: str
    quantization: str
    context_length: int | None
    has_chat_template: bool
    tokenizer_model: str | None
    tokenizer_pre: str | None
    vocab_size: int
    bos_token_id: int | None
    eos_token_id: int | None
    bos_token: str | None
    eos_token: str | None
    thinking: ThinkingMarkers | None
    gguf_version: int
    tensor_count: int
    gguf_type: str = "model"  # general.type: "model", or "adapter" for a LoRA adapter

    @property
    def is_adapter(self) -> bool:
        """Return whether the file is an adapter rather than a model."""
        return self.gguf_type == "adapter"

    def suggested_checkpoint(self, name_or_path: str | None = None) -> dict[str, Any]:
        """Return a config checkpoint entry for this model, reasoning tokens included."""
        reference = name_or_path or str(self.path)
        # The branch name the config would give it anyway, spelled out so users see it.
        entry: dict[str, Any] = {
            "name_or_path": reference,
            "name": Checkpoint(name_or_path=reference, trait="coding").model_name,
        }
        if self.thinking and self.thinking.stop_tokens:
            entry["trait"] = "reasoning"
            entry["reasoning_start_tokens"] = list(self.thinking.start_tokens)
            entry["reasoning_stop_tokens"] = list(self.thinking.stop_tokens)
        elif self.thinking:
            entry["trait"] = "reasoning"
            entry["reasoning_markers"] = [self.thinking.start, self.thinking.stop]
        else:
            entry["trait"] = "coding"
        return entry

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        thinking: dict[str, Any] | None = None
        if self.thinking:
            thinking = {
                "start": self.thinking.start,
                "stop": self.thinking.stop,
                "start_token_id": self.thinking.start_token_id,
                "stop_token_id": self.thinking.stop_token_id,
                "reasoning_start_tokens": list(self.thinking.start_tokens),
                "reasoning_stop_tokens": list(self.thinking.stop_tokens),
            }
        return {
            "path": str(self.path),
            "file_size": self.file_size,
            "architecture": self.architecture,
            "name": self.name,
            "parameter_count": self.parameter_count,
            "size_label": self.size_label,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "has_chat_template": self.has_chat_template,
            "tokenizer": {
                "model": self.tokenizer_model,
                "pre": self.tokenizer_pre,
                "vocab_size": self.vocab_size,
                "bos_token_id": self.bos_token_id,
                "eos_token_id": self.eos_token_id,
                "bos_token": self.bos_token,
                "eos_token": self.eos_token,
            },
            "thinking": thinking,
            "gguf_version": self.gguf_version,
            "tensor_count": self.tensor_count,
        }


def _inspect(path: Path) -> ModelInfo:
    path = path.absolute()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"model file {path} does not exist",
            hint="fix the path, or get the file: `symergion models pull ORG/REPO` downloads one",
        ) from None
    except OSError as exc:
        raise unreadable_error(path, exc) from None
    if path.is_dir():
        hf_checkpoint = (path / "config.json").is_file()
        raise ModelError(
            f"{path} is a directory, not a GGUF file"
            + (" (it holds a Hugging Face checkpoint)" if hf_checkpoint else ""),
            hint=CONVERT_HINT.format(path=path) if hf_checkpoint
            else "point name_or_path at the .gguf file inside it",
        )
    return _inspect_file(str(path), stat.st_size, stat.st_mtime_ns)


# Checking and reading the same unchanged file again is free: the key includes size and mtime.
# Failures are not cached (lru_cache does not store exceptions), so a fixed file is seen at once.
@functools.lru_cache(maxsize=64)
def _inspect_file(path_text: str, size: int, mtime_ns: int) -> ModelInfo:
    path = Path(path_text)
    try:
        with path.open("rb") as handle:
            head = handle.read(len(LFS_POINTER_PREFIX))
    except OSError as exc:
        raise unreadable_error(path, exc) from None
    if head.startswith(LFS_POINTER_PREFIX):
        raise ModelError(
            f"{path} is a Git LFS pointer, not the model itself",
            hint="run `git lfs pull` in the repository it came from, or download the file again",
        )
    if head[:4] != GGUF_MAGIC:
        shown = "an empty file" if size == 0 else f"a file starting with {head[:4]!r}"
        raise ModelError(
            f"{path} is not a GGUF file ({shown})",
            hint="use a .gguf file; convert a Hugging Face checkpoint with "
            "scripts/convert/convert.py, or download a GGUF with `symergion models pull`",
        )
    # The reader's memory map is released when it goes out of scope here: the summary keeps
    # plain Python values only, so a checked file can be replaced or deleted right away.
    reader = open_reader(path)
    if not reader.tensors:
        raise ModelError(f"{path} holds no tensors (a vocab-only GGUF?)",
                         hint="use the GGUF file with the model weights")
    end = max(t.data_offset + t.n_bytes for t in reader.tensors)
    if end > size:
        raise ModelError(
            f"{path} is truncated: it has {size:,} bytes, its tensors need {end:,}",
            hint="the download or copy was cut short; fetch or copy the file again",
        )
    return _summarise(path, size, reader)


def _summarise(path: Path, size: int, reader: gguf.GGUFReader) -> ModelInfo:
    from gguf import GGMLQuantizationType, LlamaFileType
    from gguf.utility import model_weight_count_rounded_notation

    def value(key: str) -> Any:
        fld = reader.fields.get(key)
        return None if fld is None else fld.contents()

    arch = value("general.architecture")
    arch = arch if isinstance(arch, str) else "unknown"
    params = sum(int(t.n_elements) for t in reader.tensors)
    size_label = value("general.size_label")
    if not isinstance(size_label, str) or not size_label:
        size_label = model_weight_count_rounded_notation(params)

    file_type = value("general.file_type")
    quantization: str
    try:
        name = LlamaFileType(int(file_type)).name
        quantization = name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (TypeError, ValueError):
        # No (known) file type: name the type that holds most of the weights.
        by_bytes: Counter[str] = Counter()
        for t in reader.tensors:
            by_bytes[GGMLQuantizationType(t.tensor_type).name] += int(t.n_bytes)
        quantization = by_bytes.most_common(1)[0][0] if by_bytes else "unknown"

    ctx = value(f"{arch}.context_length")
    template = value("tokenizer.chat_template")
    template = template if isinstance(template, str) else ""
    tokens_field = reader.fields.get("tokenizer.ggml.tokens")
    tokens: list[str] = tokens_field.contents() if tokens_field is not None else []
    bos = _int_or_none(value("tokenizer.ggml.bos_token_id"))
    eos = _int_or_none(value("tokenizer.ggml.eos_token_id"))
    tokenizer_model = value("tokenizer.ggml.model")
    tokenizer_pre = value("tokenizer.ggml.pre")
    general_name = value("general.name")
    return ModelInfo(
        path=path,
        file_size=size,
        architecture=arch,
        name=general_name if isinstance(general_name, str) else None,
        parameter_count=params,
        size_label=size_label,
        quantization=quantization,
        context_length=_int_or_none(ctx),
        has_chat_template=bool(template),
        tokenizer_model=tokenizer_model if isinstance(tokenizer_model, str) else None,
        tokenizer_pre=tokenizer_pre if isinstance(tokenizer_pre, str) else None,
        vocab_size=len(tokens),
        bos_token_id=bos,
        eos_token_id=eos,
        bos_token=_token_text(tokens, bos),
        eos_token=_token_text(tokens, eos),
        thinking=find_thinking_markers(template, tokens),
        gguf_version=int(value("GGUF.version") or 0),
        tensor_count=len(reader.tensors),
        gguf_type=gguf_type if isinstance(gguf_type := value("general.type"), str) else "model",
    )


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _token_text(tokens: Sequence[str], token_id: int | None) -> str | None:
    if token_id is None or not 0 <= token_id < len(tokens):
        return None
    return tokens[token_id]


def find_thinking_markers(template: str, tokens: Sequence[str]) -> ThinkingMarkers | None:
    """Find the reasoning markers a chat template uses and their token ids.

    ``start_tokens`` includes the newline token when the template writes the start marker
    followed by a newline (Qwen3: ``<think>\\n`` → ``[151667, 198]``), because the model then
    emits both before its reasoning.
    """
    if not template:
        return None
    for start, stop in THINKING_MARKERS:
        if start in template and stop in template:
            break
    else:
        return None
    wanted = {start, stop, *_NEWLINE_PIECES}
    ids: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if token in wanted and token not in ids:
            ids[token] = index
    start_id, stop_id = ids.get(start), ids.get(stop)
    newline_id = next((ids[p] for p in _NEWLINE_PIECES if p in ids), None)
    start_tokens: tuple[int, ...] = ()
    if start_id is not None:
        start_tokens = (start_id,)
        # Jinja templates spell the newline as an escape inside a string literal, or raw.
        if newline_id is not None and (start + "\\n" in template or start + "\n" in template):
            start_tokens = (start_id, newline_id)
    return ThinkingMarkers(
        start=start,
        stop=stop,
        start_token_id=start_id,
        stop_token_id=stop_id,
        start_tokens=start_tokens,
        stop_tokens=(stop_id,) if stop_id is not None else (),
    )
