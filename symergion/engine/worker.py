"""The worker process that runs one llama.cpp model, and what it needs to load one.

``python -m symergion.engine.worker FD`` serves a ``LlamaEngine`` over the socket ``FD``: a
native crash in llama.cpp then kills only the worker, and the parent (``engine.proxy``) turns
it into an error that names the model. Messages are pickled tuples, each framed by its length:

- parent to worker: ``("call", method, args, kwargs)`` answered by ``("ok", value)``;
  ``("stream", method, args, kwargs)`` answered by ``("piece", text)`` ... then
  ``("end", stats, totals)`` (the engine's running ``EngineTotals``); ``("cancel",)`` ends
  the running stream at its next token. In a ``generate_many`` stream a piece is
  ``(index, text)``, the stats a list, and ``("stop", i)`` ends sequence ``i`` only.
- any request may be answered by ``("error", class name, message, hint)``.

The first request is ``("load", spec)``. The worker ignores SIGINT and SIGTERM: the parent
handles them (a Ctrl-C in a terminal reaches the whole process group) and then closes the
socket. The worker exits when the socket closes, which also happens when the parent dies.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symergion.config.sampling import Sampling
from symergion.engine.extra_buffers import CACHE_FILE, Decision, VerdictCache, resolve
from symergion.errors import SymergionError

if TYPE_CHECKING:
    from symergion.engine.llama import LlamaEngine

_HEADER = struct.Struct("!I")
# How long a worker whose parent is gone may take to finish its current llama.cpp call.
_ORPHAN_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class EngineSpec:
    """Everything needed to load one model, in this process or in a worker."""

    model_path: Path
    model_name: str
    n_threads: int
    sampling: Sampling = field(default_factory=Sampling)
    n_ctx: int | None = None
    state_dir: Path | None = None
    extra_buffers: str = "auto"  # auto | on | off
    extra_buffers_source: str = "default"
    lora: Path | None = None
    lora_scale: float = 1.0


def load_in_process(spec: EngineSpec) -> tuple[LlamaEngine, Decision]:
    """Decide on extra buffer types, then load the model in this process."""
    from symergion.config.environment import cache_dir
    from symergion.engine.llama import LlamaEngine
    from symergion.engine.native import load_llama_cpp

    decision = resolve(spec.extra_buffers, spec.extra_buffers_source, spec.model_path,
                       llama=load_llama_cpp(), cache=VerdictCache(cache_dir() / CACHE_FILE))
    engine = LlamaEngine(spec.model_path, model_name=spec.model_name, n_ctx=spec.n_ctx,
                         n_threads=spec.n_threads, sampling=spec.sampling,
                         state_dir=spec.state_dir, extra_buffers=decision.use_extra_buffers,
                         lora=spec.lora, lora_scale=spec.lora_scale)
    return engine, decision


def send(sock: socket.socket, message: tuple[Any, ...]) -> None:
    """Write one framed message."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def receive(sock: socket.socket) -> tuple[Any, ...] | None:
    """Read one framed message; return None at end of stream."""
    header = _read_exactly(sock, _HEADER.size)
    if header is None:
        return None
    body = _read_exactly(sock, _HEADER.unpack(header)[0])
    if body is None:
        return None
    message: tuple[Any, ...] = pickle.loads(body)
    return message


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def error_message(exc: BaseException) -> tuple[str, str, str, str | None]:
    """Encode an exception as a message the parent turns back into a ``SymergionError``."""
    if isinstance(exc, SymergionError):
        return ("error", type(exc).__name__, exc.message, exc.hint)
    return ("error", type(exc).__name__, f"{type(exc).__name__}: {exc}", None)


class _Requests:
    """Read requests on a thread, so that a cancel arrives while the main thread generates."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.cancel = threading.Event()
        # The stops of the latest stream: the parent sends no new stream before one has ended.
        self.stopped: set[int] = set()
        self.queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        threading.Thread(target=self._read, name="requests", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message = receive(self.sock)
            except (OSError, pickle.UnpicklingError, EOFError):
                message = None
            if message is None:
                # The parent closed the socket or died: stop the work and exit; a llama.cpp call
                # that never returns is cut short after a grace period.
                self.cancel.set()
                self.queue.put(None)
                # A daemon: a worker that ends normally must not wait for it.
                deadline = threading.Timer(_ORPHAN_GRACE_SECONDS, os._exit, (0,))
                deadline.daemon = True
                deadline.start()
                return
            if message[0] == "cancel":
                self.cancel.set()
            elif message[0] == "stop":
                self.stopped.add(message[1])
            else:
                if message[0] == "stream" and message[1] == "generate_many":
                    self.stopped = set()
                    message = (*message[:3], {**message[3], "stopped": self.stopped})
                self.queue.put(message)


def serve(sock: socket.socket) -> None:
    """Load the model the first request names, then answer requests until the socket closes."""
    requests = _Requests(sock)
    first = requests.queue.get()
    if first is None:
        return
    try:
        engine, decision = load_in_process(first[1])
    except Exception as exc:  # every failure must reach the parent
        send(sock, error_message(exc))
        return
    send(sock, ("ok", {"n_ctx": engine.n_ctx, "pid": os.getpid(), "decision": decision.as_dict(),
                       "buffer_types": list(engine.buffer_types)}))
    try:
        while (request := requests.queue.get()) is not None:
            kind, method, args, kwargs = request
            try:
                if kind == "stream":
                    requests.cancel.clear()
                    for piece in getattr(engine, method)(*args, cancel=requests.cancel, **kwargs):
                        send(sock, ("piece", piece))
                    stats = engine.batch_stats if method == "generate_many" else engine.stats
                    send(sock, ("end", stats, engine.totals))
                else:
                    send(sock, ("ok", getattr(engine, method)(*args, **kwargs)))
            except (OSError, pickle.PicklingError):
                raise
            except Exception as exc:  # reported to the parent, which raises it
                send(sock, error_message(exc))
    finally:
        engine.close()


def main(argv: list[str]) -> int:
    """Serve the socket whose file descriptor is ``argv[0]``."""
    # The parent stops on these and closes the socket; dying here first would turn every
    # Ctrl-C into a reported crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    with contextlib.suppress(OSError):
        serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
