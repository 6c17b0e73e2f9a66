"""`symergion models list|info|pull` at the CLI boundary."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symergion.cli.app import app
from symergion.errors import ConfigError, ModelError
from tests.helpers.gguf import tiny_vocab

runner = CliRunner()


@pytest.fixture
def models_dir(tmp_path: Path, tiny_gguf: Path, thinking_gguf: Path) -> Path:
    """A models directory with a config naming one present and one missing checkpoint."""
    directory = tmp_path / "models"
    directory.mkdir()
    shutil.copyfile(tiny_gguf, directory / "coder-Q4_K_M.gguf")
    shutil.copyfile(thinking_gguf, directory / "thinker.gguf")
    return directory


def write_config(directory: Path, checkpoints: list[dict[str, object]]) -> Path:
    path = directory / "symergion.json"
    path.write_text(json.dumps({"checkpoints": checkpoints}))
    return path


# --- list -------------------------------------------------------------------------------------


def test_list_shows_configured_and_found_models(models_dir: Path) -> None:
    config = write_config(models_dir, [
        {"name_or_path": "coder-Q4_K_M.gguf", "name": "coder", "trait": "coding"},
    ])
    result = runner.invoke(app, ["models", "list", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["BRANCH", "NAME", "TRAIT", "ARCH", "PARAMS", "QUANT", "CONTEXT",
                                "CHAT", "SIZE", "STATUS", "MODEL"]
    assert lines[1].split()[:9] == ["coder", "coding", "llama", "1.5M", "F16", "512", "no",
                                    "2.9", "MB"]
    assert lines[1].endswith("coder-Q4_K_M.gguf")
    assert any(line.endswith(str(models_dir / "thinker.gguf")) and " yes " in line
               for line in lines[2:])
    assert str(models_dir) in result.stderr


def test_list_json(models_dir: Path) -> None:
    config = write_config(models_dir, [
        {"name_or_path": "coder-Q4_K_M.gguf", "trait": "coding"},
    ])
    result = runner.invoke(app, ["models", "list", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["models_dir"] == str(models_dir)
    first, found = data["models"]
    assert first["branch_name"] == "coder-Q4_K_M"
    assert first["status"] == "ok"
    assert first["metadata"]["architecture"] == "llama"
    assert first["metadata"]["quantization"] == "F16"
    assert found["source"] == "models-dir"
    assert found["metadata"]["thinking"]["start"] == "<think>"


def test_list_flags_a_missing_checkpoint_and_exits_1(models_dir: Path) -> None:
    config = write_config(models_dir, [
        {"name_or_path": "coder-Q4_K_M.gguf", "trait": "coding"},
        {"name_or_path": "Qwen3-4B-Base-Q4_K_M.gguf", "name": "Qwen3-4B-Base", "trait": "coding"},
    ])
    result = runner.invoke(app, ["models", "list", "--config", str(config)])
    assert result.exit_code == 1
    assert "missing: Qwen3-4B-Base-Q4_K_M.gguf" in result.stdout
    assert f"problem: model file {models_dir / 'Qwen3-4B-Base-Q4_K_M.gguf'} does not exist" \
        in result.stdout
    assert "fix: put the GGUF file there" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("Qwen3-4B-Base"))
    assert " missing " in row


def test_list_uses_the_models_option(models_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"name_or_path": "coder-Q4_K_M.gguf", "trait": "coding"}])
    result = runner.invoke(app, ["models", "list", "--config", str(config),
                                 "--models", str(models_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["status"] == "ok"


def test_list_with_a_broken_config_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "symergion.json"
    config.write_text('{"checkpoints": [}')
    result = runner.invoke(app, ["models", "list", "--config", str(config)])
    assert isinstance(result.exception, ConfigError)


# --- info -------------------------------------------------------------------------------------


def test_info_summarises_a_reasoning_model(thinking_gguf: Path) -> None:
    result = runner.invoke(app, ["models", "info", str(thinking_gguf)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "architecture    llama" in out
    assert "chat template   yes" in out
    assert "bos token       1 '<s>'" in out
    vocab = tiny_vocab()
    start, stop, newline = vocab.index("<think>"), vocab.index("</think>"), vocab.index("<0x0A>")
    assert f"thinking        <think> (token {start}) … </think> (token {stop})" in out
    assert f"reasoning_start_tokens [{start}, {newline}], reasoning_stop_tokens [{stop}]" in out
    suggestion = json.loads(out[out.index("{"):])
    assert suggestion["trait"] == "reasoning"
    assert suggestion["reasoning_stop_tokens"] == [stop]


def test_info_json(tiny_gguf: Path) -> None:
    result = runner.invoke(app, ["models", "info", str(tiny_gguf), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"] == str(tiny_gguf)
    assert data["tokenizer"]["model"] == "llama"
    assert data["thinking"] is None
    assert data["suggested_checkpoint"]["trait"] == "coding"


def test_info_resolves_against_the_models_dir(models_dir: Path) -> None:
    result = runner.invoke(app, ["models", "info", "thinker.gguf", "--models", str(models_dir),
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"] == str(models_dir / "thinker.gguf")
    assert data["suggested_checkpoint"]["name_or_path"] == "thinker.gguf"


def test_info_on_a_broken_file_is_a_model_error(tmp_path: Path, tiny_gguf: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:-100])
    result = runner.invoke(app, ["models", "info", str(cut)])
    assert isinstance(result.exception, ModelError)
    assert "truncated" in str(result.exception)


# --- pull -------------------------------------------------------------------------------------


def test_pull_prints_the_path_and_a_config_entry(hf_cache: Path, tiny_gguf: Path,
                                                 cache_file: Callable[..., Path]) -> None:
    cached = cache_file(hf_cache, "org/tiny-GGUF", "tiny-Q4_K_M.gguf", tiny_gguf)
    result = runner.invoke(app, ["models", "pull", "org/tiny-GGUF"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(cached)
    assert '"name_or_path": "hf://org/tiny-GGUF/tiny-Q4_K_M.gguf"' in result.stderr


def test_pull_into_models_dir_json(hf_cache: Path, tiny_gguf: Path, tmp_path: Path,
                                   cache_file: Callable[..., Path]) -> None:
    cache_file(hf_cache, "org/tiny-GGUF", "tiny-Q8_0.gguf", tiny_gguf)
    models_dir = tmp_path / "models"
    result = runner.invoke(app, ["models", "pull", "org/tiny-GGUF", "--quant", "Q8_0",
                                 "--models", str(models_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["path"] == str(models_dir / "tiny-Q8_0.gguf")
    assert data["in_models_dir"] is True
    assert data["metadata"]["architecture"] == "llama"


def test_pull_offline_error_names_the_manual_path(hf_cache: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"name_or_path": "m.gguf", "trait": "coding"}])
    result = runner.invoke(app, ["models", "pull", "org/tiny-GGUF", "--file", "tiny-Q4_K_M.gguf",
                                 "--config", str(config)])
    assert isinstance(result.exception, ModelError)
    assert f"put it at {tmp_path / 'tiny-Q4_K_M.gguf'}" in str(result.exception)
