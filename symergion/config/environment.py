"""Every setting symergion reads from the environment, each through one function here.

============================  ==========================  ==========================================
Variable                      Read by                     Meaning
============================  ==========================  ==========================================
``SYMERGION_CONFIG``          ``config_path_setting``     the config file; unset: the built-in one
``SYMERGION_MODELS``          ``models_dir_setting``      where relative model paths resolve; unset:
                                                          the config file's directory
``SYMERGION_CACHE_DIR``       ``cache_dir``               the cache directory (responses, verdicts)
``XDG_CACHE_HOME``            ``cache_dir``               the cache's parent when the above is unset
``SYMERGION_EXTRA_BUFFERS``   ``extra_buffers_setting``   ``auto``, ``on`` or ``off``: wins over the
                                                          config's ``extra_buffers``
``SYMERGION_SANDBOX``         ``sandbox_mode``            ``none`` runs generated tests without
                                                          bubblewrap; unset: ``bwrap``
``SYMERGION_DEBUG``           ``debug_enabled``           set (not 0, false, no): show tracebacks
``NO_COLOR``                  ``color_enabled``           set: no colour in the output
============================  ==========================  ==========================================

The CLI's ``--config`` and ``--models`` options take ``ENV_CONFIG`` and ``ENV_MODELS`` from here
as their environment variables too, so ``--help`` shows them. The variables the test suite and the
noxfile read (``SYMERGION_TEST_*``, ``SYMERGION_GOLDEN_UPDATE``, ``SYMERGION_LLAMA_CPP``, ...) steer
the tests alone; the package never reads them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from symergion.config.schema import EXTRA_BUFFERS_CHOICES
from symergion.errors import ConfigError

if TYPE_CHECKING:
    from symergion.config.schema import Config

ENV_CONFIG = "SYMERGION_CONFIG"
ENV_MODELS = "SYMERGION_MODELS"
ENV_CACHE = "SYMERGION_CACHE_DIR"
ENV_DEBUG = "SYMERGION_DEBUG"
ENV_EXTRA_BUFFERS = "SYMERGION_EXTRA_BUFFERS"
ENV_SANDBOX = "SYMERGION_SANDBOX"


def config_path_setting() -> str | None:
    """Return the config file ``SYMERGION_CONFIG`` names, or ``None`` (unset or empty)."""
    return os.environ.get(ENV_CONFIG) or None


def models_dir_setting() -> str | None:
    """Return the models directory ``SYMERGION_MODELS`` names, or ``None`` (unset or empty)."""
    return os.environ.get(ENV_MODELS) or None


def cache_dir() -> Path:
    """Return the cache directory: ``SYMERGION_CACHE_DIR``, else ``$XDG_CACHE_HOME/symergion``."""
    if env := os.environ.get(ENV_CACHE):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "symergion"


def extra_buffers_setting(config: Config | None = None) -> tuple[str, str]:
    """Return the extra-buffer setting and where it came from: the env var, the config, or neither.

    Raises:
        ConfigError: ``SYMERGION_EXTRA_BUFFERS`` is not one of auto, on, off.
    """
    env = os.environ.get(ENV_EXTRA_BUFFERS, "").strip().lower()
    if env:
        if env not in EXTRA_BUFFERS_CHOICES:
            raise ConfigError(
                f"{ENV_EXTRA_BUFFERS}={os.environ[ENV_EXTRA_BUFFERS]!r} is not one of "
                f"{', '.join(EXTRA_BUFFERS_CHOICES)}",
                hint=f"set {ENV_EXTRA_BUFFERS} to auto, on or off, or unset it",
            )
        return env, ENV_EXTRA_BUFFERS
    if config is not None and (config.source is not None or config.extra_buffers != "auto"):
        return config.extra_buffers, f"{config.source or 'config'}: extra_buffers"
    return "auto", "default"


def debug_enabled() -> bool:
    """Return whether ``SYMERGION_DEBUG`` asks for tracebacks."""
    return os.environ.get(ENV_DEBUG, "") not in ("", "0", "false", "no")


def sandbox_mode() -> str:
    """Return how candidates run: ``bwrap`` (default) or ``none`` (``SYMERGION_SANDBOX=none``)."""
    value = os.environ.get(ENV_SANDBOX, "").strip().lower() or "bwrap"
    if value not in ("bwrap", "none"):
        raise ConfigError(
            f"{ENV_SANDBOX}={value!r} is not a sandbox mode",
            hint=f"unset {ENV_SANDBOX} to use bubblewrap, or set it to \"none\" to run "
            "generated tests without isolation",
        )
    return value


def color_enabled() -> bool:
    """Return whether colour output is allowed (``NO_COLOR`` switches it off)."""
    return "NO_COLOR" not in os.environ
