"""Config loading and validation: every error names the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symergion.config.load import load_config
from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG, EMBEDDED_MODEL
from symergion.errors import ConfigError

ORIGINAL = {
    "idle_cores": 4,
    "model_cache_size": 1,
    "response_cache_size": 100,
    "ntokens": 512,
    "default_branch": "main",
    "task_branch_spec": "task_branch:[\\s]*([\\p{L}\\p{N}_\\-\\.\\/]+)",
    "checkpoints": [
        {"name_or_path": "Qwen3-4B-Base.gguf", "trait": "coding"},
        {"name_or_path": "granite-3.3-2b-base-Q4_K_M.gguf", "trait": "coding",
         "name": "granite-3.3-2b-base"},
        {"name_or_path": "Qwen3-1.7B.gguf", "trait": "reasoning",
         "reasoning_start_tokens": [151667, 198], "reasoning_stop_tokens": [151668]},
    ],
    "templates": DEFAULT_CONFIG["templates"],
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "cfg.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def test_original_format_is_accepted(tmp_path):
    config = load_config(write(tmp_path, ORIGINAL))
    assert [c.model_name for c in config.coders] == ["Qwen3-4B-Base", "granite-3.3-2b-base"]
    assert config.reasoners[0].reasoning_stop_tokens == (151668,)
    assert config.models_dir == tmp_path
    assert config.template_for("TestCase_capture_output").name == "TestCase"
    assert config.template_for("Feature_x") is None


def test_default_config_uses_embedded_model(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert [c.name_or_path for c in config.checkpoints] == [EMBEDDED_MODEL]
    assert config.coders[0].model_name == "gemma3-270m"


def test_env_and_option_pick_config_and_models(monkeypatch, tmp_path):
    path = write(tmp_path, ORIGINAL)
    monkeypatch.setenv("SYMERGION_CONFIG", str(path))
    monkeypatch.setenv("SYMERGION_MODELS", "/srv/models")
    config = load_config()
    assert config.source == path and config.models_dir == Path("/srv/models")
    assert load_config(path, tmp_path / "m").models_dir == tmp_path / "m"


def test_threads_leave_idle_cores(monkeypatch):
    config = parse_config({**ORIGINAL, "idle_cores": 1}, base_dir=Path("."))
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert config.threads() == 7
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert parse_config(ORIGINAL, base_dir=Path(".")).threads() == 1


def test_sampling_and_context(tmp_path):
    raw = {**ORIGINAL, "checkpoints": [{"name_or_path": "a.gguf", "trait": "coding",
                                        "context_size": 4096,
                                        "sampling": {"temperature": 0.2, "seed": 7}}]}
    [c] = parse_config(raw, base_dir=tmp_path).checkpoints
    assert c.context_size == 4096 and c.sampling.temperature == 0.2 and c.sampling.seed == 7


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ('{"idle_cores": 1,\n "ntokens": }', "cfg.json:2:13: invalid JSON"),
        ([1, 2], "(top level): expected a JSON object"),
        ({**ORIGINAL, "ntokens": "many"}, "ntokens: expected an integer"),
        ({**ORIGINAL, "colour": 1}, "colour: unknown field"),
        ({**ORIGINAL, "checkpoints": []}, "checkpoints: expected a non-empty list"),
        ({**ORIGINAL, "checkpoints": [{"trait": "coding"}]},
         "checkpoints[0].name_or_path: expected a non-empty string"),
        ({**ORIGINAL, "checkpoints": [{"name_or_path": "a.gguf", "trait": "code"}]},
         'checkpoints[0].trait: expected "coding" or "reasoning"'),
        ({**ORIGINAL, "checkpoints": [{"name_or_path": "a.gguf", "trait": "reasoning",
                                       "reasoning_markers": ["<think>", "</think>"]}]},
         "no checkpoint has the trait"),
        ({**ORIGINAL, "checkpoints": [{"name_or_path": "a.gguf", "trait": "coding"},
                                      {"name_or_path": "x/a.gguf", "trait": "coding"}]},
         "share the branch name 'a'"),
        ({**ORIGINAL, "checkpoints": [{"name_or_path": "a b.gguf", "trait": "coding"}]},
         "cannot be used in a branch name"),
        ({**ORIGINAL, "checkpoints": [{"name_or_path": "a.gguf", "trait": "coding"},
                                      {"name_or_path": "r.gguf", "trait": "reasoning"}]},
         "needs reasoning_stop_tokens or reasoning_markers"),
        ({**ORIGINAL, "checkpoints": [{"name_or_path": "a.gguf", "trait": "coding",
                                       "sampling": {"temp": 1}}]},
         "checkpoints[0].sampling.temp: unknown sampling setting"),
        ({**ORIGINAL, "task_branch_spec": "task_branch: ("}, "task_branch_spec: invalid regular"),
        ({**ORIGINAL, "templates": {"T": {"params": {"source": "s"}, "call_to_action": "x"}}},
         "templates.T.params: expected an object with at least a \"destination\""),
        ({**ORIGINAL, "templates": {"T": {"params": {"destination": "d:(.*)"}}}},
         "templates.T.call_to_action: expected a non-empty string"),
    ],
)
def test_invalid_config_names_the_field(tmp_path, data, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    assert fragment in str(info.value)
    assert info.value.hint, "every config error says how to fix it"


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.json")


def test_max_seconds_is_a_positive_number_or_no_limit(tmp_path):
    assert parse_config({}, base_dir=tmp_path).max_seconds is None
    assert parse_config({"max_seconds": 60}, base_dir=tmp_path).max_seconds == 60.0
    assert parse_config({"max_seconds": None}, base_dir=tmp_path).max_seconds is None
    for bad in (0, -5, "60", True, 1e400):
        with pytest.raises(ConfigError, match="max_seconds") as caught:
            parse_config({"max_seconds": bad}, base_dir=tmp_path)
        assert "60" in (caught.value.hint or "")
