"""An engine whose model runs in a worker process, so that a native crash is an error, not death.

llama.cpp runs native code that can kill the process (a segfault in a CPU kernel, an abort on a
broken model). ``WorkerEngine`` implements the ``Engine`` protocol in the parent and forwards each
call to ``engine.worker``: when the worker dies by a signal, the call raises a ``ModelError``
that names the model, the signal and what to try; the caller reports it, publishes nothing for
that model and goes on with the others. The next call starts a new worker.

Adding an engine method is one line here: ``_call`` for a method that returns a value,
``_stream`` for one that yields pieces (a batched generate, for example).

The cost (measured in ``docs/benchmarks.md``): a process start and the pickling of one message
per generated token.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from typing import IO, Any

from symergion import errors
from symergion.engine.base import EngineTotals, GenerationRequest, GenerationStats
from symergion.engine.extra_buffers import child_env
from symergion.engine.worker import EngineSpec, receive, send
from symergion.errors import ModelError

# How often a generation waiting for the next piece looks at its cancel event.
_POLL_SECONDS = 0.05
_EXIT_WAIT_SECONDS = 5.0


class WorkerCrashed(ModelError):
    """llama.cpp killed the worker process of a model."""


class WorkerEngine:
    """A model loaded in a worker process, used like any engine (one call at a time).

    Args:
        spec: the model to load; the worker starts (and loads it) now.
    """

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.model_name = spec.model_name
        self._stats = GenerationStats()
        self._batch_stats: list[GenerationStats] = []
        # The worker's running figures as of its last finished stream; a new worker after a
        # crash starts from zero, so what the earlier ones did is kept in ``_before``.
        self._totals = EngineTotals()
        self._before = EngineTotals()
        self.load_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._stderr: IO[bytes] | None = None
        # A stream was left before its end: its remaining pieces come before the next answer.
        self._unfinished = False
        self.info: dict[str, Any] = {}
        self._start()

    # -- Engine protocol -------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """Return the context length the model was loaded with."""
        return int(self.info["n_ctx"])

    @property
    def pid(self) -> int | None:
        """Return the worker's process id, None when no worker runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def stats(self) -> GenerationStats:
        """Return the figures of the last ``generate`` call."""
        self._finish_stream()
        return self._stats

    @property
    def batch_stats(self) -> list[GenerationStats]:
        """Return the figures of each request of the last ``generate_many`` call."""
        self._finish_stream()
        return self._batch_stats

    @property
    def totals(self) -> EngineTotals:
        """Return the running figures of every call, all workers of this engine together."""
        self._finish_stream()
        totals = self._before.copy()
        totals.add(self._totals)
        return totals

    def count_tokens(self, text: str) -> int:
        """Return how many tokens ``text`` encodes to."""
        return int(self._call("count_tokens", text))

    def token_text(self, token_ids: list[int]) -> str:
        """Return the text of token ids, special tokens rendered."""
        return str(self._call("token_text", list(token_ids)))

    def chat_prompt(self, user_message: str) -> str:
        """Render one user turn with the model's chat template (a ``ChatPrompt``)."""
        prompt: str = self._call("chat_prompt", user_message)
        return prompt

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        cancel: threading.Event | None = None,
        stable_prefix: int = 0,
        marks: tuple[int, ...] = (),
    ) -> Iterator[str]:
        """Yield the text of each generated token; see ``Engine.generate``."""
        return self._stream("generate", (prompt,), {"max_tokens": max_tokens,
                                                    "stable_prefix": stable_prefix,
                                                    "marks": tuple(marks)}, cancel)

    def generate_many(
        self,
        requests: Sequence[GenerationRequest],
        *,
        cancel: threading.Event | None = None,
        stopped: Collection[int] | None = None,
    ) -> Iterator[tuple[int, str]]:
        """Yield ``(request index, piece)`` for several prompts; see ``Engine.generate_many``.

        A stop the caller records in ``stopped`` reaches the worker before its next step.
        """
        return self._stream("generate_many", (list(requests),), {}, cancel, stopped)

    def close(self) -> None:
        """Stop the worker: closing its socket makes it exit."""
        sock, proc, stderr = self._sock, self._proc, self._stderr
        self._sock = self._proc = self._stderr = None
        self._unfinished = False
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if proc is not None:
            try:
                proc.wait(timeout=_EXIT_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if stderr is not None:
            stderr.close()

    # -- the worker ------------------------------------------------------------------------

    def _start(self) -> None:
        began = time.monotonic()  # the process start and imports are part of loading
        parent, child = socket.socketpair()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "symergion.engine.worker", str(child.fileno())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self._stderr, env=child_env(), close_fds=True,
            )
        except OSError as exc:
            parent.close()
            raise ModelError(f"cannot start a worker process for {self.model_name}: {exc}",
                             hint="check that the Python interpreter can be run again") from None
        finally:
            child.close()
        self._sock = parent
        # A new worker counts from zero: keep what the last one did.
        self._before.add(self._totals)
        self._totals = EngineTotals()
        self.info = self._answer(("load", self.spec), "loading")
        self.load_seconds += time.monotonic() - began

    def _ready(self) -> socket.socket:
        """Return the socket of a worker ready for a request, starting one if needed."""
        self._finish_stream()
        if self._sock is None:
            self._start()
        assert self._sock is not None
        return self._sock

    def _finish_stream(self) -> None:
        """Read what is left of a stream the caller abandoned (it ends at the next token)."""
        while self._unfinished and self._sock is not None:
            try:
                message = self._receive("finishing a generation")
            except ModelError:
                # The abandoned generation's crash concerns no caller: the next call starts anew.
                return
            if message[0] == "end":
                self._keep_stats(message[1], message[2])
            if message[0] in ("end", "error"):
                self._unfinished = False

    def _call(self, method: str, *args: Any) -> Any:
        return self._answer(("call", method, args, {}), f"running {method}")

    def _answer(self, request: tuple[Any, ...], doing: str) -> Any:
        sock = self._ready() if request[0] != "load" else self._sock
        assert sock is not None
        try:
            send(sock, request)
        except OSError:
            raise self._crashed(doing) from None
        message = self._receive(doing)
        if message[0] == "error":
            if request[0] == "load":
                self.close()
            raise _rebuild_error(message)
        return message[1]

    def _keep_stats(self, stats: GenerationStats | list[GenerationStats], totals: EngineTotals
                    ) -> None:
        self._totals = totals
        if isinstance(stats, list):
            self._batch_stats = stats
        else:
            self._stats = stats

    def _stream(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        cancel: threading.Event | None, stopped: Collection[int] | None = None,
    ) -> Iterator[Any]:
        sock = self._ready()
        try:
            send(sock, ("stream", method, args, kwargs))
        except OSError:
            raise self._crashed("generating") from None
        self._unfinished = True
        cancel_sent = False
        stops_sent: set[int] = set()
        try:
            while True:
                if cancel is not None and cancel.is_set() and not cancel_sent:
                    send(sock, ("cancel",))
                    cancel_sent = True
                if stopped and len(stopped) > len(stops_sent):
                    for index in set(stopped) - stops_sent:
                        send(sock, ("stop", index))
                        stops_sent.add(index)
                message = self._receive("generating", wait=_POLL_SECONDS if cancel else None)
                if message[0] == "piece":
                    yield message[1]
                elif message[0] == "end":
                    self._unfinished = False
                    self._keep_stats(message[1], message[2])
                    return
                elif message[0] == "error":
                    self._unfinished = False
                    raise _rebuild_error(message)
        finally:
            if self._unfinished and not cancel_sent and self._sock is sock:
                # Closed early or unwound by a stop: tell the worker to stop after this token.
                with contextlib.suppress(OSError):
                    send(sock, ("cancel",))

    def _receive(self, doing: str, wait: float | None = None) -> tuple[Any, ...]:
        """Return the worker's next message; ``("wait",)`` when ``wait`` seconds pass first."""
        sock = self._sock
        assert sock is not None
        if wait is not None and not select.select([sock], [], [], wait)[0]:
            return ("wait",)
        try:
            message = receive(sock)
        except OSError:
            message = None
        if message is None:
            raise self._crashed(doing)
        return message

    def _crashed(self, doing: str) -> ModelError:
        """Reap a worker that closed its end, and return the error that says what happened."""
        proc, stderr = self._proc, self._stderr
        self._stderr = None
        self.close()
        code = proc.wait() if proc is not None else 0
        lines: list[str] = []
        if stderr is not None:
            stderr.seek(0)
            lines = stderr.read().decode("utf-8", errors="replace").strip().splitlines()
            stderr.close()
        return worker_error(self.model_name, code, doing, lines[-1] if lines else "")


def worker_error(model: str, returncode: int, doing: str, stderr_tail: str = "") -> ModelError:
    """Return the error for a worker that ended with ``returncode`` while ``doing``."""
    hint = ("try SYMERGION_EXTRA_BUFFERS=off (or \"extra_buffers\": \"off\" in the config) and run "
            "the command again; `symergion doctor` shows what a bug report needs")
    if returncode < 0:
        signum = -returncode
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        description = signal.strsignal(signum) or name
        return WorkerCrashed(
            f"{model} crashed: llama.cpp died by {name} ({description}) while {doing}; "
            f"nothing was published for {model}",
            hint=hint,
        )
    detail = f": {stderr_tail}" if stderr_tail else ""
    return WorkerCrashed(
        f"the worker process of {model} exited with status {returncode} while {doing}{detail}; "
        f"nothing was published for {model}",
        hint="set SYMERGION_DEBUG=1 and run again; `symergion doctor` shows what a bug report needs",
    )


def _rebuild_error(message: tuple[Any, ...]) -> errors.SymergionError:
    """Turn a worker's error message back into the ``SymergionError`` it was."""
    _, name, text, hint = message
    kind = getattr(errors, name, None)
    if isinstance(kind, type) and issubclass(kind, errors.SymergionError):
        return kind(text, hint=hint)
    return ModelError(f"the worker of a model failed: {text}", hint=hint or
                      "set SYMERGION_DEBUG=1 and run again for details")
