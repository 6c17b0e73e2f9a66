"""Real LoRA adapter GGUFs, written with the gguf writer for a given model."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from symergion.engine.llama import LlamaEngine

# The matrices an adapter changes by default: attention queries and the feed-forward up
# projection, in every block (PEFT's usual q_proj / up_proj targets).
TARGETS = ("attn_q", "ffn_up")

PROMPT = 'def fibonacci(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n'
TOKENS = 24

MakeEngine = Callable[..., "LlamaEngine"]


def complete(engine: LlamaEngine, prompt: str = PROMPT, **kwargs: Any) -> str:
    """Return an engine's greedy text for ``prompt``, ``TOKENS`` tokens at most."""
    return "".join(engine.generate(prompt, max_tokens=TOKENS, **kwargs))


def write_adapter(
    path: Path,
    model: Path,
    *,
    targets: Sequence[str] = TARGETS,
    layers: Sequence[int] | None = None,
    rank: int = 4,
    alpha: float = 8.0,
    zero: bool = False,
    strength: float = 1.0,
    seed: int = 0,
    architecture: str | None = None,
    base_model: str | None = "Base Model",
) -> Path:
    """Write a LoRA adapter GGUF for ``model`` as llama.cpp's convert_lora_to_gguf.py lays it out.

    For each target matrix W (GGUF shape ``[n_in, n_out]``) it writes ``<W>.lora_a`` of shape
    ``[n_in, rank]`` and ``<W>.lora_b`` of shape ``[rank, n_out]`` (numpy: ``(rank, n_in)`` and
    ``(n_out, rank)``, PEFT's ``lora_A`` and ``lora_B``). With ``zero`` every ``lora_b`` is zero,
    so the adapter adds nothing; otherwise ``strength`` scales a random ``lora_b``.
    """
    import gguf

    reader = gguf.GGUFReader(model)
    arch_field = reader.fields["general.architecture"]
    arch = architecture or str(arch_field.contents())
    shapes = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    del reader
    pattern = re.compile(rf"^blk\.(\d+)\.({'|'.join(targets)})\.weight$")
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(f"{path.stem}")
    if base_model is not None:
        writer.add_base_model_count(1)
        writer.add_base_model_name(0, base_model)
    written = 0
    for name, shape in sorted(shapes.items()):
        match = pattern.match(name)
        if match is None or (layers is not None and int(match.group(1)) not in layers):
            continue
        n_in, n_out = shape
        lora_a = (rng.standard_normal((rank, n_in)) / np.sqrt(n_in)).astype(np.float32)
        lora_b = np.zeros((n_out, rank), dtype=np.float32) if zero else \
            (rng.standard_normal((n_out, rank)) * strength).astype(np.float32)
        writer.add_tensor(f"{name}.lora_a", lora_a)
        writer.add_tensor(f"{name}.lora_b", lora_b)
        written += 1
    assert written, f"no tensor of {model} matches {targets}"
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
