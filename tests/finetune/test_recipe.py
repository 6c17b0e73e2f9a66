"""scripts/finetune/finetune.py: the recipe end to end on a tiny Llama.

The tests train for a few steps on the CPU, convert the base model and the adapter
with llama.cpp's converters, and load the adapter in symergion's engine (``-m finetune``).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from symergion.app import runtime
from symergion.config.parse import parse_config
from symergion.models.adapters import adapter_mismatch, read_adapter
from symergion.models.metadata import read_metadata
from tests.helpers.finetune import PROMPT, write_harvest


def lora_b_norm(adapter: Path) -> float:
    """Return the largest absolute value of the adapter's lora_b tensors (0 for an untrained one)."""
    import gguf

    reader = gguf.GGUFReader(adapter)
    return max(float(np.abs(np.asarray(t.data, dtype=np.float32)).max())
               for t in reader.tensors if t.name.endswith(".lora_b"))


def test_sft_recipe_from_harvest_to_an_adapter_symergion_runs(
        finetune_module: ModuleType, tiny_llama: Path, llama_cpp_checkout: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = write_harvest(tmp_path / "data")
    out = tmp_path / "models"
    status = finetune_module.main([
        str(data), "--base", str(tiny_llama), "--llama-cpp", str(llama_cpp_checkout),
        "--out", str(out), "--models", str(out), "--base-quant", "F16", "--max-steps", "4",
        "--batch-size", "2", "--rank", "4", "--alpha", "8", "--targets", "q_proj,v_proj,up_proj",
        "--learning-rate", "1e-2", "--max-length", "128", "--threads", "2",
    ])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    entry = json.loads(captured.out)
    assert entry == {"name_or_path": "Tiny-Llama-F16.gguf", "lora": "Tiny-Llama-sft-lora.gguf",
                     "lora_scale": 1.0, "name": "Tiny-Llama-sft", "trait": "coding"}
    assert "step 4: loss" in captured.err and "loads in symergion and generates" in captured.err

    base_gguf, adapter_gguf = out / entry["name_or_path"], out / entry["lora"]
    assert read_metadata(base_gguf).architecture == "llama"
    adapter = read_adapter(adapter_gguf)
    assert (adapter.architecture, adapter.adapter_type, adapter.alpha, adapter.rank) == (
        "llama", "lora", 8.0, 4)
    assert {t.tensor.split(".")[2] for t in adapter.targets} == {"attn_q", "attn_v", "ffn_up"}
    assert adapter_mismatch(adapter, base_gguf) is None
    # PEFT starts lora_B at zero: a non-zero lora_B is what the training steps learned.
    assert lora_b_norm(adapter_gguf) > 0

    # The printed entry, pasted into a config, runs in symergion.
    config = parse_config({"checkpoints": [entry]}, base_dir=out)
    assert runtime.adapter_path(config, config.checkpoints[0]) == adapter_gguf
    engine = runtime.load_engine(config, config.checkpoints[0])
    try:
        text = "".join(engine.generate(PROMPT, max_tokens=12))
        assert engine.stats.generated_tokens > 0 and text
    finally:
        engine.close()


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_dpo_and_kto_train_an_adapter_that_converts(finetune_module: ModuleType,
                                                    tiny_llama: Path, llama_cpp_checkout: Path,
                                                    tmp_path: Path, method: str) -> None:
    rows = finetune_module.load_rows(write_harvest(tmp_path / "data"), method)
    settings = finetune_module.TrainSettings(method=method, rank=4, alpha=8.0, max_steps=2,
                                             batch_size=4, max_length=128, learning_rate=1e-2,
                                             targets=("q_proj", "v_proj"))
    losses: list[float] = []
    peft_dir = finetune_module.train_lora(tiny_llama, rows, tmp_path / "run", settings,
                                          device="cpu",
                                          on_log=lambda logs: losses.extend(
                                              [logs["loss"]] if "loss" in logs else []))
    assert len(losses) == 2 and all(np.isfinite(losses))
    adapter = finetune_module.convert_adapter(peft_dir, tiny_llama, tmp_path / f"{method}.gguf",
                                              llama_cpp_dir=llama_cpp_checkout)
    assert read_adapter(adapter).rank == 4
    assert lora_b_norm(adapter) > 0
