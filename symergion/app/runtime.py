"""Wire the core together for a real run: models, engines, response store, reconciler."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from symergion.cache import ResponseStore
from symergion.config.environment import cache_dir, extra_buffers_setting
from symergion.config.schema import LLAMA_KIND, REMOTE_KIND, Checkpoint, Config
from symergion.core.execute import EventSink, Reconciler
from symergion.engine.base import Engine
from symergion.engine.pool import EnginePool
from symergion.errors import ConfigError
from symergion.gitrepo import GitRepo

if TYPE_CHECKING:
    from symergion.engine.worker import EngineSpec


def model_path(config: Config, checkpoint: Checkpoint) -> Path:
    """Resolve a checkpoint to its GGUF file (never downloads)."""
    from symergion.models.resolve import resolve_model

    return resolve_model(checkpoint.name_or_path, config.models_dir)


def fingerprint(config: Config, checkpoint: Checkpoint) -> str:
    """Return the cache identity of a checkpoint's weights, as its kind defines it."""
    return engine_kind(checkpoint.kind).fingerprint(config, checkpoint)


def _llama_fingerprint(config: Config, checkpoint: Checkpoint) -> str:
    """Return the identity of a local checkpoint: model file and adapter (2 MiB each).

    A forced extra-buffer setting (on or off) is part of it.
    """
    from symergion.models.adapters import resolve_adapter
    from symergion.models.metadata import model_fingerprint
    from symergion.models.resolve import locate_model, resolve_model

    path = locate_model(checkpoint.name_or_path, config.models_dir)
    if not path.is_file():
        # The full check names the problem and its fix (missing file, directory, ...).
        path = resolve_model(checkpoint.name_or_path, config.models_dir)
    found = model_fingerprint(path)
    if checkpoint.lora is not None:
        lora = locate_model(checkpoint.lora, config.models_dir)
        if not lora.is_file():
            lora = resolve_adapter(checkpoint.lora, config.models_dir)
        found += f"+lora:{model_fingerprint(lora)}*{checkpoint.lora_scale!r}"
    # Repacked weights round differently, so a forced setting keys its own answers. "auto"
    # follows the machine's verdict, which changes only with the CPU or the llama.cpp build.
    setting, _source = extra_buffers_setting(config)
    if setting != "auto":
        found += f";extra_buffers={setting}"
    return found


def _remote_fingerprint(config: Config, checkpoint: Checkpoint) -> str:
    """Return the identity the model server gives the checkpoint's model."""
    from symergion.engine.remote import remote_fingerprint

    assert checkpoint.endpoint is not None  # the "remote" kind is a checkpoint with an endpoint
    return remote_fingerprint(checkpoint.endpoint, checkpoint.served_model)


def engine_spec(config: Config, checkpoint: Checkpoint) -> EngineSpec:
    """Return what loading a checkpoint takes: its GGUF, threads, sampling, extra buffers."""
    from symergion.engine.worker import EngineSpec

    setting, source = extra_buffers_setting(config)
    return EngineSpec(
        model_path=model_path(config, checkpoint),
        model_name=checkpoint.model_name,
        n_ctx=checkpoint.context_size,
        n_threads=config.threads(),
        sampling=checkpoint.sampling,
        state_dir=cache_dir() / "kv-states",
        extra_buffers=setting,
        extra_buffers_source=source,
        lora=adapter_path(config, checkpoint),
        lora_scale=checkpoint.lora_scale,
    )


def adapter_path(config: Config, checkpoint: Checkpoint) -> Path | None:
    """Resolve a checkpoint's LoRA adapter, checked to be a GGUF adapter (never downloads)."""
    from symergion.models.adapters import resolve_adapter

    return resolve_adapter(checkpoint.lora, config.models_dir) if checkpoint.lora else None


def load_engine(config: Config, checkpoint: Checkpoint) -> Engine:
    """Return the engine of a checkpoint, as its kind loads it."""
    return engine_kind(checkpoint.kind).load(config, checkpoint)


def _load_llama(config: Config, checkpoint: Checkpoint) -> Engine:
    """Load a checkpoint's GGUF with llama.cpp in a worker process of its own.

    A native crash then ends only the worker, and becomes a ``ModelError`` for this model.
    """
    from symergion.engine.proxy import WorkerEngine

    return WorkerEngine(engine_spec(config, checkpoint))


def _load_remote(config: Config, checkpoint: Checkpoint) -> Engine:
    """Return an engine on the checkpoint's model server (it asks the server on first use)."""
    from symergion.engine.remote import RemoteEngine

    assert checkpoint.endpoint is not None  # the "remote" kind is a checkpoint with an endpoint
    return RemoteEngine(checkpoint.endpoint, model_name=checkpoint.model_name,
                        served_model=checkpoint.served_model,
                        context_size=checkpoint.context_size, sampling=checkpoint.sampling)


@dataclass(frozen=True)
class EngineKind:
    """What one kind of checkpoint (``Checkpoint.kind``) needs: how to load its engine, and
    the identity of its weights that keys its answers in the response store."""

    load: Callable[[Config, Checkpoint], Engine]
    fingerprint: Callable[[Config, Checkpoint], str]


class EngineKinds:
    """The engines registered by checkpoint kind; ``load_engine`` and ``fingerprint`` ask it."""

    def __init__(self) -> None:
        self._kinds: dict[str, EngineKind] = {}

    def register(self, kind: str, entry: EngineKind) -> None:
        """Register the engine of ``kind``; a kind is registered once."""
        if kind in self._kinds:
            raise ValueError(f"the engine kind {kind!r} is already registered")
        self._kinds[kind] = entry

    def __call__(self, kind: str) -> EngineKind:
        """Return the engine of ``kind``; an unknown kind is a ``ConfigError`` naming the known ones."""
        entry = self._kinds.get(kind)
        if entry is None:
            known = ", ".join(repr(k) for k in sorted(self._kinds))
            raise ConfigError(f"no engine runs checkpoints of kind {kind!r} (known kinds: {known})",
                              hint="give the checkpoint a GGUF (name_or_path) or a model server "
                                   "(endpoint)")
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._kinds))


engine_kind = EngineKinds()
engine_kind.register(LLAMA_KIND, EngineKind(load=_load_llama, fingerprint=_llama_fingerprint))
engine_kind.register(REMOTE_KIND, EngineKind(load=_load_remote, fingerprint=_remote_fingerprint))


def build_reconciler(
    repo: GitRepo,
    config: Config,
    *,
    on_event: EventSink | None = None,
    on_load: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[Reconciler, EnginePool, ResponseStore]:
    """Return a reconciler on real models, with its engine pool and store (close both)."""
    pool = EnginePool(config.model_cache_size, lambda c: load_engine(config, c), on_load)
    store = ResponseStore(cache_dir() / "responses", config.response_cache_size)
    reconciler = Reconciler(
        repo,
        config,
        engines=pool,
        fingerprint=lambda c: fingerprint(config, c),
        store=store,
        on_event=on_event,
        cancel=cancel,
    )
    return reconciler, pool, store

