"""The rule every model load must keep: no extra buffer types where the machine's decision is off.

The guard itself is tests/load_guard/sitecustomize.py, which children import through
``PYTHONPATH``; the pytest process loads the same file once, here, as ``load_guard``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

# Extra buffer types: what the machine decides, and the rule every model load must keep.
LOAD_GUARD = Path(__file__).parent.parent / "load_guard"
# "off" makes this machine act as an Intel AMX machine whose probe crashed (the verdict is
# seeded as a crash), so that the guard shows, on any CPU, every load that would crash there.
ENV_SIMULATE = "SYMERGION_TEST_EXTRA_BUFFERS"
SIMULATE_CRASH = os.environ.get(ENV_SIMULATE, "").strip().lower() == "off"
_spec = importlib.util.spec_from_file_location("symergion_test_load_guard", LOAD_GUARD / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
load_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load_guard)


def session_verdicts() -> Path:
    """The session cache's extra-buffer verdicts (``session_env``)."""
    from symergion.engine.extra_buffers import CACHE_FILE

    return Path(os.environ["SYMERGION_SESSION_CACHE"]) / CACHE_FILE


def extra_buffers_forbidden() -> bool:
    """Return whether the session's verdict keeps models out of extra buffer types."""
    from symergion.engine.extra_buffers import VerdictCache

    entries = VerdictCache(session_verdicts())._read().values()
    return any(isinstance(e, dict) and e.get("use_extra_buffers") is False for e in entries)


def forbidden_loads(lines: list[str]) -> list[dict[str, Any]]:
    """Return the loads with extra buffer types, except the probe's own (it exists to try them)."""
    loads = [json.loads(line) for line in lines if line.strip()]
    return [load for load in loads if load["use_extra_bufts"]
            and not str(load["argv"][0]).endswith(os.path.join("engine", "probe.py"))]


def check_loads(lines: list[str], forbidden: bool | None = None) -> None:
    """Fail when a model was loaded with extra buffer types where the machine's decision is off.

    ``forbidden`` says whether the decision is off; by default the session's verdict says it.
    """
    if forbidden is None:
        forbidden = extra_buffers_forbidden()
    if forbidden and (loads := forbidden_loads(lines)):
        pytest.fail("loaded a model with extra buffer types where this machine's decision is off "
                    f"(it would crash on an Intel AMX machine): {loads}", pytrace=False)
