"""Record every llama.cpp model load of a test process and its children, with its parameters.

Imported by each Python child of the tests through ``PYTHONPATH`` (as ``sitecustomize``), and by
tests/helpers/load_guard.py in the pytest process itself. Where ``SYMERGION_TEST_LOAD_LOG`` names a file,
each ``llama_model_load_from_file`` call appends one JSON line to it: the process, its command,
the model and whether extra buffer types were asked for. The conftest reads the lines a test
added and fails the test that loaded a model with extra buffer types on a machine where the
decision is off (the crash of llama.cpp's AMX kernel cannot happen on other machines, so this
record is how the rule is checked everywhere).

llama_cpp is wrapped when something imports it, never imported here: a child that loads no model
pays for one finder on ``sys.meta_path``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
from typing import Any

ENV_LOG = "SYMERGION_TEST_LOAD_LOG"
BINDINGS = "llama_cpp.llama_cpp"


def record(path: Any, params: Any) -> None:
    """Append one load to the log named by the environment (nothing without one)."""
    log = os.environ.get(ENV_LOG)
    if not log:
        return
    model = path.decode(errors="replace") if isinstance(path, bytes) else str(path)
    line = json.dumps({"pid": os.getpid(), "argv": sys.argv[:2], "model": model,
                       "use_extra_bufts": bool(params.use_extra_bufts)})
    with open(log, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def wrap(module: Any) -> None:
    """Wrap the bindings' model load (and the package's re-export of it) once."""
    real = module.llama_model_load_from_file
    if getattr(real, "_symergion_recorded", False):
        return

    def load(path: Any, params: Any) -> Any:
        record(path, params)
        return real(path, params)

    load._symergion_recorded = True  # type: ignore[attr-defined]
    module.llama_model_load_from_file = load
    package = sys.modules.get("llama_cpp")
    if package is not None and getattr(package, "llama_model_load_from_file", None) is real:
        package.llama_model_load_from_file = load


class _Finder(importlib.abc.MetaPathFinder):
    """Wrap the bindings right after they are imported."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != BINDINGS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_wrap(module: Any) -> None:
            exec_module(module)
            wrap(module)

        loader.exec_module = exec_and_wrap  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Wrap the bindings now if they are imported, else when they are."""
    if BINDINGS in sys.modules:
        wrap(sys.modules[BINDINGS])
    elif not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


if os.environ.get(ENV_LOG):
    install()
