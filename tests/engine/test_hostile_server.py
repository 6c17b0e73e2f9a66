"""The remote engine against a hostile server on loopback: its stream is not trusted to end.

The server is a small ``http.server`` in a thread of the test process; each test picks how it
misbehaves on ``POST /v1/completions``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psutil
import pytest

from symergion.engine.remote import RemoteEngine
from symergion.engine.wire import MAX_LINE_BYTES
from symergion.errors import ModelError


class Hostile(BaseHTTPRequestHandler):
    """Answers the probe like a one-model server, then streams as ``server.mode`` says."""

    protocol_version = "HTTP/1.1"
    server: HostileServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/v1/models"):
            self._json({"object": "list", "data": [{"id": "hostile", "owned_by": "me"}]})
        else:
            self._json({"error": "not found"}, status=404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        if not self.path.startswith("/v1/completions"):
            self._json({"error": "not found"}, status=404)
            return
        mode = self.server.mode
        if mode == "redirect":
            self.send_response(307)
            self.send_header("Location", "http://203.0.113.7:8080/v1/completions")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.server.streams += 1
        try:
            if mode == "endless":  # ignores max_tokens
                while not self.server.stopping.is_set():
                    self._event({"choices": [{"text": "x", "finish_reason": None}]})
                    self.server.sent += 1
            elif mode == "pings":  # keep-alive comments, never a token
                while not self.server.stopping.is_set():
                    self.wfile.write(b": ping\n\n")
                    self.wfile.flush()
                    self.server.sent += 1
                    time.sleep(0.02)
            elif mode == "huge":  # one line that never ends
                self.wfile.write(b"data: {\"choices\": [{\"text\": \"")
                block = b"x" * 65536
                while not self.server.stopping.is_set():
                    self.wfile.write(block)
                    self.server.sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: what each test expects

    def _event(self, chunk: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), Hostile)
        self.mode = mode
        self.sent = 0
        self.streams = 0
        self.stopping = threading.Event()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer("endless")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()


def engine(server: HostileServer, **kwargs: Any) -> RemoteEngine:
    return RemoteEngine(server.endpoint, model_name="hostile", context_size=2048, **kwargs)


def run_in_thread(fn: Any, seconds: float) -> tuple[bool, Any]:
    """Run fn in a thread; return (finished within ``seconds``, its result or exception)."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return (not thread.is_alive()), (box[0] if box else None)


def test_a_server_that_ignores_max_tokens_is_cut_at_the_budget(hostile: HostileServer) -> None:
    remote = engine(hostile)
    finished, pieces = run_in_thread(lambda: list(remote.generate("p", max_tokens=50)), 20)
    remote.close()
    assert finished, "the client kept reading a stream that never ends"
    assert pieces == ["x"] * 50


def test_keep_alive_pings_cannot_hold_a_request_past_its_deadline(hostile: HostileServer) -> None:
    hostile.mode = "pings"
    remote = engine(hostile, request_seconds=1.0)
    start = time.monotonic()
    finished, outcome = run_in_thread(lambda: list(remote.generate("p", max_tokens=50)), 20)
    remote.close()
    assert finished, "pings without tokens held the request"
    assert isinstance(outcome, ModelError) and "did not finish" in str(outcome), outcome
    assert time.monotonic() - start < 10
    assert hostile.sent > 0  # the server did ping


def test_cancel_is_seen_between_pings(hostile: HostileServer) -> None:
    hostile.mode = "pings"
    remote = engine(hostile)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    finished, outcome = run_in_thread(lambda: list(remote.generate("p", max_tokens=50, cancel=cancel)), 20)
    remote.close()
    assert finished, "cancel was not seen while the server only pinged"
    assert outcome == []


def test_a_line_without_end_is_an_error_not_memory(hostile: HostileServer) -> None:
    hostile.mode = "huge"
    remote = engine(hostile)
    before = psutil.Process().memory_info().rss
    finished, outcome = run_in_thread(lambda: list(remote.generate("p", max_tokens=50)), 30)
    remote.close()
    assert finished, "the client kept buffering one line"
    assert isinstance(outcome, ModelError) and "line longer than" in str(outcome), outcome
    assert hostile.sent < 64 * MAX_LINE_BYTES
    assert psutil.Process().memory_info().rss - before < 256 * 1024**2


def test_a_redirect_is_reported_with_its_location(hostile: HostileServer) -> None:
    hostile.mode = "redirect"
    remote = engine(hostile)
    with pytest.raises(ModelError) as caught:
        list(remote.generate("p", max_tokens=5))
    remote.close()
    assert "redirects (HTTP 307) to http://203.0.113.7:8080/v1/completions" in str(caught.value)
    assert caught.value.hint and "endpoint" in caught.value.hint
