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
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import httpx2

from symergion.config import Sampling
from symergion.engine.base import EngineTotals, GenerationRequest, GenerationStats
from symergion.errors import ModelError

CONNECT_TIMEOUT = 5.0
# Prompt processing sends nothing until the first token: a long prompt on a big model on a
# CPU can take minutes before it, so only a silence this long means the server hangs.
READ_TIMEOUT = 600.0
# Attempts for requests that fail before anything was streamed, and the waits between them.
ATTEMPTS = 3
BACKOFF_SECONDS = (0.25, 0.75)
# After an endpoint failed every attempt, later calls within this window fail at once, so a
# pass with many tasks on a down server does not wait for it again for each task.
DOWN_SECONDS = 10.0
ESTIMATE_BYTES_PER_TOKEN = 3
# A request's total time: the prompt's silence (READ_TIMEOUT) and this much per token asked for,
# which a CPU generating half a token per second still meets.
SECONDS_PER_TOKEN = 2.0
# An event line holds one token's JSON; llama-server's longest (with probabilities) stays far below.
MAX_LINE_BYTES = 1024 * 1024
DOWN_HINT = ("start the server (e.g. `llama-server -m MODEL.gguf --host 0.0.0.0 --port PORT`), "
             "or fix the checkpoint's endpoint; the other models go on without it")

_down_lock = threading.Lock()
_down: dict[str, tuple[float, str]] = {}


class _Retryable(Exception):
    """A failure that happened before anything was streamed and may pass on a new attempt."""


class _Overdue(Exception):
    """The request's deadline passed while the server kept the stream open."""


@dataclass(frozen=True)
class ServerInfo:
    """What a server says about the model a checkpoint uses."""

    endpoint: str
    model_id: str
    kind: str  # "llama.cpp" | "openai"
    n_ctx: int | None
    identity: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    # How many requests the server decodes at once (llama-server's --parallel); 1 if unknown.
    slots: int = 1

    @property
    def fingerprint(self) -> str:
        """Return the cache identity of the served model."""
        blob = json.dumps(self.identity, sort_keys=True, separators=(",", ":"), default=str)
        return "remote:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()


def new_client(endpoint: str, *, transport: httpx2.BaseTransport | None = None) -> httpx2.Client:
    """Return an HTTP client for one endpoint, with symergion's timeouts."""
    return httpx2.Client(
        base_url=endpoint,
        timeout=httpx2.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
        transport=transport,
        headers={"User-Agent": "symergion"},
    )


def probe(client: httpx2.Client, endpoint: str, served_model: str | None = None) -> ServerInfo:
    """Ask a server which model it serves, its context length and (llama.cpp) chat template.

    Raises:
        ModelError: the server cannot be reached, answers with an error, or does not serve
            ``served_model``; the message names the endpoint and the fix.
    """
    models = _request_json(client, endpoint, "GET", "/v1/models")
    listed = [m for m in models.get("data", []) if isinstance(m, dict) and "id" in m] \
        if isinstance(models, dict) else []
    if not listed:
        raise ModelError(f"the model server {endpoint} lists no model at /v1/models",
                         hint="load a model in the server, or fix the checkpoint's endpoint")
    chosen = _choose_model(endpoint, listed, served_model)
    model_id = str(chosen["id"])
    params = {"model": model_id} if len(listed) > 1 else None
    props = _request_json(client, endpoint, "GET", "/props", params=params, missing_ok=True)
    if not isinstance(props, dict):
        props = {}
    is_llama_cpp = "default_generation_settings" in props or chosen.get("owned_by") == "llamacpp"
    settings = props.get("default_generation_settings")
    n_ctx = _positive_int(settings.get("n_ctx") if isinstance(settings, dict) else None) \
        or _positive_int(props.get("n_ctx")) or _positive_int(chosen.get("max_model_len"))
    identity: dict[str, Any] = {"id": model_id}
    for key in ("meta", "max_model_len", "root"):
        if chosen.get(key) is not None:
            identity[key] = chosen[key]
    if props.get("model_path"):
        identity["model_path"] = props["model_path"]
    if len(identity) == 1:
        # Only a name to go by (llama_cpp.server gives the path it loaded, or an alias): two
        # servers could give the same name to different models, so the address counts too.
        identity["endpoint"] = endpoint
    template = props.get("chat_template")
    return ServerInfo(
        endpoint=endpoint,
        model_id=model_id,
        kind="llama.cpp" if is_llama_cpp else "openai",
        n_ctx=n_ctx,
        identity=identity,
        chat_template=template if isinstance(template, str) and template else None,
        bos_token=str(props.get("bos_token") or ""),
        eos_token=str(props.get("eos_token") or ""),
        slots=_positive_int(props.get("total_slots")) or 1,
    )


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
            tokens = _request_json(self._client, self.endpoint, "POST", "/tokenize", missing_ok=True,
                                   body={"content": text, "add_special": True, "parse_special": True,
                                         "model": info.model_id})
        elif mode == "llama-cpp-python":
            tokens = _request_json(self._client, self.endpoint, "POST", "/extras/tokenize",
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
            answer = _request_json(self._client, self.endpoint, "POST", "/detokenize",
                                   missing_ok=True, body={"tokens": token_ids})
            key = "content"
        else:
            answer = _request_json(self._client, self.endpoint, "POST", "/extras/detokenize",
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
        stats = [GenerationStats() for _ in requests]
        self._batch_stats = stats
        ends = [threading.Event() for _ in requests]
        done = threading.Event()  # the caller has gone: every thread ends
        pieces: queue.Queue[tuple[int, str | None, BaseException | None]] = queue.Queue()
        pending = iter(range(len(requests)))
        pending_lock = threading.Lock()

        def serve() -> None:
            while not done.is_set():
                with pending_lock:
                    index = next(pending, None)
                if index is None:
                    return
                request = requests[index]
                error: BaseException | None = None
                try:
                    body = self._body(request.prompt, request.max_tokens, request.seed,
                                      request.temperature)
                    for piece in self._stream(body, stats[index], ends[index]):
                        pieces.put((index, piece, None))
                        if done.is_set():
                            break
                except BaseException as exc:  # handed to the caller's thread
                    error = exc
                pieces.put((index, None, error))

        threads = [threading.Thread(target=serve, daemon=True, name=f"remote-{i}")
                   for i in range(slots)]
        for thread in threads:
            thread.start()
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
            done.set()
            for end in ends:
                end.set()
            for stat in stats:
                if not stat.stop:
                    stat.stop = "cancelled"

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
                    _check_status(response, self.endpoint, streaming=True)
                    finished = False
                    for piece, finish in _events(response, self.endpoint, deadline, cancel):
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
                        raise _Retryable(problem)
                    stats.generation_seconds = (time.perf_counter() - started
                                                - stats.first_token_seconds - paused)
                    return
            except _Overdue:
                raise _overdue(self.endpoint, self.model_name, limit) from None
            except (httpx2.TransportError, _Retryable) as exc:
                if isinstance(exc, httpx2.TimeoutException) and time.monotonic() >= deadline:
                    raise _overdue(self.endpoint, self.model_name, limit) from None
                if streamed:
                    raise ModelError(
                        f"the model server {self.endpoint} broke off while streaming "
                        f"{self.model_name}'s answer: {_describe(exc)}",
                        hint="nothing was published; check the server and run sync again",
                    ) from None
                if isinstance(exc, httpx2.ReadTimeout) or attempt + 1 == ATTEMPTS:
                    _mark_down(self.endpoint, _describe(exc))
                    raise _unreachable(self.endpoint, _describe(exc), attempt + 1) from None
                time.sleep(min(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)],
                               max(0.0, deadline - time.monotonic())))


def _overdue(endpoint: str, model_name: str, limit: float) -> ModelError:
    return ModelError(f"the model server {endpoint} did not finish {model_name}'s answer within "
                      f"{limit:.0f} s", hint="the server keeps the stream open without ending it; "
                      "check that it honours max_tokens, or restart it, and run sync again")


def _lines(response: httpx2.Response, endpoint: str) -> Iterator[str]:
    """Yield the lines of a response body, refusing one longer than ``MAX_LINE_BYTES``."""
    pending = b""
    for chunk in response.iter_bytes():
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
        if not complete:
            yield ""  # a chunk without an end of line: the caller still checks the time
        if len(pending) > MAX_LINE_BYTES:
            raise ModelError(f"the model server {endpoint} sent a line longer than "
                             f"{MAX_LINE_BYTES // 1024} KiB",
                             hint="point the endpoint at an OpenAI-compatible completions server")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")


def _events(response: httpx2.Response, endpoint: str, deadline: float = float("inf"),
            cancel: threading.Event | None = None) -> Iterator[tuple[str, bool]]:
    """Yield (text, finished) for each completion chunk of a server-sent event stream.

    Stops (yielding nothing more) once ``cancel`` is set, and raises once ``deadline`` (on
    ``time.monotonic``) passed; both are checked on every line, keep-alive comments included.
    """
    for line in _lines(response, endpoint):
        if cancel is not None and cancel.is_set():
            return
        if time.monotonic() >= deadline:
            raise _Overdue
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), event names
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            chunk = json.loads(payload)
        except json.JSONDecodeError:
            raise ModelError(f"the model server {endpoint} sent an event that is not JSON: "
                             f"{payload[:120]!r}",
                             hint="point the endpoint at an OpenAI-compatible completions "
                             "server") from None
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            raise ModelError(f"the model server {endpoint} failed: {_error_text(chunk)}",
                             hint="check the server's log; run sync again when it is fixed")
        choices = chunk.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        text = choice.get("text")
        yield (text if isinstance(text, str) else ""), bool(choice.get("finish_reason"))


def _request_json(
    client: httpx2.Client,
    endpoint: str,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    missing_ok: bool = False,
) -> Any:
    """Return a JSON answer, retrying connection failures and 5xx; None if missing and allowed."""
    _check_not_down(endpoint)
    for attempt in range(ATTEMPTS):
        try:
            response = client.request(method, path, json=body, params=params)
            if missing_ok and response.status_code in (404, 405, 501):
                return None
            _check_status(response, endpoint, streaming=False)
            try:
                return response.json()
            except ValueError:
                raise ModelError(f"the model server {endpoint} answered {path} with something "
                                 "that is not JSON",
                                 hint="point the endpoint at an OpenAI-compatible completions "
                                 "server") from None
        except (httpx2.TransportError, _Retryable) as exc:
            if isinstance(exc, httpx2.ReadTimeout) or attempt + 1 == ATTEMPTS:
                _mark_down(endpoint, _describe(exc))
                raise _unreachable(endpoint, _describe(exc), attempt + 1) from None
            time.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
    raise AssertionError("unreachable")  # pragma: no cover


def _check_status(response: httpx2.Response, endpoint: str, *, streaming: bool) -> None:
    """Raise _Retryable for 5xx, ModelError for redirects and other errors; pass 2xx."""
    if 300 <= response.status_code < 400:
        # Redirects are not followed: the request would go to an address the checkpoint never named.
        location = response.headers.get("location", "")[:300] or "no Location given"
        raise ModelError(f"the model server {endpoint} redirects (HTTP {response.status_code}) "
                         f"to {location}",
                         hint="set the checkpoint's endpoint to the server's own address")
    if response.status_code < 400:
        return
    if streaming:
        response.read()
    detail = _error_text(_json_or_text(response))
    if response.status_code >= 500:
        raise _Retryable(f"HTTP {response.status_code}: {detail}")
    hint = "check the checkpoint's endpoint and sampling settings"
    if response.status_code in (401, 403):
        hint = "the server wants an API key; run it without --api-key on a trusted network"
    elif response.status_code == 400 and "context" in detail.lower():
        hint = "raise the server's context (-c) and the checkpoint's context_size, or shorten " \
               "the source file"
    raise ModelError(f"the model server {endpoint} refused the request "
                     f"(HTTP {response.status_code}): {detail}", hint=hint)


def _json_or_text(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_text(answer: Any) -> str:
    if isinstance(answer, dict):
        error = answer.get("error", answer.get("detail", answer))
        if isinstance(error, dict):
            return str(error.get("message") or error)[:300]
        return str(error)[:300]
    return str(answer).strip()[:300]


def _choose_model(endpoint: str, listed: list[dict[str, Any]], wanted: str | None) -> dict[str, Any]:
    ids = [str(m["id"]) for m in listed]
    if wanted is None:
        if len(listed) == 1:
            return listed[0]
        raise ModelError(f"the model server {endpoint} serves several models: {', '.join(ids)}",
                         hint='set the checkpoint\'s "name_or_path" to the one to use')

    def names(text: str) -> set[str]:
        name = PurePosixPath(text).name
        return {text, name, name.removesuffix(".gguf")}

    for model in listed:
        if wanted == model["id"]:
            return model
    for model in listed:
        if names(wanted) & names(str(model["id"])):
            return model
    raise ModelError(f"the model server {endpoint} does not serve {wanted!r}; it serves "
                     f"{', '.join(ids)}",
                     hint='set the checkpoint\'s "name_or_path" to one of those, or start the '
                     "server with that model")


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    kind = type(exc).__name__
    if isinstance(exc, _Retryable):
        return text
    return f"{kind}: {text}" if text else kind


def _unreachable(endpoint: str, reason: str, attempts: int) -> ModelError:
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return ModelError(f"the model server {endpoint} is not answering ({reason}; {tries})",
                      hint=DOWN_HINT)


def _mark_down(endpoint: str, reason: str) -> None:
    with _down_lock:
        _down[endpoint] = (time.monotonic(), reason)


def _check_not_down(endpoint: str) -> None:
    with _down_lock:
        entry = _down.get(endpoint)
        if entry is not None and time.monotonic() - entry[0] >= DOWN_SECONDS:
            del _down[endpoint]
            entry = None
    if entry is not None:
        raise ModelError(f"the model server {endpoint} is not answering ({entry[1]}; it "
                         f"failed less than {DOWN_SECONDS:.0f} s ago)", hint=DOWN_HINT)
