"""The guard of tests/conftest.py: it must see a model load with extra buffer types in a child.

On an Intel AMX machine such a load crashes at its first decode; everywhere else only this record
shows it. The children here load the real model and free it without decoding, so they run safely
on any CPU, with extra buffer types asked for or not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.load_guard import check_loads, forbidden_loads, load_guard

LOAD = (
    "import sys, llama_cpp\n"
    "params = llama_cpp.llama_model_default_params()\n"
    "params.use_extra_bufts = sys.argv[2] == 'on'\n"
    "model = llama_cpp.llama_model_load_from_file(sys.argv[1].encode(), params)\n"
    "assert model is not None\n"
    "llama_cpp.llama_model_free(model)\n"
)


def _load_in_child(model: Path, setting: str, log: Path) -> None:
    # The child imports the guard as sitecustomize (PYTHONPATH from the isolated environment);
    # only the log is its own, so the session's record of this test stays clean.
    env = {**os.environ, load_guard.ENV_LOG: str(log)}
    subprocess.run([sys.executable, "-c", LOAD, str(model), setting], env=env, check=True,
                   capture_output=True, timeout=120)


def test_the_guard_records_a_childs_load_and_fails_only_one_with_extra_buffers(
        gguf_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "loads.jsonl"
    _load_in_child(gguf_path, "off", log)
    _load_in_child(gguf_path, "on", log)
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # both loads, seen in processes the test only started
    [bad] = forbidden_loads(lines)
    assert bad["model"] == str(gguf_path) and bad["use_extra_bufts"] is True
    assert bad["pid"] != os.getpid()
    with pytest.raises(pytest.fail.Exception, match="where this machine's decision is off"):
        check_loads(lines, forbidden=True)
    check_loads(lines, forbidden=False)  # where extra buffer types are safe, the load is fine
    check_loads(lines[:1], forbidden=True)  # a load without them is fine everywhere
