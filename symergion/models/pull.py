"""Pull a GGUF file from a Hugging Face repository: `symergion models pull`."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symergion.errors import ModelError
from symergion.models.errors import ModelNotFoundError
from symergion.models.hub import HfRef, hf_offline, hub_error, is_not_cached, is_transport_error
from symergion.models.metadata import SPLIT_PART, ModelInfo, read_metadata

DEFAULT_QUANT = "Q4_K_M"


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
        groups.setdefault(SPLIT_PART.sub("", name), []).append(name)
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
    if exact and not SPLIT_PART.search(exact):
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
            if not is_transport_error(exc):
                raise hub_error(repo_id, exc) from None
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
        if is_not_cached(exc) or isinstance(exc, (FileNotFoundError, ValueError)):
            return []
        raise hub_error(repo_id, exc) from None
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
        if not (local_only and is_not_cached(exc)):
            raise hub_error(repo_id, exc, filename=filename, manual=manual) from None
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
        if is_not_cached(exc):
            return None
        raise hub_error(repo_id, exc, filename=filename) from None
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
