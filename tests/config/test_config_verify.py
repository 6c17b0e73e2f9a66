"""The verify section of a template: defaults, the original format, and errors naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from symergion.config.environment import sandbox_mode
from symergion.config.load import load_config
from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG, VerifySpec
from symergion.errors import ConfigError


def template(**extra: Any) -> dict[str, Any]:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    entry = raw["templates"]["TestCase"]
    entry.pop("verify")
    entry.pop("guided")
    entry.update(extra)
    return raw


def test_built_in_default_verifies_and_prunes() -> None:
    spec = load_config().templates["TestCase"].verify
    assert spec == VerifySpec(command="python -m unittest {module}", timeout=60.0, coverage=True, runs=2,
                              prune=True, repair_rounds=1)
    assert spec.structured


def test_original_format_without_verify_does_not_verify() -> None:
    config = parse_config(template(), base_dir=Path("/"))
    assert config.templates["TestCase"].verify is None


def test_verify_section_defaults_and_values() -> None:
    config = parse_config(template(verify={}), base_dir=Path("/"))
    assert config.templates["TestCase"].verify == VerifySpec()
    custom = parse_config(template(verify={"command": "python -m pytest -q {destination}", "timeout": 5,
                                           "runs": 3, "coverage": False}), base_dir=Path("/"))
    spec = custom.templates["TestCase"].verify
    assert spec is not None
    assert (spec.command, spec.timeout, spec.runs, spec.structured) == (
        "python -m pytest -q {destination}", 5.0, 3, False)


@pytest.mark.parametrize(("verify", "field"), [
    ("yes", "templates.TestCase.verify"),
    ({"timeout": 0}, "templates.TestCase.verify.timeout"),
    ({"timeout": "60"}, "templates.TestCase.verify.timeout"),
    ({"runs": 0}, "templates.TestCase.verify.runs"),
    ({"runs": True}, "templates.TestCase.verify.runs"),
    ({"coverage": "yes"}, "templates.TestCase.verify.coverage"),
    ({"prune": 1}, "templates.TestCase.verify.prune"),
    ({"repair_rounds": -1}, "templates.TestCase.verify.repair_rounds"),
    ({"command": ""}, "templates.TestCase.verify.command"),
    ({"comand": "x"}, "templates.TestCase.verify.comand"),
])
def test_invalid_verify_names_the_field(verify: Any, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(template(verify=verify), base_dir=Path("/"))
    assert caught.value.message.startswith(f"{field}:")
    assert caught.value.hint


def test_sandbox_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sandbox_mode() == "bwrap"
    monkeypatch.setenv("SYMERGION_SANDBOX", "none")
    assert sandbox_mode() == "none"
    monkeypatch.setenv("SYMERGION_SANDBOX", "docker")
    with pytest.raises(ConfigError, match="SYMERGION_SANDBOX"):
        sandbox_mode()
