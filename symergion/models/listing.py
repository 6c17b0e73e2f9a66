"""The inventory `symergion models list` shows: configured checkpoints and the models directory.

Nothing is downloaded or loaded; a configured endpoint is asked what it serves.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from symergion.config.schema import REMOTE_KIND, Config
from symergion.errors import ModelError
from symergion.models.adapters import (
    AdapterInfo,
    adapter_mismatch,
    describe_adapter_base,
    read_adapter,
    resolve_adapter,
)
from symergion.models.errors import ModelNotFoundError
from symergion.models.hub import HF_SCHEME, parse_hf_ref
from symergion.models.metadata import CONVERT_HINT, SPLIT_PART, ModelInfo, read_metadata
from symergion.models.resolve import EMBEDDED_PREFIX, resolve_model

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
            shard = SPLIT_PART.search(name)
            if shard and int(shard.group(1)) != 1:
                continue
            yield here / name
