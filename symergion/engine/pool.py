"""Loaded models kept in an LRU of ``model_cache_size``."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable

from symergion.config.schema import REMOTE_KIND, Checkpoint
from symergion.engine.base import Engine


def engine_key(checkpoint: Checkpoint) -> str:
    """Return what makes an engine: the weights (file, adapter, scale), name, context, sampling.

    Two checkpoints on one GGUF with different sampling or context are two engines; keying by
    the file alone served the second one's prompts from the first one's engine.
    """
    return json.dumps([*checkpoint.weights, checkpoint.model_name, checkpoint.context_size,
                       checkpoint.sampling.as_dict()], sort_keys=True)


class EnginePool:
    """Load engines on demand and keep the most recently used ``size`` of them.

    Engines of remote checkpoints (an ``endpoint``) hold no model here: they do not count
    against ``size`` and are never evicted, so a remote model generating in its own thread is
    not closed under it when a local model loads. The pool is safe to call from several threads.

    Args:
        size: how many models may stay loaded at once.
        load: builds an engine for a checkpoint (called only when it is not loaded).
        on_load: told the model name before each load, for progress output.
    """

    def __init__(
        self,
        size: int,
        load: Callable[[Checkpoint], Engine],
        on_load: Callable[[str], None] | None = None,
    ) -> None:
        self.size = max(1, size)
        self._load = load
        self._on_load = on_load
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._remote: dict[str, Engine] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def __call__(self, checkpoint: Checkpoint) -> Engine:
        """Return the engine for ``checkpoint``, loading it (and evicting the LRU) if needed."""
        key = engine_key(checkpoint)
        if checkpoint.kind == REMOTE_KIND:
            with self._lock:
                remote = self._remote.get(key)
                if remote is None:
                    remote = self._remote[key] = self._load(checkpoint)
                    self.loads += 1
                return remote
        with self._lock:
            return self._local(key, checkpoint)

    def _local(self, key: str, checkpoint: Checkpoint) -> Engine:
        engine = self._engines.get(key)
        if engine is not None:
            self._engines.move_to_end(key)
            return engine
        while len(self._engines) >= self.size:
            _, old = self._engines.popitem(last=False)
            old.close()
        if self._on_load is not None:
            self._on_load(checkpoint.model_name)
        engine = self._load(checkpoint)
        self.loads += 1
        self._engines[key] = engine
        return engine

    def close(self) -> None:
        """Free every loaded engine."""
        with self._lock:
            engines = [*self._engines.values(), *self._remote.values()]
            self._engines.clear()
            self._remote.clear()
        for engine in engines:
            engine.close()
