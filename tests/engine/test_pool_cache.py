"""The loaded-model LRU and the response store's keys and bounds."""

from __future__ import annotations

from dataclasses import replace

from symergion.cache import ResponseStore, response_key
from symergion.config.sampling import Sampling
from symergion.config.schema import Checkpoint
from symergion.engine.fake import FakeEngine
from symergion.engine.pool import EnginePool


def checkpoint(name: str) -> Checkpoint:
    return Checkpoint(name_or_path=f"/m/{name}.gguf", trait="coding")


def test_pool_keeps_model_cache_size_engines():
    loaded: list[str] = []
    pool = EnginePool(2, lambda c: FakeEngine(c.model_name, "x"), on_load=loaded.append)
    a = pool(checkpoint("a"))
    b = pool(checkpoint("b"))
    assert pool(checkpoint("a")) is a, "a loaded model is reused"
    pool(checkpoint("c"))  # evicts b, the least recently used
    assert b.closed and not a.closed
    assert loaded == ["a", "b", "c"]
    pool(checkpoint("b"))
    assert loaded == ["a", "b", "c", "b"] and pool.loads == 4
    pool.close()
    assert a.closed


def test_response_key_covers_everything_that_makes_a_response():
    base = {"kind": "coder", "model": "fp1", "prompt": "p", "sampling": Sampling().as_dict(),
            "context_size": None, "ntokens": 512, "finisher": "1", "path": "t.py"}
    key = response_key(**base)
    assert response_key(**dict(reversed(list(base.items())))) == key
    for field, value in [("model", "fp2"), ("prompt", "p "), ("ntokens", 256),
                         ("sampling", replace(Sampling(), temperature=0.5).as_dict()),
                         ("context_size", 4096), ("finisher", "2"), ("path", "u.py")]:
        assert response_key(**{**base, field: value}) != key, field


def test_store_is_bounded_and_survives_reopening(tmp_path):
    store = ResponseStore(tmp_path / "r", 3)
    for i in range(5):
        store.put(f"k{i}", {"text": str(i)})
    assert len(store) == 3
    assert store.get("k0") is None and store.get("k4") == {"text": "4"}
    store.close()
    reopened = ResponseStore(tmp_path / "r", 3)
    assert reopened.get("k3") == {"text": "3"}
    reopened.close()


def test_corrupt_store_is_moved_aside_and_rebuilt(tmp_path):
    directory = tmp_path / "r"
    directory.mkdir()
    (directory / "cache.db").write_bytes(b"this is not sqlite" * 100)
    store = ResponseStore(directory, 3)
    assert store.get("k") is None
    store.put("k", {"text": "ok"})
    assert store.get("k") == {"text": "ok"}
    assert len(store.moved_aside) == 1
    store.close()


def test_pool_keys_engines_by_everything_that_makes_one():
    """Two checkpoints on one GGUF that sample differently are two engines."""
    made: list[Checkpoint] = []

    def load(c: Checkpoint) -> FakeEngine:
        made.append(c)
        return FakeEngine(c.model_name, "x")

    pool = EnginePool(4, load)
    greedy = Checkpoint(name_or_path="/m/one.gguf", trait="coding", name="greedy")
    warm = replace(greedy, name="warm", sampling=replace(Sampling(), temperature=0.7))
    wide = replace(greedy, context_size=8192)
    engines = [pool(greedy), pool(warm), pool(wide)]
    assert len({id(e) for e in engines}) == 3 and made == [greedy, warm, wide]
    assert pool(replace(greedy)) is engines[0], "an equal checkpoint reuses its engine"
    pool.close()


def test_a_locked_store_is_waited_for_never_moved_aside(tmp_path):
    import sqlite3

    import pytest

    from symergion.errors import CacheError

    store = ResponseStore(tmp_path / "r", 3)
    store.put("k", {"text": "kept"})
    store.close()
    holder = sqlite3.connect(tmp_path / "r" / "cache.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    busy = ResponseStore(tmp_path / "r", 3, timeout=0.2)
    with pytest.raises(CacheError, match="locked by another process"):
        busy.get("k")
    assert busy.moved_aside == [] and busy.rebuilt is None
    holder.execute("COMMIT")
    holder.close()
    assert busy.get("k") == {"text": "kept"}, "the same store, once the lock is gone"
    busy.close()
