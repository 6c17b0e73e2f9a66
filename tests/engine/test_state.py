"""Unit tests of the on-disk KV prefix state store (no model needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from symergion.engine.state import MIN_STATE_TOKENS, StateStore, find_prefix, model_fingerprint


def _store(tmp_path: Path, max_bytes: int = 10_000, namespace: str = "model") -> StateStore:
    return StateStore(tmp_path / "kv", namespace, max_bytes=max_bytes)


def _age(path: Path, seconds_ago: float) -> None:
    stamp = path.stat().st_mtime - seconds_ago
    os.utime(path, (stamp, stamp))


def test_put_then_find_returns_longest_matching_prefix(tmp_path: Path) -> None:
    store = _store(tmp_path)
    prompt = list(range(100, 140))
    assert store.put(prompt[:10], b"ten")
    assert store.put(prompt[:25], b"twenty-five")
    assert store.put([1, 2, 3, *prompt[3:30]], b"other prefix")

    entry = store.find(prompt)

    assert entry is not None
    assert entry.n_tokens == 25
    assert bytes(entry.data) == b"twenty-five"


def test_find_ignores_entries_longer_than_the_prompt_and_below_min(tmp_path: Path) -> None:
    store = _store(tmp_path)
    prompt = list(range(50))
    store.put(prompt[:5], b"short")
    store.put([*prompt, 7, 7], b"longer than the prompt")

    assert store.find(prompt, min_tokens=6) is None
    entry = store.find(prompt)
    assert entry is not None and entry.n_tokens == 5


def test_missing_directory_is_a_miss(tmp_path: Path) -> None:
    assert _store(tmp_path).find([1, 2, 3]) is None


def test_corrupt_entry_is_ignored_and_deleted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    prompt = list(range(30))
    store.put(prompt[:10], b"good state")
    store.put(prompt[:20], b"will be damaged")
    damaged = store._path(prompt[:20])
    raw = bytearray(damaged.read_bytes())
    raw[-1] ^= 0xFF
    damaged.write_bytes(bytes(raw))

    entry = store.find(prompt)

    assert entry is not None and entry.n_tokens == 10
    assert not damaged.exists()


@pytest.mark.parametrize("content", [b"", b"SYMKV01\n", b"not a state file at all" * 10])
def test_truncated_or_foreign_entry_is_deleted(tmp_path: Path, content: bytes) -> None:
    store = _store(tmp_path)
    prompt = list(range(12))
    store.put(prompt, b"payload")
    path = store._path(prompt)
    path.write_bytes(content)

    assert store.find(prompt) is None
    assert not path.exists()


def test_eviction_keeps_total_under_budget_dropping_least_recently_used(tmp_path: Path) -> None:
    store = _store(tmp_path, max_bytes=3_000)
    prompts = [[n] * 10 for n in range(4)]
    for age, prompt in zip((400, 300, 200), prompts[:3], strict=True):
        assert store.put(prompt, b"x" * 900)
        _age(store._path(prompt), age)
    # Using the oldest entry makes it the most recently used.
    assert store.find(prompts[0]) is not None

    assert store.put(prompts[3], b"y" * 900)

    assert store.total_bytes() <= 3_000
    assert store.contains(prompts[0])
    assert not store.contains(prompts[1])
    assert store.contains(prompts[2])
    assert store.contains(prompts[3])


def test_budget_is_shared_across_models(tmp_path: Path) -> None:
    first = _store(tmp_path, max_bytes=2_000, namespace="a")
    second = _store(tmp_path, max_bytes=2_000, namespace="b")
    first.put([1] * 10, b"x" * 900)
    _age(first._path([1] * 10), 100)
    second.put([2] * 10, b"x" * 900)
    second.put([3] * 10, b"x" * 900)

    assert first.total_bytes() <= 2_000
    assert not first.contains([1] * 10)


def test_entry_larger_than_budget_is_not_stored(tmp_path: Path) -> None:
    store = _store(tmp_path, max_bytes=100)
    assert not store.put([1, 2, 3], b"z" * 200)
    assert store.total_bytes() == 0


def test_unwritable_root_is_a_silent_miss(tmp_path: Path) -> None:
    blocker = tmp_path / "kv"
    blocker.write_text("a file where the directory should be")
    store = StateStore(blocker, "model", max_bytes=10_000)
    assert not store.put([1, 2], b"data")
    assert store.find([1, 2]) is None


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.put([4, 5, 6], b"data")
    assert [p.name for p in store.directory.iterdir()] == [store._path([4, 5, 6]).name]


def test_fingerprint_changes_with_content_and_context(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 5000)
    base = model_fingerprint(model, "ctx=4096")
    assert model_fingerprint(model, "ctx=4096") == base
    assert model_fingerprint(model, "ctx=8192") != base
    model.write_bytes(b"GGUF" + b"\1" * 5000)
    assert model_fingerprint(model, "ctx=4096") != base


def test_find_can_be_limited_to_given_lengths(tmp_path: Path) -> None:
    store = _store(tmp_path)
    prompt = list(range(40))
    store.put(prompt[:8], b"eight")
    store.put(prompt[:16], b"sixteen")
    store.put(prompt[:24], b"twenty-four")

    entry = store.find(prompt, lengths={8, 16})

    assert entry is not None and entry.n_tokens == 16


def test_find_prefix_takes_the_longest_state_at_a_batch_start_within_the_stable_prefix(
        tmp_path: Path) -> None:
    store = _store(tmp_path)
    ids = list(range(1000, 1200))
    store.put(ids[:40], b"at a batch start")
    store.put(ids[:64], b"longer, at a batch start")
    store.put(ids[:70], b"not at a batch start")
    store.put(ids[:128], b"past the stable prefix")
    starts = [0, 40, 64, 128]

    entry = find_prefix(store, ids, starts, stable=100, cached=0)

    assert entry is not None
    assert (entry.n_tokens, bytes(entry.data)) == (64, b"longer, at a batch start")


def test_find_prefix_skips_what_the_cache_holds_and_states_too_short_to_pay(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ids = list(range(200))
    store.put(ids[:64], b"sixty-four")
    store.put(ids[:MIN_STATE_TOKENS - 8], b"too short")

    assert find_prefix(store, ids, [0, MIN_STATE_TOKENS - 8, 64], stable=100, cached=64) is None
    assert find_prefix(store, ids, [0, MIN_STATE_TOKENS - 8], stable=100, cached=0) is None
    found = find_prefix(store, ids, [0, 64], stable=100, cached=63)
    assert found is not None and found.n_tokens == 64
