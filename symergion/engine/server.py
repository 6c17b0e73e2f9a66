"""What a model server says about itself: the model it serves, its context, its chat template.

``probe`` asks ``/v1/models`` and, where it exists, llama.cpp's ``/props``; the answer is a
``ServerInfo`` whose identity makes the response-cache key, so a different served model never
gets another model's cached responses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import httpx2

from symergion.engine.wire import request_json
from symergion.errors import ModelError


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


def probe(client: httpx2.Client, endpoint: str, served_model: str | None = None) -> ServerInfo:
    """Ask a server which model it serves, its context length and (llama.cpp) chat template.

    Raises:
        ModelError: the server cannot be reached, answers with an error, or does not serve
            ``served_model``; the message names the endpoint and the fix.
    """
    models = request_json(client, endpoint, "GET", "/v1/models")
    listed = [m for m in models.get("data", []) if isinstance(m, dict) and "id" in m] \
        if isinstance(models, dict) else []
    if not listed:
        raise ModelError(f"the model server {endpoint} lists no model at /v1/models",
                         hint="load a model in the server, or fix the checkpoint's endpoint")
    chosen = _choose_model(endpoint, listed, served_model)
    model_id = str(chosen["id"])
    params = {"model": model_id} if len(listed) > 1 else None
    props = request_json(client, endpoint, "GET", "/props", params=params, missing_ok=True)
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
