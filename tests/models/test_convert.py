"""scripts/convert/convert.py: quantize and verify real GGUFs, the converter wiring, migration."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from symergion.config.load import load_config
from symergion.errors import ConfigError, ModelError
from symergion.models.metadata import read_metadata
from tests.helpers.gguf import CONVERT_SCRIPT, ROOT, write_tiny_gguf

runner = CliRunner()

# The README example of the original project (with the comma it lacks after the second
# checkpoint), the input of migrate-config.
ORIGINAL_EXAMPLE: dict[str, Any] = {
    "idle_cores": 4,
    "model_cache_size": 1,
    "response_cache_size": 100,
    "ntokens": 512,
    "default_branch": "main",
    "task_branch_spec": r"task_branch:[\s]*([\p{L}\p{N}_\-\.\/]+)",
    "checkpoints": [
        {"name_or_path": "Qwen3-4B-Base", "trait": "coding"},
        {"name_or_path": "granite-3.3-2b-base", "trait": "coding"},
        {"name_or_path": "Qwen3-1.7B", "trait": "reasoning",
         "reasoning_start_tokens": [151667, 198], "reasoning_stop_tokens": [151668]},
    ],
    "templates": {
        "TestCase": {
            "params": {
                "source": r"source:[\s]*([\p{L}\p{N}_\-\.\/]+)(?:[,;]?[\s]*|[\n]?)",
                "destination": r"destination:[\s]*([\p{L}\p{N}_\-\.\/]+)(?:[,;]?[\s]*|[\n]?)",
            },
            "call_to_action": "Create unittest TestCase",
            "code_starter": "import unittest\n",
        }
    },
}


def leftovers(directory: Path) -> list[str]:
    """Return temporary files left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --- quantize ---------------------------------------------------------------------------------


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_quantize_a_real_gguf_and_it_loads_and_generates(convert_module: ModuleType,
                                                         tiny_gguf: Path, tmp_path: Path,
                                                         quant: str) -> None:
    dst = tmp_path / f"tiny-{quant}.gguf"
    meta = convert_module.quantize(tiny_gguf, dst, quant=quant.lower(), threads=2)
    assert meta.quantization == quant
    assert read_metadata(dst).quantization == quant
    assert dst.stat().st_size < tiny_gguf.stat().st_size * 0.6
    assert leftovers(tmp_path) == []
    result = convert_module.verify(dst, n_tokens=4, threads=2)
    assert len(result.tokens) == 4
    assert result.info.quantization == quant


def test_quantize_refuses_a_quantized_input_unless_asked(convert_module: ModuleType,
                                                         tiny_gguf: Path, tmp_path: Path) -> None:
    q4 = convert_module.quantize(tiny_gguf, tmp_path / "q4.gguf", quant="Q4_K_M").path
    with pytest.raises(ModelError, match="already quantized"):
        convert_module.quantize(q4, tmp_path / "q8.gguf", quant="Q8_0")
    meta = convert_module.quantize(q4, tmp_path / "q8.gguf", quant="Q8_0", allow_requantize=True)
    assert meta.quantization == "Q8_0"


@pytest.mark.parametrize(("quant", "message"), [("Q9_X", "unknown quantization"),
                                                ("IQ2_XS", "importance matrix")])
def test_quantize_rejects_unusable_types(convert_module: ModuleType, tiny_gguf: Path,
                                         tmp_path: Path, quant: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        convert_module.quantize(tiny_gguf, tmp_path / "out.gguf", quant=quant)
    assert not (tmp_path / "out.gguf").exists()


def test_quantize_checks_its_input(convert_module: ModuleType, tiny_gguf: Path,
                                   tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:-4096])
    with pytest.raises(ModelError, match="truncated"):
        convert_module.quantize(cut, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_quantize_never_overwrites_its_input(convert_module: ModuleType, tiny_gguf: Path,
                                             tmp_path: Path) -> None:
    src = tmp_path / "m.gguf"
    shutil.copyfile(tiny_gguf, src)
    with pytest.raises(ModelError, match="is the input"):
        convert_module.quantize(src, src)


# --- verify -----------------------------------------------------------------------------------


def test_verify_rejects_a_gguf_llama_cpp_cannot_load(convert_module: ModuleType,
                                                     tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "alien.gguf"
    writer = gguf.GGUFWriter(str(path), "no-such-architecture")
    writer.add_tensor("w", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelError, match=r"llama\.cpp cannot load"):
        convert_module.verify(path)


def test_verify_rejects_a_file_that_is_not_gguf(convert_module: ModuleType,
                                                tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ModelError, match="Git LFS pointer"):
        convert_module.verify(path)


# --- convert (with a stand-in for llama.cpp's converter) --------------------------------------


@pytest.fixture
def fake_llama_cpp(tmp_path: Path, tiny_gguf: Path) -> Path:
    """A directory laid out like a llama.cpp checkout whose converter copies a tiny F16 GGUF.

    The real converter needs torch and transformers; this one checks how it is called.
    """
    checkout = tmp_path / "llama.cpp"
    (checkout / "gguf-py").mkdir(parents=True)
    (checkout / "convert_hf_to_gguf.py").write_text(textwrap.dedent(f"""\
        import json, os, shutil, sys
        args = sys.argv[1:]
        checkpoint = args[0]
        out = args[args.index("--outfile") + 1]
        assert args[args.index("--outtype") + 1] == "f16"
        if os.path.exists(os.path.join(checkpoint, "FAIL")):
            sys.exit(3)
        with open(os.path.join(os.path.dirname(__file__), "called.json"), "w") as f:
            json.dump({{"args": args, "pythonpath": os.environ.get("PYTHONPATH", "")}}, f)
        shutil.copyfile({str(tiny_gguf)!r}, out)
        """))
    return checkout


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    """A Hugging Face checkpoint directory (its content matters only to the converter)."""
    path = tmp_path / "models" / "Tiny-Base"
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    return path


def test_convert_runs_the_checkouts_converter_then_quantizes(convert_module: ModuleType,
                                                              fake_llama_cpp: Path,
                                                              checkpoint_dir: Path) -> None:
    result = convert_module.convert_checkpoint(checkpoint_dir, llama_cpp_dir=fake_llama_cpp)
    assert result.gguf == checkpoint_dir.parent / "Tiny-Base-Q4_K_M.gguf"
    assert result.info.quantization == "Q4_K_M"
    assert result.f16 is None
    assert sorted(p.name for p in checkpoint_dir.parent.iterdir()) == [
        "Tiny-Base", "Tiny-Base-Q4_K_M.gguf"]
    called = json.loads((fake_llama_cpp / "called.json").read_text())
    assert called["args"][0] == str(checkpoint_dir)
    assert called["pythonpath"].split(":")[0] == str(fake_llama_cpp / "gguf-py")


def test_convert_keeps_the_f16_when_asked(convert_module: ModuleType, fake_llama_cpp: Path,
                                          checkpoint_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "tiny-q8.gguf"
    result = convert_module.convert_checkpoint(checkpoint_dir, llama_cpp_dir=fake_llama_cpp,
                                               out=out, quant="Q8_0", keep_f16=True)
    assert result.gguf == out and read_metadata(out).quantization == "Q8_0"
    assert result.f16 == checkpoint_dir.parent / "Tiny-Base-F16.gguf"
    assert read_metadata(result.f16).quantization == "F16"


def test_convert_failure_leaves_no_file(convert_module: ModuleType, fake_llama_cpp: Path,
                                        checkpoint_dir: Path) -> None:
    (checkpoint_dir / "FAIL").write_text("")
    with pytest.raises(ModelError, match="failed") as err:
        convert_module.convert_checkpoint(checkpoint_dir, llama_cpp_dir=fake_llama_cpp)
    assert "requirements-convert_hf_to_gguf.txt" in (err.value.hint or "")
    assert sorted(p.name for p in checkpoint_dir.parent.iterdir()) == ["Tiny-Base"]


def test_convert_needs_a_llama_cpp_checkout(convert_module: ModuleType, checkpoint_dir: Path,
                                            tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not a llama\.cpp checkout") as err:
        convert_module.convert_checkpoint(checkpoint_dir, llama_cpp_dir=tmp_path)
    assert "git clone" in (err.value.hint or "")


def test_convert_needs_a_checkpoint(convert_module: ModuleType, fake_llama_cpp: Path,
                                    tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no config\.json"):
        convert_module.convert_checkpoint(tmp_path, llama_cpp_dir=fake_llama_cpp)


def test_convert_rejects_an_unknown_type_before_converting(convert_module: ModuleType,
                                                           fake_llama_cpp: Path,
                                                           checkpoint_dir: Path) -> None:
    with pytest.raises(ModelError, match="unknown quantization"):
        convert_module.convert_checkpoint(checkpoint_dir, llama_cpp_dir=fake_llama_cpp,
                                          quant="Q3")
    assert not (fake_llama_cpp / "called.json").exists()


# --- migrate-config ---------------------------------------------------------------------------


def test_migrate_the_original_example_gives_configs_original_example(
        convert_module: ModuleType) -> None:
    migrated, migrations = convert_module.migrate_config(ORIGINAL_EXAMPLE)
    expected = json.loads((ROOT / "configs" / "original-example.json").read_text())
    assert migrated == expected
    assert [(m.original, m.gguf, m.name) for m in migrations] == [
        ("Qwen3-4B-Base", "Qwen3-4B-Base-Q4_K_M.gguf", "Qwen3-4B-Base"),
        ("granite-3.3-2b-base", "granite-3.3-2b-base-Q4_K_M.gguf", "granite-3.3-2b-base"),
        ("Qwen3-1.7B", "Qwen3-1.7B-Q4_K_M.gguf", "Qwen3-1.7B"),
    ]


def test_migrate_keeps_every_other_field_and_the_branch_names(convert_module: ModuleType,
                                                              tmp_path: Path) -> None:
    migrated, _ = convert_module.migrate_config(ORIGINAL_EXAMPLE, quant="q8_0")
    for key, value in ORIGINAL_EXAMPLE.items():
        if key != "checkpoints":
            assert migrated[key] == value
    for before, after in zip(ORIGINAL_EXAMPLE["checkpoints"], migrated["checkpoints"],
                             strict=True):
        assert {k: v for k, v in after.items() if k not in ("name_or_path", "name")} == {
            k: v for k, v in before.items() if k != "name_or_path"}
        assert after["name_or_path"] == f"{before['name_or_path']}-Q8_0.gguf"
    path = tmp_path / "migrated.json"
    path.write_text(json.dumps(migrated))
    # The original's branches were <basename of name_or_path>_<task>; they stay the same.
    assert [c.model_name for c in load_config(path).checkpoints] == [
        "Qwen3-4B-Base", "granite-3.3-2b-base", "Qwen3-1.7B"]


def test_migrate_with_a_mapping_and_nested_paths(convert_module: ModuleType) -> None:
    raw = {"checkpoints": [
        {"name_or_path": "ibm/granite-3.3-2b-base/", "trait": "coding"},
        {"name_or_path": "already.gguf", "trait": "coding"},
        {"name_or_path": "hf://org/repo/f.gguf", "trait": "coding"},
    ]}
    migrated, migrations = convert_module.migrate_config(
        raw, mapping={"ibm/granite-3.3-2b-base/": "granite-Q6_K.gguf"})
    assert migrated["checkpoints"][0] == {"name_or_path": "granite-Q6_K.gguf",
                                          "name": "granite-3.3-2b-base", "trait": "coding"}
    assert migrated["checkpoints"][1:] == raw["checkpoints"][1:]
    assert len(migrations) == 1


def test_migrate_rejects_a_mapping_for_an_unknown_checkpoint(convert_module: ModuleType) -> None:
    with pytest.raises(ConfigError, match="Qwen3-8B"):
        convert_module.migrate_config(ORIGINAL_EXAMPLE, mapping={"Qwen3-8B": "x.gguf"})


def test_migrate_rejects_what_is_not_a_config(convert_module: ModuleType) -> None:
    with pytest.raises(ConfigError, match="checkpoints"):
        convert_module.migrate_config({"models": []})


# --- the script's command line ----------------------------------------------------------------


def test_script_runs_as_a_file_and_verifies(tiny_gguf: Path) -> None:
    proc = subprocess.run([sys.executable, str(CONVERT_SCRIPT), "verify", str(tiny_gguf),
                           "--tokens", "3", "--threads", "2"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "verified" in proc.stderr and "3 tokens" in proc.stderr


def test_script_reports_errors_with_exit_1(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(CONVERT_SCRIPT), "verify",
                           str(tmp_path / "none.gguf")],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: model file") and "does not exist" in proc.stderr


def test_cli_quantize_writes_next_to_the_input(convert_module: ModuleType, tiny_gguf: Path,
                                               tmp_path: Path) -> None:
    src = tmp_path / "Tiny-F16.gguf"
    shutil.copyfile(tiny_gguf, src)
    result = runner.invoke(convert_module.app, ["quantize", str(src), "--quant", "Q8_0",
                                                "--no-verify"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "Tiny-Q8_0.gguf")
    assert read_metadata(tmp_path / "Tiny-Q8_0.gguf").quantization == "Q8_0"


def test_cli_migrate_config_writes_the_new_config(convert_module: ModuleType,
                                                  tmp_path: Path) -> None:
    original = tmp_path / "short_code_symergs.json"
    original.write_text(json.dumps(ORIGINAL_EXAMPLE))
    (tmp_path / "Qwen3-1.7B-Q4_K_M.gguf").write_bytes(b"")
    result = runner.invoke(convert_module.app, ["migrate-config", str(original),
                                                "--llama-cpp", "/src/llama.cpp"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "short_code_symergs-gguf.json"
    assert json.loads(written.read_text())["checkpoints"][2]["name"] == "Qwen3-1.7B"
    assert "Qwen3-1.7B -> Qwen3-1.7B-Q4_K_M.gguf (branch name Qwen3-1.7B; exists)" \
        in result.stderr
    assert (f"convert {tmp_path / 'Qwen3-4B-Base'} --llama-cpp /src/llama.cpp --quant Q4_K_M "
            f"--out {tmp_path / 'Qwen3-4B-Base-Q4_K_M.gguf'}") in result.stderr
    assert leftovers(tmp_path) == []


def test_cli_migrate_config_to_stdout(convert_module: ModuleType, tmp_path: Path) -> None:
    original = tmp_path / "c.json"
    original.write_text(json.dumps(ORIGINAL_EXAMPLE))
    result = runner.invoke(convert_module.app, ["migrate-config", str(original), "--out", "-",
                                                "--map", "Qwen3-1.7B=Qwen3-1.7B-Q8_0.gguf"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["checkpoints"][2]["name_or_path"] == "Qwen3-1.7B-Q8_0.gguf"
    assert not (tmp_path / "c-gguf.json").exists()


def test_cli_migrate_config_rejects_broken_json(convert_module: ModuleType,
                                                tmp_path: Path) -> None:
    original = tmp_path / "c.json"
    original.write_text('{"checkpoints": [')
    result = runner.invoke(convert_module.app, ["migrate-config", str(original)])
    assert isinstance(result.exception, ConfigError)


def test_tiny_writer_makes_f32_files_too(tmp_path: Path) -> None:
    import numpy as np

    path = write_tiny_gguf(tmp_path / "f32.gguf", dtype=np.float32, n_layer=1)
    assert read_metadata(path).quantization == "F32"


@pytest.mark.parametrize("script", [CONVERT_SCRIPT, ROOT / "scripts" / "finetune" / "finetune.py"])
def test_scripts_map_a_usage_error_to_exit_2(script: Path) -> None:
    # The scripts share one error mapping (run_app): a wrong option is a usage error, never a
    # traceback, whichever copy of click Typer raises it from.
    proc = subprocess.run([sys.executable, str(script), "--no-such-option"], capture_output=True,
                          text=True, check=False, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "No such option" in proc.stderr
    assert "Traceback" not in proc.stderr
