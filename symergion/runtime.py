"""Wire the core together for a real run: models, engines, response store, reconciler."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from symergion.cache import ResponseStore
from symergion.config import Checkpoint, Config, cache_dir
from symergion.engine.base import Engine
from symergion.engine.pool import EnginePool
from symergion.gitrepo import GitRepo
from symergion.reconcile import EventSink, Reconciler


def model_path(config: Config, checkpoint: Checkpoint) -> Path:
    """Resolve a checkpoint to its GGUF file (never downloads)."""
    from symergion.models import resolve_model

    return resolve_model(checkpoint.name_or_path, config.models_dir)


def fingerprint(config: Config, checkpoint: Checkpoint) -> str:
    """Return the cache identity of a checkpoint's model file (reads 2 MiB, parses nothing).

    For a checkpoint on a model server it is the identity the server gives its model.
    """
    if checkpoint.endpoint is not None:
        from symergion.engine.remote import remote_fingerprint

        return remote_fingerprint(checkpoint.endpoint, checkpoint.served_model)
    from symergion.models import locate_model, model_fingerprint, resolve_model

    path = locate_model(checkpoint.name_or_path, config.models_dir)
    if not path.is_file():
        # The full check names the problem and its fix (missing file, directory, ...).
        path = resolve_model(checkpoint.name_or_path, config.models_dir)
    return model_fingerprint(path)


def load_engine(config: Config, checkpoint: Checkpoint) -> Engine:
    """Load a checkpoint's GGUF with llama.cpp (imports llama_cpp only now), or its server."""
    if checkpoint.endpoint is not None:
        from symergion.engine.remote import RemoteEngine

        return RemoteEngine(checkpoint.endpoint, model_name=checkpoint.model_name,
                            served_model=checkpoint.served_model,
                            context_size=checkpoint.context_size, sampling=checkpoint.sampling)
    from symergion.engine.llama import LlamaEngine

    return LlamaEngine(
        model_path(config, checkpoint),
        model_name=checkpoint.model_name,
        n_ctx=checkpoint.context_size,
        n_threads=config.threads(),
        sampling=checkpoint.sampling,
        state_dir=cache_dir() / "kv-states",
    )


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

