"""A model on a server: llama.cpp's ``llama-server`` or any OpenAI-compatible completions API.

Generation streams ``POST /v1/completions`` (server-sent events), so finishing, stop detection
and progress see one piece per token as they do with the local engine; closing the iterator
closes the connection, which stops the server's generation. llama.cpp's native
``/completion`` is not used: ``llama-server`` takes the same options on ``/v1/completions``
(``cache_prompt`` included, which it enables by default), and one code path serves every
server.

What the server tells about itself is used where it exists:

- the model's identity (``/v1/models``; ``/props`` on llama.cpp) makes the response-cache key,
  so a different served model never gets another model's cached responses;
- the context length (``/props``'s ``n_ctx``, vLLM's ``max_model_len``), capped by the
  checkpoint's ``context_size``; a server that reports none (``llama_cpp.server``) needs
  ``context_size``;
- token counts from ``/tokenize`` (llama.cpp) or ``/extras/tokenize`` (llama-cpp-python);
  other servers get an estimate of one token per ``ESTIMATE_BYTES_PER_TOKEN`` bytes, which
  overestimates code for common tokenizers so a budget never overruns the context.

Connection failures and 5xx answers are retried a few times with backoff, but never once a
piece was streamed: the caller has then already used it. A stream that ends without a finish
reason (the server died, or ``llama_cpp.server`` cut it for another request) is an error, not a
short answer. One engine may serve several threads at once: the HTTP client is thread-safe and
each generation keeps its state to itself (``stats`` is per thread).

The server's stream is not trusted to end: the client stops after ``max_tokens`` pieces
whatever the server sends, gives each request a total deadline, checks cancellation and the
deadline on every line (keep-alive comments included), refuses a line longer than
``MAX_LINE_BYTES`` instead of buffering it, and reports a redirect with its ``Location``.

The HTTP side (timeouts, retries, the event stream) is ``engine.wire``'s; what a server says
about itself is ``engine.server``'s.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import httpx2

from symergion.config.sampling import Sampling
from symergion.engine.base import EngineTotals, GenerationRequest, GenerationStats
from symergion.engine.server import ServerInfo, probe
from symergion.engine.wire import (
    ATTEMPTS,
    BACKOFF_SECONDS,
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    Overdue,
    Retryable,
    check_status,
    describe,
    events,
    mark_down,
    new_client,
    overdue_error,
    request_json,
    unreachable_error,
)
from symergion.errors import ModelError

ESTIMATE_BYTES_PER_TOKEN = 3
# A request's total time: the prompt's silence (READ_TIMEOUT) and this much per token asked for,
# which a CPU generating half a token per second still meets.
SECONDS_PER_TOKEN = 2.0


def remote_fingerprint(endpoint: str, served_model: str | None = None) -> str:
    """Return the cache identity of the model a server serves (one short request or two)."""
    with new_client(endpoint) as client:
        return probe(client, endpoint, served_model).fingerprint


class RemoteEngine:
    """A model served over HTTP; nothing is loaded or contacted until it is first used.

    Args:
        endpoint: the server's base URL (``http://host:port``).
        model_name: the checkpoint's name, for messages.
        served_model: the model to ask the server for; None takes the one it serves.
        context_size: the checkpoint's ``context_size``, a cap on what the server reports.
        sampling: sent with every request; the defaults decode greedily.
        transport: an httpx transport (tests).
        request_seconds: the most one request may take, whatever the server streams;
            default ``READ_TIMEOUT`` plus ``SECONDS_PER_TOKEN`` per token asked for.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        model_name: str,
        served_model: str | None = None,
        context_size: int | None = None,
        sampling: Sampling | None = None,
        transport: httpx2.BaseTransport | None = None,
        request_seconds: float | None = None,
    ) -> None:
        self.model_name = model_name
        self.request_seconds = request_seconds
        self.endpoint = endpoint
        self.served_model = served_model
        self.context_size = context_size
        self.sampling = sampling or Sampling()
        self._client = new_client(endpoint, transport=transport)
        self._lock = threading.Lock()
        self._info: ServerInfo | None = None
        # How this server tokenizes: "llama.cpp", "llama-cpp-python" or "estimate"; found once.
        self._tokenizer: str | None = None
        self._local = threading.local()
        self._batch_stats: list[GenerationStats] = []
        self._totals = EngineTotals()  # the server's own prompt work is not seen here
        self._closed = False

    # -- what the server says ------------------------------------------------------------

    @property
    def info(self) -> ServerInfo:
        """Return what the server says about its model (asked once per engine)."""
        with self._lock:
            if self._info is None:
                self._check_open()
                self._info = probe(self._client, self.endpoint, self.served_model)
            return self._info

    @property
    def fingerprint(self) -> str:
        """Return the cache identity of the served model."""
        return self.info.fingerprint

    @property
    def n_ctx(self) -> int:
        """Return the context length: the server's, capped by the checkpoint's context_size."""
        served = self.info.n_ctx
        if served is not None and self.context_size is not None:
            return min(served, self.context_size)
        if served is not None:
            return served
        if self.context_size is not None:
            return self.context_size
        raise ModelError(
            f"the model server {self.endpoint} does not report its context length",
            hint=f'set "context_size" in the checkpoint of {self.model_name} to the context '
            "the server was started with (llama_cpp.server: --n_ctx, default 2048)",
        )

    @property
    def stats(self) -> GenerationStats:
        """Return the figures of this thread's last ``generate`` call."""
        stats: GenerationStats | None = getattr(self._local, "stats", None)
        return stats if stats is not None else GenerationStats()

    @property
    def batch_stats(self) -> list[GenerationStats]:
        """Return the figures of each request of the last ``generate_many`` call."""
        return self._batch_stats

    @property
    def totals(self) -> EngineTotals:
        """Return the running figures of every call (the server's time as this side saw it)."""
        with self._lock:
            return self._totals.copy()

    # -- tokens --------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Return the server's token count of ``text`` (BOS included), or an estimate."""
        info = self.info
        mode = self._tokenizer
        if mode is None:
            mode = "llama.cpp" if info.kind == "llama.cpp" else "llama-cpp-python"
        if mode == "llama.cpp":
            tokens = request_json(self._client, self.endpoint, "POST", "/tokenize", missing_ok=True,
                                   body={"content": text, "add_special": True, "parse_special": True,
                                         "model": info.model_id})
        elif mode == "llama-cpp-python":
            tokens = request_json(self._client, self.endpoint, "POST", "/extras/tokenize",
                                   missing_ok=True, body={"input": text, "model": info.model_id})
        else:
            tokens = None
        if isinstance(tokens, dict) and isinstance(tokens.get("tokens"), list):
            self._tokenizer = mode
            return len(tokens["tokens"])
        # No tokenizer endpoint: estimate from now on (the answer will not change).
        self._tokenizer = "estimate"
        return len(text.encode("utf-8")) // ESTIMATE_BYTES_PER_TOKEN + 1

    def token_text(self, token_ids: list[int]) -> str:
        """Return the text of token ids, from the server's detokenize endpoint."""
        info = self.info
        if info.kind == "llama.cpp":
            answer = request_json(self._client, self.endpoint, "POST", "/detokenize",
                                   missing_ok=True, body={"tokens": token_ids})
            key = "content"
        else:
            answer = request_json(self._client, self.endpoint, "POST", "/extras/detokenize",
                                   missing_ok=True, body={"tokens": token_ids,
                                                          "model": info.model_id})
            key = "text"
        if isinstance(answer, dict) and isinstance(answer.get(key), str):
            return str(answer[key])
        raise ModelError(
            f"the model server {self.endpoint} cannot turn token ids into text",
            hint=f'give the checkpoint of {self.model_name} "reasoning_markers" '
            '(e.g. ["<think>", "</think>"]) instead of token ids',
        )

    def chat_prompt(self, user_message: str) -> str:
        """Render one user turn with the chat template the server publishes (llama.cpp)."""
        from symergion.engine.chat import render_chat_template

        info = self.info
        if info.chat_template is None:
            raise ModelError(
                f"the model server {self.endpoint} does not publish a chat template",
                hint='serve reasoning models with llama-server (it gives its template at '
                '/props), or run this checkpoint locally with "name_or_path" alone',
            )
        return render_chat_template(info.chat_template, user_message,
                                    bos_token=info.bos_token, eos_token=info.eos_token)

    # -- generation ----------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        cancel: threading.Event | None = None,
        stable_prefix: int = 0,
        marks: tuple[int, ...] = (),
    ) -> Iterator[str]:
        """Yield the text the server streams, piece by piece, until it finishes or cancel.

        ``stable_prefix`` and ``marks`` are not sent: a llama.cpp server keeps the KV cache of
        each slot's last prompt by itself (``cache_prompt``), which serves the same purpose.

        Raises:
            ModelError: the server is down, refuses the request, or the stream broke.
        """
        self._check_open()
        body = self._body(prompt, max_tokens)
        stats = GenerationStats()
        self._local.stats = stats
        return self._stream(body, stats, cancel)

    def generate_many(
        self,
        requests: Sequence[GenerationRequest],
        *,
        cancel: threading.Event | None = None,
        stopped: Collection[int] | None = None,
    ) -> Iterator[tuple[int, str]]:
        """Yield ``(request index, piece)`` for several prompts; see ``Engine.generate_many``.

        As many requests stream at once as the server has slots (llama-server's ``--parallel``,
        read from ``/props``); the server batches them. A server that does not say (such as
        llama_cpp.server, which cuts an older request for a newer one) gets one at a time.
        """
        self._check_open()
        slots = max(1, min(self.info.slots, len(requests)))
        stopped = stopped if stopped is not None else ()
        streams = _Streams(self, requests)
        stats, ends, pieces = streams.stats, streams.ends, streams.pieces
        self._batch_stats = stats
        for i in range(slots):
            threading.Thread(target=streams.serve, daemon=True, name=f"remote-{i}").start()
        remaining = len(requests)
        try:
            while remaining:
                if cancel is not None and cancel.is_set():
                    break
                try:
                    index, piece, error = pieces.get(timeout=0.1)
                except queue.Empty:
                    continue
                if piece is None:
                    remaining -= 1
                    if error is not None:
                        raise error
                    if not stats[index].stop:
                        stats[index].stop = ("stopped" if index in stopped else
                                             "max_tokens" if stats[index].generated_tokens
                                             >= requests[index].max_tokens else "eos")
                    continue
                if index in stopped or ends[index].is_set():
                    ends[index].set()
                    stats[index].stop = "stopped"
                    continue
                yield index, piece
                if index in stopped:
                    ends[index].set()
                    stats[index].stop = "stopped"
        finally:
            streams.close()

    def close(self) -> None:
        """Close the HTTP client (the server keeps running)."""
        self._closed = True
        self._client.close()

    # -- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ModelError(f"the engine of {self.model_name} is closed")

    def _body(self, prompt: str, max_tokens: int, seed: int | None = None,
              temperature: float | None = None) -> dict[str, Any]:
        info = self.info
        body: dict[str, Any] = {
            "model": info.model_id,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "stream": True,
            **self._sampling_fields(),
        }
        if seed is not None:
            body["seed"] = seed
        if temperature is not None:
            body["temperature"] = temperature
        if info.kind == "llama.cpp":
            body["cache_prompt"] = True
        return body

    def _sampling_fields(self) -> dict[str, Any]:
        s = self.sampling
        # Every setting is sent: servers have their own defaults (llama_cpp.server penalises
        # repeats with 1.1), and symergion's are the ones its cache keys promise.
        return {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
                "min_p": s.min_p, "repeat_penalty": s.repeat_penalty, "seed": s.seed}

    def _stream(
        self, body: dict[str, Any], stats: GenerationStats, cancel: threading.Event | None
    ) -> Iterator[str]:
        try:
            yield from self._attempts(body, stats, cancel)
        finally:
            with self._lock:
                self._totals.count(stats)

    def _attempts(
        self, body: dict[str, Any], stats: GenerationStats, cancel: threading.Event | None
    ) -> Iterator[str]:
        started = time.perf_counter()
        streamed = False
        paused = 0.0
        budget = int(body["max_tokens"])
        limit = self.request_seconds if self.request_seconds is not None \
            else READ_TIMEOUT + SECONDS_PER_TOKEN * budget
        deadline = time.monotonic() + limit
        for attempt in range(ATTEMPTS):
            if cancel is not None and cancel.is_set():
                return
            # No single read may wait past the deadline either.
            remaining = max(0.001, deadline - time.monotonic())
            timeout = httpx2.Timeout(min(READ_TIMEOUT, remaining), connect=min(CONNECT_TIMEOUT, remaining))
            try:
                with self._client.stream("POST", "/v1/completions", json=body, timeout=timeout) as response:
                    check_status(response, self.endpoint, streaming=True)
                    finished = False
                    for piece, finish in events(response, self.endpoint, deadline, cancel):
                        if piece:
                            stats.generated_tokens += 1
                            if not streamed:
                                streamed = True
                                stats.first_token_seconds = time.perf_counter() - started
                                stats.prompt_seconds = stats.first_token_seconds
                            before = time.perf_counter()
                            yield piece
                            paused += time.perf_counter() - before
                            if cancel is not None and cancel.is_set():
                                return
                            if stats.generated_tokens >= budget:
                                # The budget is the client's: a server that ignores max_tokens
                                # is cut here (closing the stream stops its generation).
                                finished = True
                                break
                        if finish:
                            finished = True
                    if cancel is not None and cancel.is_set():
                        return
                    if not finished:
                        problem = "the stream ended before the server said it was finished"
                        if streamed:
                            raise ModelError(
                                f"{problem} ({self.endpoint}, {self.model_name})",
                                hint="the server stopped or cut the request (llama_cpp.server "
                                "does so for a newer request unless started with "
                                "--interrupt_requests False); run sync again")
                        raise Retryable(problem)
                    stats.generation_seconds = (time.perf_counter() - started
                                                - stats.first_token_seconds - paused)
                    return
            except Overdue:
                raise overdue_error(self.endpoint, self.model_name, limit) from None
            except (httpx2.TransportError, Retryable) as exc:
                if isinstance(exc, httpx2.TimeoutException) and time.monotonic() >= deadline:
                    raise overdue_error(self.endpoint, self.model_name, limit) from None
                if streamed:
                    raise ModelError(
                        f"the model server {self.endpoint} broke off while streaming "
                        f"{self.model_name}'s answer: {describe(exc)}",
                        hint="nothing was published; check the server and run sync again",
                    ) from None
                if isinstance(exc, httpx2.ReadTimeout) or attempt + 1 == ATTEMPTS:
                    mark_down(self.endpoint, describe(exc))
                    raise unreachable_error(self.endpoint, describe(exc), attempt + 1) from None
                time.sleep(min(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)],
                               max(0.0, deadline - time.monotonic())))


class _Streams:
    """The requests of one ``generate_many`` call, streamed by a few threads into one queue.

    A thread puts ``(index, piece, None)`` for each piece and ``(index, None, error)`` when a
    request ends, so the caller's thread sees every piece and every failure in order.
    """

    def __init__(self, engine: RemoteEngine, requests: Sequence[GenerationRequest]) -> None:
        self._engine = engine
        self._requests = requests
        self.stats = [GenerationStats() for _ in requests]
        self.ends = [threading.Event() for _ in requests]
        self._done = threading.Event()  # the caller has gone: every thread ends
        self.pieces: queue.Queue[tuple[int, str | None, BaseException | None]] = queue.Queue()
        self._pending = iter(range(len(requests)))
        self._pending_lock = threading.Lock()

    def serve(self) -> None:
        """Stream one waiting request after another until none is left or the caller has gone."""
        while not self._done.is_set():
            with self._pending_lock:
                index = next(self._pending, None)
            if index is None:
                return
            request = self._requests[index]
            error: BaseException | None = None
            try:
                body = self._engine._body(request.prompt, request.max_tokens, request.seed,
                                          request.temperature)
                for piece in self._engine._stream(body, self.stats[index], self.ends[index]):
                    self.pieces.put((index, piece, None))
                    if self._done.is_set():
                        break
            except BaseException as exc:  # handed to the caller's thread
                error = exc
            self.pieces.put((index, None, error))

    def close(self) -> None:
        """End every thread's request; those that had not ended count as cancelled."""
        self._done.set()
        for end in self.ends:
            end.set()
        for stat in self.stats:
            if not stat.stop:
                stat.stop = "cancelled"
