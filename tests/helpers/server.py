"""llama-cpp-python's own server on loopback, started on a free port and waited for."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from symergion.engine.serve import serve_command
from tests.needs import need_module

STARTUP_SECONDS = 120.0
N_CTX = 2048
THREADS = 2


@dataclass
class Server:
    """A running ``python -m llama_cpp.server`` and where it listens."""

    process: subprocess.Popen[bytes]
    endpoint: str
    log: Path

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)


def free_port() -> int:
    """Return a loopback port nothing listens on (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: Path, log_dir: Path, *extra: str) -> Server:
    """Start llama_cpp.server on ``model`` on a free loopback port and wait until it answers."""
    need_module("llama_cpp.server.app", "pip install -e '.[server]'")
    import httpx2

    port = free_port()
    log = log_dir / f"server-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            # Through the launcher that applies this machine's extra-buffer decision: plain
            # llama_cpp.server always uses extra buffer types, and dies where they crash.
            [*serve_command(), "--model", str(model),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX),
             "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS),
             "--verbose", "False",
             # Queue concurrent requests instead of cutting the running stream short.
             "--interrupt_requests", "False", *extra],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited at start:\n{log.read_text()[-2000:]}")
        try:
            if httpx2.get(f"{server.endpoint}/v1/models", timeout=2).status_code == 200:
                return server
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"llama_cpp.server did not answer within {STARTUP_SECONDS:.0f} s")


def endpoint_config(tmp_path: Path, endpoint: str) -> Path:
    """Write a config whose one coder (``remote``) runs on the model server at ``endpoint``."""
    path = tmp_path / "symergion.json"
    path.write_text(json.dumps({"checkpoints": [
        {"endpoint": endpoint, "name": "remote", "trait": "coding", "context_size": 2048}]}))
    return path

