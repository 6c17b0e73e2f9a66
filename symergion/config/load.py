"""Find a config, read its JSON and hand it to the parser: the one way symergion gets its config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from symergion.config.environment import ENV_CONFIG, config_path_setting, models_dir_setting
from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG, Config
from symergion.errors import ConfigError


def load_config(path: str | Path | None = None, models_dir: str | Path | None = None) -> Config:
    """Load and validate a config.

    Args:
        path: the JSON file; ``None`` takes ``SYMERGION_CONFIG``, else the built-in default.
        models_dir: where relative model paths resolve; ``None`` takes ``SYMERGION_MODELS``,
            else the config file's directory (the current directory for the built-in default).

    Raises:
        ConfigError: the file is missing or invalid; the message names the field and the fix.
    """
    if path is None:
        path = config_path_setting()
    if models_dir is None:
        models_dir = models_dir_setting()
    if path is None:
        raw: Any = json.loads(json.dumps(DEFAULT_CONFIG))
        source = None
        base = Path.cwd()
    else:
        source = Path(path).expanduser()
        raw = _read_json(source)
        base = source.resolve().parent
    override = Path(models_dir).expanduser() if models_dir is not None else None
    return parse_config(raw, base_dir=base, models_dir=override, source=source)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist",
            hint=f"pass an existing file with --config or {ENV_CONFIG}, or omit both "
            "to use the built-in default",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}",
            hint="fix the JSON syntax at that line and column (a missing comma is common)",
        ) from None
