"""The HTTP side of a remote model: timeouts, retries, server-sent events, error answers.

A request that fails before anything was streamed is retried a few times with backoff; an
endpoint that failed every attempt is remembered as down for ``DOWN_SECONDS``, so a pass with
many tasks does not wait for it again for each task. The event stream is not trusted to end:
``events`` checks cancellation and the deadline on every line (keep-alive comments included)
and refuses a line longer than ``MAX_LINE_BYTES`` instead of buffering it. Every failure
becomes a ``ModelError`` that names the endpoint and the fix.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2

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
# An event line holds one token's JSON; llama-server's longest (with probabilities) stays far below.
MAX_LINE_BYTES = 1024 * 1024
DOWN_HINT = ("start the server (e.g. `llama-server -m MODEL.gguf --host 0.0.0.0 --port PORT`), "
             "or fix the checkpoint's endpoint; the other models go on without it")

_down_lock = threading.Lock()
_down: dict[str, tuple[float, str]] = {}


class Retryable(Exception):
    """A failure that happened before anything was streamed and may pass on a new attempt."""


class Overdue(Exception):
    """The request's deadline passed while the server kept the stream open."""


def new_client(endpoint: str, *, transport: httpx2.BaseTransport | None = None) -> httpx2.Client:
    """Return an HTTP client for one endpoint, with symergion's timeouts."""
    return httpx2.Client(
        base_url=endpoint,
        timeout=httpx2.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
        transport=transport,
        headers={"User-Agent": "symergion"},
    )


def overdue_error(endpoint: str, model_name: str, limit: float) -> ModelError:
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


def events(response: httpx2.Response, endpoint: str, deadline: float = float("inf"),
            cancel: threading.Event | None = None) -> Iterator[tuple[str, bool]]:
    """Yield (text, finished) for each completion chunk of a server-sent event stream.

    Stops (yielding nothing more) once ``cancel`` is set, and raises once ``deadline`` (on
    ``time.monotonic``) passed; both are checked on every line, keep-alive comments included.
    """
    for line in _lines(response, endpoint):
        if cancel is not None and cancel.is_set():
            return
        if time.monotonic() >= deadline:
            raise Overdue
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


def request_json(
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
            check_status(response, endpoint, streaming=False)
            try:
                return response.json()
            except ValueError:
                raise ModelError(f"the model server {endpoint} answered {path} with something "
                                 "that is not JSON",
                                 hint="point the endpoint at an OpenAI-compatible completions "
                                 "server") from None
        except (httpx2.TransportError, Retryable) as exc:
            if isinstance(exc, httpx2.ReadTimeout) or attempt + 1 == ATTEMPTS:
                mark_down(endpoint, describe(exc))
                raise unreachable_error(endpoint, describe(exc), attempt + 1) from None
            time.sleep(BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)])
    raise AssertionError("unreachable")  # pragma: no cover


def check_status(response: httpx2.Response, endpoint: str, *, streaming: bool) -> None:
    """Raise Retryable for 5xx, ModelError for redirects and other errors; pass 2xx."""
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
        raise Retryable(f"HTTP {response.status_code}: {detail}")
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


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    kind = type(exc).__name__
    if isinstance(exc, Retryable):
        return text
    return f"{kind}: {text}" if text else kind


def unreachable_error(endpoint: str, reason: str, attempts: int) -> ModelError:
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return ModelError(f"the model server {endpoint} is not answering ({reason}; {tries})",
                      hint=DOWN_HINT)


def mark_down(endpoint: str, reason: str) -> None:
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
