"""`symergion doctor`: the report, with and without --json, and when parts are broken."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from symergion.cli.main import main
from symergion.config.schema import DEFAULT_CONFIG
from tests.needs import need_module


@pytest.fixture
def offline_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the probe: these tests look at the report, not at the machine's verdict."""
    monkeypatch.setenv("SYMERGION_EXTRA_BUFFERS", "off")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["doctor", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_report_has_every_part(capsys, offline_probe, tmp_path: Path, monkeypatch) -> None:
    need_module("llama_cpp", "pip install -e '.[demo]'")
    monkeypatch.chdir(tmp_path)  # not a repository: doctor needs none
    code, out, _err = run(capsys, "--json")
    data = json.loads(out)
    assert code == 0, data["problems"]
    assert data["cpu"]["model"] and data["cpu"]["cores"] >= 1
    assert "CPU :" in data["llama_cpp"]["system_info"] and data["llama_cpp"]["llama_cpp"]
    assert data["extra_buffers"]["decision"] == "off"
    assert data["extra_buffers"]["source"] == "SYMERGION_EXTRA_BUFFERS"
    assert "forced off by SYMERGION_EXTRA_BUFFERS" in data["extra_buffers"]["reason"]
    assert data["git"]["version"].startswith("git version")
    assert data["config"]["file"] is None
    (model,) = data["config"]["models"]
    assert model["name"] == "gemma3-270m" and model["status"] == "ok"
    cache = data["cache"]
    assert cache["writable"] is True and cache["path"].startswith(str(Path.home()))
    # The built-in templates verify unittest and pytest files, with coverage: both import here.
    assert data["tests"]["kinds"] == ["pytest", "unittest"]
    assert data["tests"]["pytest"] == pytest.__version__ and data["tests"]["coverage"]


def test_text_report(capsys, offline_probe) -> None:
    need_module("llama_cpp", "pip install -e '.[demo]'")
    code, out, _err = run(capsys)
    assert code == 0
    assert "extra buffers off (setting off from SYMERGION_EXTRA_BUFFERS)" in out
    assert "git           git version" in out
    assert "gemma3-270m" in out and "built-in default" in out
    assert "writable" in out


def test_a_missing_model_and_a_broken_cache_are_problems_with_fixes(
        capsys, offline_probe, tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"checkpoints": [{"name_or_path": "absent.gguf", "trait": "coding"}]}))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SYMERGION_CACHE_DIR", str(blocker / "cache"))
    code, out, _err = run(capsys, "--config", str(config), "--json")
    data = json.loads(out)
    assert code == 1
    (model,) = data["config"]["models"]
    assert model["status"] == "missing" and model["fix"]
    assert data["cache"]["writable"] is False
    assert any("absent.gguf" in p for p in data["problems"])
    assert any("SYMERGION_CACHE_DIR" in p for p in data["problems"])


def test_no_config_file_and_no_llama_cpp_still_give_a_report(
        capsys, tmp_path: Path, monkeypatch) -> None:
    import symergion.engine.native as native

    monkeypatch.setattr(native, "_llama_cpp", None)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    code, out, _err = run(capsys, "--config", str(tmp_path / "absent.json"))
    assert code == 1
    assert "llama.cpp     cannot be imported" in out
    assert "does not exist" in out  # the config's error, with its fix
    assert "git version" in out and "cache" in out
    assert "problem: llama_cpp cannot be imported" in out


def test_a_pytest_template_without_pytest_is_a_problem_with_its_fix(
        capsys, offline_probe, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pytest", None)  # makes `import pytest` fail, as uninstalled
    code, out, _err = run(capsys, "--json")
    data = json.loads(out)
    assert code == 1
    assert data["tests"]["pytest"] is None
    assert any(p.startswith("pytest cannot be imported") and p.endswith("pip install pytest")
               for p in data["problems"])
    # A config whose templates are all unittest's needs no pytest.
    config = tmp_path / "unittest-only.json"
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    del raw["templates"]["PyTest"]
    config.write_text(json.dumps(raw))
    code, out, _err = run(capsys, "--config", str(config), "--json")
    data = json.loads(out)
    assert data["tests"]["kinds"] == ["unittest"] and "pytest" not in data["tests"]
    assert not any(p.startswith("pytest") for p in data["problems"])

