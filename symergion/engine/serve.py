"""Run llama-cpp-python's OpenAI-compatible server with this machine's extra-buffer decision.

``python -m llama_cpp.server`` has no flag for llama.cpp's extra buffer types, and loads every
model with them: on the Intel machines where llama.cpp's AMX kernel faults, the server then dies
at its first request. ``python -m symergion.engine.serve --model M.gguf [server flags]`` decides
first, exactly as a local engine does (``SYMERGION_EXTRA_BUFFERS``, else the probe's cached
verdict; see ``engine.extra_buffers``), says the decision on stderr, then runs the server with
every flag as given.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path


def serve_command() -> list[str]:
    """Return the command that starts the server through this launcher (flags follow)."""
    return [sys.executable, "-m", "symergion.engine.serve"]


def main(argv: Sequence[str] | None = None) -> None:
    """Decide on extra buffer types for ``--model``, then run ``llama_cpp.server`` with ``argv``."""
    from symergion.engine.extra_buffers import llama_cpp_params, machine_decision
    from symergion.engine.native import load_llama_cpp
    from symergion.errors import SymergionError

    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model")
    known, _rest = parser.parse_known_args(args)
    if not known.model:
        sys.exit("symergion.engine.serve: give the GGUF with --model (it decides for that model)")
    try:
        decision = machine_decision(Path(known.model), llama=load_llama_cpp())
    except SymergionError as exc:
        sys.exit(f"symergion.engine.serve: {exc}")
    state = "on" if decision.use_extra_buffers else "off"
    print(f"symergion: extra buffer types {state}: {decision.reason}", file=sys.stderr, flush=True)
    sys.argv = ["llama_cpp.server", *args]
    with llama_cpp_params(decision.use_extra_buffers):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
