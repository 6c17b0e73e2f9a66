"""The server launcher: llama-cpp-python's server loads its model with this machine's decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symergion.engine.remote import RemoteEngine
from tests.helpers.server import N_CTX, start_server


def test_the_launcher_keeps_the_server_out_of_extra_buffers_where_the_machine_says_off(
        gguf_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_env: Path) -> None:
    """Plain ``llama_cpp.server`` always loads with extra buffer types (fatal on an AMX machine)."""
    monkeypatch.setenv("SYMERGION_EXTRA_BUFFERS", "off")
    server = start_server(gguf_path, tmp_path)
    try:
        loads = [json.loads(line) for line in session_env.read_text().splitlines() if line]
        own = [load for load in loads if load["pid"] == server.process.pid]
        assert own and not any(load["use_extra_bufts"] for load in own)
        assert "extra buffer types off: forced off by SYMERGION_EXTRA_BUFFERS" in server.log.read_text()
        engine = RemoteEngine(server.endpoint, model_name="remote", context_size=N_CTX)
        assert "".join(engine.generate("def add(a, b):\n", max_tokens=4))
    finally:
        server.stop()


def test_the_launcher_needs_the_model_it_decides_for(tmp_path: Path) -> None:
    import subprocess

    from symergion.engine.serve import serve_command

    proc = subprocess.run([*serve_command(), "--port", "1"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode != 0 and "--model" in proc.stderr
