"""LoRA adapters: resolve a checkpoint's ``lora``, summarise it, and check it fits a model.

An adapter is a GGUF file whose ``general.type`` is ``adapter``, named the way a model is (a path,
or ``hf://ORG/REPO/FILE.gguf``).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symergion.errors import ModelError
from symergion.models.errors import ModelNotFoundError
from symergion.models.gguf_reader import open_reader
from symergion.models.hub import HF_SCHEME, parse_hf_ref
from symergion.models.metadata import read_metadata
from symergion.models.resolve import EMBEDDED_PREFIX, resolve_hf

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
        path = resolve_hf(parse_hf_ref(lora), models_dir, allow_download=False)
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
    meta = read_metadata(path)
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
    reader = open_reader(path)

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
    reader = open_reader(Path(path_text))
    return {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}


def describe_adapter_base(adapter: AdapterInfo) -> str:
    """Return the adapter's base model in words: its name if recorded, and its architecture."""
    return f"{adapter.base_model} ({adapter.architecture})" if adapter.base_model \
        else f"a {adapter.architecture} model"
