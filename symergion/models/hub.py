"""Hugging Face Hub glue: ``hf://`` references, offline mode, and the Hub's errors in words.

``huggingface_hub`` is imported inside the functions that need it, not when this module is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from symergion.errors import ModelError
from symergion.models.errors import ModelNotFoundError

HF_SCHEME = "hf://"


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


def hf_offline() -> bool:
    """Return whether Hugging Face offline mode is on (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants

    # huggingface_hub owns this variable (read once, at its import); ask it, not the environment.
    return bool(constants.HF_HUB_OFFLINE)


def is_not_cached(exc: BaseException) -> bool:
    """Return whether ``exc`` only means the file is not in the local cache."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    return isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled))


def is_transport_error(exc: BaseException) -> bool:
    """Return whether ``exc`` means the Hub could not be reached."""
    # huggingface_hub's transport errors depend on its version (requests, httpx, httpx2), so
    # recognise them by their class names rather than import one particular HTTP library.
    names = {cls.__name__ for cls in type(exc).__mro__}
    network = {"TransportError", "RequestError", "ConnectionError", "ConnectError", "Timeout",
               "TimeoutException", "OfflineModeIsEnabled", "LocalEntryNotFoundError"}
    return bool(names & network) or isinstance(exc, (ConnectionError, TimeoutError))


def hub_error(repo_id: str, exc: BaseException, *, filename: str | None = None,
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
    if is_transport_error(exc):
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
