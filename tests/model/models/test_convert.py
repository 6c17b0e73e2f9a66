"""scripts/convert/convert.py on the embedded Gemma GGUF: requantize it, read its metadata.

The script on tiny GGUFs is tested in tests/models/test_convert.py.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from symergion.models.metadata import read_metadata


def test_requantize_gemma_and_verify(convert_module: ModuleType, gemma_gguf: Path,
                                     tmp_path: Path) -> None:
    dst = tmp_path / "gemma-3-270m-Q8_0.gguf"
    meta = convert_module.quantize(gemma_gguf, dst, quant="Q8_0", allow_requantize=True)
    assert (meta.architecture, meta.quantization) == ("gemma3", "Q8_0")
    result = convert_module.verify(dst, n_tokens=8, prompt="def add(a, b):\n")
    assert len(result.tokens) == 8
    assert result.text.strip()


def test_gemma_metadata(gemma_gguf: Path) -> None:
    meta = read_metadata(gemma_gguf)
    assert (meta.architecture, meta.quantization, meta.size_label) == ("gemma3", "Q4_K_M", "270M")
    assert meta.context_length == 32768
    assert meta.vocab_size == 262144
    assert (meta.bos_token, meta.eos_token) == ("<bos>", "<eos>")
    assert meta.thinking is None
