"""GGUF LoRA adapters: metadata, resolution, fit to a model, `models info/list`, cache identity.

The adapters are real GGUF files written with the gguf writer for real (tiny) llama models.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from symergion.app import runtime
from symergion.cli.app import app
from symergion.config.parse import parse_config
from symergion.config.schema import Checkpoint
from symergion.engine.fake import FakeEngine
from symergion.engine.pool import EnginePool
from symergion.engine.state import model_fingerprint as state_fingerprint
from symergion.errors import ModelError
from symergion.models.adapters import adapter_mismatch, read_adapter, resolve_adapter
from symergion.models.errors import ModelNotFoundError
from symergion.models.listing import (
    STATUS_LORA_MISMATCH,
    STATUS_MISSING,
    STATUS_NO_BASE,
    STATUS_OK,
    list_models,
)
from symergion.models.metadata import model_fingerprint, read_metadata
from tests.helpers.lora import write_adapter

runner = CliRunner()


@pytest.fixture
def models_dir(tmp_path: Path, tiny_model: Path, wide_model: Path) -> Path:
    """A models directory with two base models of one architecture and an adapter for each."""
    directory = tmp_path / "models"
    (directory / "adapters").mkdir(parents=True)
    shutil.copyfile(tiny_model, directory / "tiny.gguf")
    shutil.copyfile(wide_model, directory / "wide.gguf")
    write_adapter(directory / "adapters" / "tiny-lora.gguf", tiny_model, base_model="Tiny Llama")
    write_adapter(directory / "adapters" / "wide-lora.gguf", wide_model, base_model="Wide Llama")
    return directory


def config_with(directory: Path, *checkpoints: dict[str, Any]) -> Path:
    path = directory / "symergion.json"
    path.write_text(json.dumps({"checkpoints": list(checkpoints)}))
    return path


# --- metadata -----------------------------------------------------------------------------------


def test_read_adapter_gives_type_alpha_rank_base_and_targets(tiny_model: Path,
                                                             tmp_path: Path) -> None:
    path = write_adapter(tmp_path / "a.gguf", tiny_model, rank=8, alpha=16.0,
                         base_model="Tiny Llama", targets=("attn_q", "ffn_down"))
    adapter = read_adapter(path)
    assert (adapter.architecture, adapter.adapter_type, adapter.alpha, adapter.rank) == (
        "llama", "lora", 16.0, 8)
    assert adapter.base_model == "Tiny Llama"
    assert adapter.quantization == "F32"
    # Two layers, two matrices each; attn_q is 256 -> 256, ffn_down 512 -> 256 (GGUF order).
    assert [(t.tensor, t.shape) for t in adapter.targets] == [
        ("blk.0.attn_q.weight", (256, 256)), ("blk.0.ffn_down.weight", (512, 256)),
        ("blk.1.attn_q.weight", (256, 256)), ("blk.1.ffn_down.weight", (512, 256)),
    ]
    assert adapter.parameter_count == 2 * (8 * 256 + 256 * 8) + 2 * (8 * 512 + 256 * 8)
    assert read_metadata(path).is_adapter and not read_metadata(tiny_model).is_adapter


def test_a_model_is_not_an_adapter(tiny_model: Path) -> None:
    with pytest.raises(ModelError, match=r"is a model .* not a LoRA adapter") as caught:
        read_adapter(tiny_model)
    assert "finetune" in (caught.value.hint or "")


def test_an_adapter_with_half_a_pair_is_rejected(tiny_model: Path, tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "half.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 8.0)
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((4, 256), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelError, match="lacks its lora_a or lora_b half"):
        read_adapter(path)


# --- resolution ---------------------------------------------------------------------------------


def test_resolve_adapter_like_name_or_path(models_dir: Path) -> None:
    relative = resolve_adapter("adapters/tiny-lora.gguf", models_dir)
    assert relative == models_dir / "adapters" / "tiny-lora.gguf"
    assert resolve_adapter(str(relative), Path("/elsewhere")) == relative
    # hf:// finds a file placed by hand in the models directory, as for models.
    assert resolve_adapter("hf://org/repo/adapters/tiny-lora.gguf", models_dir) == relative


def test_a_missing_adapter_says_where_it_was_looked_for(models_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"LoRA adapter .*absent\.gguf does not exist") \
            as caught:
        resolve_adapter("absent.gguf", models_dir)
    assert str(models_dir) in (caught.value.hint or "")


def test_a_model_named_as_lora_is_refused(models_dir: Path) -> None:
    with pytest.raises(ModelError, match="not a LoRA adapter"):
        resolve_adapter("tiny.gguf", models_dir)
    with pytest.raises(ModelError, match="not a LoRA adapter"):
        resolve_adapter("embedded:gemma3-270m", models_dir)


# --- fit ----------------------------------------------------------------------------------------


def test_an_adapter_fits_the_model_it_was_written_for(models_dir: Path) -> None:
    adapter = read_adapter(models_dir / "adapters" / "tiny-lora.gguf")
    assert adapter_mismatch(adapter, models_dir / "tiny.gguf") is None


def test_an_adapter_for_another_size_does_not_fit(models_dir: Path) -> None:
    adapter = read_adapter(models_dir / "adapters" / "wide-lora.gguf")
    problem = adapter_mismatch(adapter, models_dir / "tiny.gguf")
    assert problem == ("blk.0.attn_q.weight is 256x256 in Tiny Llama but 512x512 in the adapter "
                       "(another model size)")


def test_an_adapter_for_another_architecture_does_not_fit(models_dir: Path,
                                                          tiny_model: Path) -> None:
    path = write_adapter(models_dir / "qwen-lora.gguf", tiny_model, architecture="qwen3")
    problem = adapter_mismatch(read_adapter(path), models_dir / "tiny.gguf")
    assert problem == "the adapter is for the qwen3 architecture, Tiny Llama is llama"


def test_an_adapter_for_a_matrix_the_model_lacks_does_not_fit(tmp_path: Path,
                                                              tiny_model: Path) -> None:
    from tests.helpers.gguf import write_tiny_gguf

    deep = write_tiny_gguf(tmp_path / "deep.gguf", n_layer=3)
    adapter = read_adapter(write_adapter(tmp_path / "deep-lora.gguf", deep))
    assert adapter_mismatch(adapter, tiny_model) == (
        "Tiny Llama has no tensor blk.2.attn_q.weight, which the adapter changes")


# --- models list / info -------------------------------------------------------------------------


def test_list_shows_which_model_each_adapter_fits(models_dir: Path) -> None:
    config = parse_config({"checkpoints": [
        {"name_or_path": "tiny.gguf", "name": "tiny", "trait": "coding"},
        {"name_or_path": "tiny.gguf", "name": "tiny-tuned", "trait": "coding",
         "lora": "adapters/tiny-lora.gguf", "lora_scale": 0.5},
    ]}, base_dir=models_dir)
    entries = {e.branch_name or e.path.name: e for e in list_models(config)
               if e.path is not None}
    tuned = entries["tiny-tuned"]
    assert (tuned.status, tuned.lora, tuned.lora_scale, tuned.fits) == (
        STATUS_OK, "adapters/tiny-lora.gguf", 0.5, ("tiny-tuned",))
    assert tuned.adapter is not None and tuned.adapter.rank == 4
    # Found in the models directory: the wide adapter fits the wide model only. The tiny adapter
    # is the configured one, so it is not listed again.
    wide_lora = entries["wide-lora.gguf"]
    assert (wide_lora.kind, wide_lora.status, wide_lora.fits) == ("adapter", STATUS_OK,
                                                                  ("wide.gguf",))
    assert "tiny-lora.gguf" not in entries
    assert entries["wide.gguf"].kind == "model"


def test_list_flags_an_adapter_that_does_not_fit_its_checkpoint(models_dir: Path) -> None:
    config = parse_config({"checkpoints": [
        {"name_or_path": "tiny.gguf", "name": "tiny-tuned", "trait": "coding",
         "lora": "adapters/wide-lora.gguf"},
    ]}, base_dir=models_dir)
    entry = list_models(config, scan_models_dir=False)[0]
    assert entry.status == STATUS_LORA_MISMATCH and not entry.usable
    assert entry.problem is not None and "wide-lora.gguf does not fit tiny.gguf" in entry.problem
    assert entry.fix is not None and "trained on Wide Llama (llama)" in entry.fix


def test_list_flags_a_missing_adapter(models_dir: Path) -> None:
    config = parse_config({"checkpoints": [
        {"name_or_path": "tiny.gguf", "trait": "coding", "lora": "adapters/none.gguf"},
    ]}, base_dir=models_dir)
    entry = list_models(config, scan_models_dir=False)[0]
    assert entry.status == STATUS_MISSING
    assert entry.problem is not None and "LoRA adapter" in entry.problem


def test_list_says_when_a_found_adapter_fits_no_model(models_dir: Path) -> None:
    (models_dir / "wide.gguf").unlink()
    config = parse_config({"checkpoints": [
        {"name_or_path": "tiny.gguf", "name": "tiny", "trait": "coding"},
    ]}, base_dir=models_dir)
    entries = {e.name_or_path: e for e in list_models(config)}
    orphan = entries[str(models_dir / "adapters" / "wide-lora.gguf")]
    assert orphan.status == STATUS_NO_BASE
    assert orphan.problem == ("fits none of the listed models (tiny: blk.0.attn_q.weight is "
                              "256x256 in Tiny Llama but 512x512 in the adapter (another model "
                              "size))")
    assert orphan.fix is not None and "Wide Llama" in orphan.fix and '"lora"' in orphan.fix
    assert entries[str(models_dir / "adapters" / "tiny-lora.gguf")].fits == ("tiny",)


def test_cli_list_shows_the_adapter_and_exits_1_on_a_mismatch(models_dir: Path) -> None:
    good = config_with(models_dir, {"name_or_path": "tiny.gguf", "name": "tuned",
                                    "trait": "coding", "lora": "adapters/tiny-lora.gguf"})
    result = runner.invoke(app, ["models", "list", "--config", str(good)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split()[:2] == ["tuned", "coding"]
    assert lines[1].endswith("tiny.gguf + lora adapters/tiny-lora.gguf")
    wide = next(line for line in lines if "wide-lora.gguf" in line)
    assert wide.split()[:5] == ["-", "adapter", "llama", "r4", "F32"]
    assert wide.endswith("(fits: wide.gguf)")

    bad = config_with(models_dir, {"name_or_path": "tiny.gguf", "name": "tuned",
                                   "trait": "coding", "lora": "adapters/wide-lora.gguf"})
    result = runner.invoke(app, ["models", "list", "--config", str(bad)])
    assert result.exit_code == 1
    assert "lora-mismatch: tiny.gguf" in result.stdout
    assert "fix: the adapter was trained on Wide Llama (llama)" in result.stdout


def test_cli_list_json_carries_the_adapter(models_dir: Path) -> None:
    config = config_with(models_dir, {"name_or_path": "tiny.gguf", "name": "tuned",
                                      "trait": "coding", "lora": "adapters/tiny-lora.gguf"})
    result = runner.invoke(app, ["models", "list", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)["models"][0]
    assert (first["lora"], first["lora_scale"], first["fits"]) == (
        "adapters/tiny-lora.gguf", 1.0, ["tuned"])
    assert first["adapter"]["alpha"] == 8.0 and first["adapter"]["base_model"] == "Tiny Llama"


def test_cli_info_shows_an_adapters_metadata(models_dir: Path) -> None:
    path = models_dir / "adapters" / "tiny-lora.gguf"
    result = runner.invoke(app, ["models", "info", str(path)])
    assert result.exit_code == 0, result.output
    fields = dict(line.split(None, 1) if not line.startswith(("base model", "lora alpha"))
                  else (line[:16].strip(), line[16:]) for line in
                  result.stdout.split("\n\n")[0].splitlines())
    assert fields["type"] == "adapter (lora)"
    assert fields["base model"] == "Tiny Llama (llama)"
    assert fields["lora alpha"] == "8"
    assert fields["rank"] == "4"
    assert fields["targets"] == "4 matrices: attn_q, ffn_up"
    assert json.loads(result.stdout.split("base model:\n", 1)[1]) == {
        "lora": str(path), "lora_scale": 1.0}


def test_cli_info_json_for_an_adapter(models_dir: Path) -> None:
    result = runner.invoke(app, ["models", "info", "adapters/tiny-lora.gguf", "--models",
                                 str(models_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["kind"], data["architecture"], data["adapter_type"], data["rank"]) == (
        "adapter", "llama", "lora", 4)
    assert data["suggested_checkpoint_fields"] == {"lora": "adapters/tiny-lora.gguf",
                                                   "lora_scale": 1.0}
    assert data["targets"][0] == {"tensor": "blk.0.attn_q.weight", "rank": 4,
                                  "shape": [256, 256]}


# --- cache identity -----------------------------------------------------------------------------


def test_the_adapter_is_part_of_the_response_cache_fingerprint(models_dir: Path) -> None:
    config = parse_config({"checkpoints": [
        {"name_or_path": "tiny.gguf", "name": "plain", "trait": "coding"},
        {"name_or_path": "tiny.gguf", "name": "tuned", "trait": "coding",
         "lora": "adapters/tiny-lora.gguf"},
        {"name_or_path": "tiny.gguf", "name": "half", "trait": "coding",
         "lora": "adapters/tiny-lora.gguf", "lora_scale": 0.5},
        {"name_or_path": "tiny.gguf", "name": "other", "trait": "coding",
         "lora": "adapters/wide-lora.gguf"},
    ]}, base_dir=models_dir)
    prints = [runtime.fingerprint(config, c) for c in config.checkpoints]
    assert len(set(prints)) == 4
    # Without an adapter the identity is the model file's, as before adapters existed.
    assert prints[0] == model_fingerprint(models_dir / "tiny.gguf")
    assert prints[1] == runtime.fingerprint(config, config.checkpoints[1])


def test_a_rewritten_adapter_changes_the_fingerprint(models_dir: Path, tiny_model: Path) -> None:
    config = parse_config({"checkpoints": [
        {"name_or_path": "tiny.gguf", "trait": "coding", "lora": "adapters/tiny-lora.gguf"},
    ]}, base_dir=models_dir)
    before = runtime.fingerprint(config, config.checkpoints[0])
    write_adapter(models_dir / "adapters" / "tiny-lora.gguf", tiny_model, seed=1)
    assert runtime.fingerprint(config, config.checkpoints[0]) != before


def test_a_missing_adapter_fails_the_fingerprint_with_the_fix(models_dir: Path) -> None:
    config = parse_config({"checkpoints": [
        {"name_or_path": "tiny.gguf", "trait": "coding", "lora": "adapters/gone.gguf"},
    ]}, base_dir=models_dir)
    with pytest.raises(ModelNotFoundError, match="LoRA adapter"):
        runtime.fingerprint(config, config.checkpoints[0])


def test_kv_states_of_a_model_with_an_adapter_live_apart(models_dir: Path) -> None:
    model = models_dir / "tiny.gguf"
    plain = state_fingerprint(model, "ctx")
    tuned = state_fingerprint(model, "ctx", adapter=models_dir / "adapters" / "tiny-lora.gguf")
    other = state_fingerprint(model, "ctx", adapter=models_dir / "adapters" / "wide-lora.gguf")
    assert len({plain, tuned, other}) == 3
    assert plain == state_fingerprint(model, "ctx")


def test_the_pool_loads_a_model_once_per_adapter() -> None:
    plain = Checkpoint(name_or_path="/m/base.gguf", trait="coding", name="plain")
    tuned = Checkpoint(name_or_path="/m/base.gguf", trait="coding", name="tuned", lora="t.gguf")
    pool = EnginePool(2, lambda c: FakeEngine(c.model_name, "x"))
    assert pool(plain) is not pool(tuned)
    assert pool(plain).model_name == "plain" and pool(tuned).model_name == "tuned"
    assert pool.loads == 2
    pool.close()


def test_a_forced_extra_buffer_setting_keys_its_own_answers(
        models_dir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Texts can differ with extra buffers on and off: their answers never share a cache key."""
    config = parse_config({"checkpoints": [{"name_or_path": str(tiny_model), "trait": "coding"}]},
                          base_dir=models_dir)
    checkpoint = config.checkpoints[0]
    prints = {}
    for setting in ("auto", "on", "off"):
        monkeypatch.setenv("SYMERGION_EXTRA_BUFFERS", setting)
        prints[setting] = runtime.fingerprint(config, checkpoint)
    assert len(set(prints.values())) == 3
    monkeypatch.delenv("SYMERGION_EXTRA_BUFFERS")
    assert runtime.fingerprint(config, checkpoint) == prints["auto"]
