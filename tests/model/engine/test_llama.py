"""Tests of the llama.cpp engine on the real embedded GGUF."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from symergion.config.sampling import Sampling
from symergion.engine.base import ChatPrompt, Engine
from symergion.engine.extra_buffers import llama_cpp_params
from symergion.engine.llama import LlamaEngine
from symergion.engine.lookup import LOOKUP_MAX_DRAFT
from symergion.errors import ModelError
from tests.helpers.engine import THREADS

MakeEngine = Callable[..., LlamaEngine]

SOURCE = "".join(
    f"def scale_{i}(value: float) -> float:\n"
    f'    """Return value scaled by {i} and shifted by {i * i}."""\n'
    f"    return value * {i} + {i * i}\n\n\n"
    for i in range(24)
)
# Sources and task first, feedback last: the shape of symergion's prompts.
STABLE = f"# File: scaling.py\n{SOURCE}# Task: write a unittest TestCase for scaling.py\n"
ROUND_1 = STABLE + "import unittest\n"
ROUND_2 = STABLE + "# Feedback: use a setUp method\nimport unittest\n"
CODE_PROMPT = 'def fibonacci(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n'
GEN = 32


def run(engine: LlamaEngine, prompt: str, **kwargs: Any) -> str:
    kwargs.setdefault("max_tokens", GEN)
    return "".join(engine.generate(prompt, **kwargs))


def test_truncated_gguf_is_a_model_error(gguf_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.gguf"
    with gguf_path.open("rb") as source:
        path.write_bytes(source.read(4 * 1024 * 1024))
    with pytest.raises(ModelError, match="cannot load") as caught:
        LlamaEngine(path, model_name="m", n_threads=1, sampling=Sampling())
    assert "download it again" in str(caught.value)


def test_engine_satisfies_the_protocol(make_engine: MakeEngine) -> None:
    engine: Engine = make_engine(n_ctx=None)
    assert engine.n_ctx == 8192  # min(32768 trained, the 8192 default cap)


def test_greedy_output_equals_create_completion(make_engine: MakeEngine, gguf_path: Path,
                                                extra_buffers: bool) -> None:
    import llama_cpp

    engine = make_engine(n_ctx=2048)
    text = run(engine, CODE_PROMPT, max_tokens=64)
    generated = engine.stats.generated_tokens

    with llama_cpp_params(extra_buffers):
        baseline = llama_cpp.Llama(
            str(gguf_path), n_ctx=2048, n_threads=THREADS, n_threads_batch=THREADS, verbose=False
        )
    try:
        expected = baseline.create_completion(CODE_PROMPT, max_tokens=generated, temperature=0)
    finally:
        baseline.close()

    assert generated == 64
    assert text == expected["choices"][0]["text"]
    assert engine.stats.prompt_tokens == expected["usage"]["prompt_tokens"]


def test_stats_are_filled(make_engine: MakeEngine) -> None:
    engine = make_engine()
    run(engine, CODE_PROMPT, max_tokens=8)
    stats = engine.stats
    assert stats.prompt_tokens == engine.count_tokens(CODE_PROMPT)
    assert stats.generated_tokens == 8
    assert stats.reused_prefix_tokens == 0
    assert stats.prefix_source == "none"
    assert 0 < stats.prompt_seconds <= stats.first_token_seconds
    assert stats.generation_seconds > 0


def test_feedback_round_reuses_the_prefix_and_matches_a_cold_run(make_engine: MakeEngine) -> None:
    cold = make_engine()
    expected = run(cold, ROUND_2, stable_prefix=len(STABLE))

    warm = make_engine()
    first = run(warm, ROUND_1, stable_prefix=len(STABLE))
    second = run(warm, ROUND_2, stable_prefix=len(STABLE))

    assert second == expected
    assert warm.stats.prefix_source == "memory"
    # The prefix's last token may merge with what follows it.
    stable_tokens = warm.count_tokens(STABLE)
    assert stable_tokens - 1 <= warm.stats.reused_prefix_tokens <= stable_tokens
    assert warm.stats.prompt_tokens > 600
    # A revoke repeats the first prompt: same text as its own first run.
    assert run(warm, ROUND_1, stable_prefix=len(STABLE)) == first
    assert warm.stats.prefix_source == "memory"


PIECES = ["class TestScaling(unittest.TestCase):\n",
          "    def test_scale_1(self):\n        self.assertEqual(scaling.scale_1(2.0), 3.0)\n",
          "    def test_scale_2(self):\n        self.assertEqual(scaling.scale_2(1.0), 6.0)\n"]


def test_a_file_written_piece_by_piece_evaluates_each_piece_once_and_matches_cold_runs(
        make_engine: MakeEngine) -> None:
    """A writer marks where its file so far ends: the next prompt evaluates only what follows."""
    warm, texts, marks = make_engine(), [], [len(ROUND_1)]
    for count in range(1, len(PIECES) + 1):
        prompt = ROUND_1 + "".join(PIECES[:count])
        texts.append(run(warm, prompt, stable_prefix=len(STABLE), marks=tuple(marks)))
        if count > 1:
            # Only the last piece (and perhaps a token merged across its mark) is evaluated.
            new = warm.stats.prompt_tokens - warm.stats.reused_prefix_tokens
            assert new <= warm.count_tokens(PIECES[count - 1]) + 1
        marks.append(len(prompt))
    assert warm.totals.reused_tokens > 2 * warm.count_tokens(ROUND_1)
    # Each prompt evaluated cold, with the same marks, gives the same text: batches start at
    # the marks whether or not the KV before them was kept.
    for count, text in enumerate(texts, start=1):
        prompt = ROUND_1 + "".join(PIECES[:count])
        cold = make_engine()
        assert run(cold, prompt, stable_prefix=len(STABLE),
                   marks=tuple(marks[:count])) == text
        assert cold.stats.reused_prefix_tokens == 0
        cold.close()


def test_without_marks_the_file_so_far_is_evaluated_again(make_engine: MakeEngine) -> None:
    engine = make_engine()
    run(engine, ROUND_1 + PIECES[0], stable_prefix=len(STABLE))
    run(engine, ROUND_1 + PIECES[0] + PIECES[1], stable_prefix=len(STABLE))
    # Only the stable prefix is kept: the starter and the first piece are evaluated again.
    assert engine.stats.prompt_tokens - engine.stats.reused_prefix_tokens >= engine.count_tokens(
        "import unittest\n" + PIECES[0] + PIECES[1]) - 2


def test_unrelated_prompt_reuses_nothing(make_engine: MakeEngine) -> None:
    engine = make_engine()
    run(engine, ROUND_1, stable_prefix=len(STABLE))
    run(engine, CODE_PROMPT)
    assert engine.stats.reused_prefix_tokens == 0
    assert engine.stats.prefix_source == "none"


def test_disk_state_restores_the_prefix_in_a_fresh_engine(make_engine: MakeEngine, tmp_path: Path) -> None:
    expected = run(make_engine(), ROUND_2, stable_prefix=len(STABLE))
    state_dir = tmp_path / "kv"

    first = make_engine(state_dir=state_dir)
    run(first, ROUND_1, stable_prefix=len(STABLE))
    first.close()
    assert list(state_dir.rglob("*.kv"))

    second = make_engine(state_dir=state_dir)
    text = run(second, ROUND_2, stable_prefix=len(STABLE))

    assert text == expected
    assert second.stats.prefix_source == "disk"
    assert second.stats.reused_prefix_tokens > 600


def test_corrupt_disk_state_is_dropped_and_evaluated_cold(make_engine: MakeEngine, tmp_path: Path) -> None:
    state_dir = tmp_path / "kv"
    expected = run(make_engine(state_dir=state_dir), ROUND_2, stable_prefix=len(STABLE))
    (entry,) = state_dir.rglob("*.kv")
    raw = bytearray(entry.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    entry.write_bytes(bytes(raw))

    engine = make_engine(state_dir=state_dir)
    text = run(engine, ROUND_2, stable_prefix=len(STABLE))

    assert text == expected
    assert engine.stats.prefix_source == "none"
    # The damaged entry was replaced by a fresh one.
    (again,) = state_dir.rglob("*.kv")
    assert again.read_bytes() != bytes(raw)


def test_state_store_stays_within_its_budget(make_engine: MakeEngine, tmp_path: Path) -> None:
    state_dir = tmp_path / "kv"

    def variant(engine: LlamaEngine, n: int) -> None:
        prefix = f"# Variant {n}\n{STABLE}"
        run(engine, prefix + "import unittest\n", max_tokens=1, stable_prefix=len(prefix))

    variant(make_engine(state_dir=state_dir), 0)
    (first,) = state_dir.rglob("*.kv")
    budget = first.stat().st_size * 3 // 2
    engine = make_engine(state_dir=state_dir, state_max_bytes=budget)
    variant(engine, 1)
    variant(engine, 2)

    (kept,) = state_dir.rglob("*.kv")
    assert kept.stat().st_size <= budget
    assert engine.stats.prefix_source == "none"  # each variant has its own prefix


def test_cancel_stops_generation_and_the_engine_stays_usable(make_engine: MakeEngine) -> None:
    engine = make_engine()
    cancel = threading.Event()
    pieces = []
    for piece in engine.generate(CODE_PROMPT, max_tokens=200, cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 5:
            cancel.set()
    assert engine.stats.generated_tokens <= 6
    assert list(engine.generate(CODE_PROMPT, max_tokens=10, cancel=cancel)) == []

    assert run(engine, CODE_PROMPT, max_tokens=10) == run(make_engine(), CODE_PROMPT, max_tokens=10)


def test_closing_the_iterator_early_leaves_the_engine_reusable(make_engine: MakeEngine) -> None:
    engine = make_engine()
    expected = run(make_engine(), ROUND_2, stable_prefix=len(STABLE))
    iterator = engine.generate(ROUND_1, max_tokens=GEN, stable_prefix=len(STABLE))
    for _ in range(3):
        next(iterator)
    iterator.close()  # type: ignore[attr-defined]

    assert run(engine, ROUND_2, stable_prefix=len(STABLE)) == expected


def test_a_new_generation_ends_the_previous_one(make_engine: MakeEngine) -> None:
    engine = make_engine()
    abandoned = engine.generate(ROUND_1, max_tokens=GEN)
    next(abandoned)
    text = run(engine, CODE_PROMPT, max_tokens=10)
    assert list(abandoned) == []
    assert text == run(make_engine(), CODE_PROMPT, max_tokens=10)


def test_prompt_longer_than_the_context_is_a_model_error(make_engine: MakeEngine) -> None:
    engine = make_engine(n_ctx=256)
    with pytest.raises(ModelError, match="context_size"):
        run(engine, ROUND_1)


def test_max_tokens_is_cut_to_the_context(make_engine: MakeEngine) -> None:
    engine = make_engine(n_ctx=256)
    prompt = SOURCE[:600]
    prompt_tokens = engine.count_tokens(prompt)
    run(engine, prompt, max_tokens=10_000)
    assert engine.stats.generated_tokens <= 256 - prompt_tokens


def test_sampling_with_a_seed_is_reproducible(make_engine: MakeEngine) -> None:
    sampling = Sampling(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1, seed=7)
    first = run(make_engine(sampling=sampling), CODE_PROMPT, max_tokens=24)
    second = run(make_engine(sampling=sampling), CODE_PROMPT, max_tokens=24)
    assert first == second
    assert first


def test_special_tokens_are_rendered(make_engine: MakeEngine) -> None:
    engine = make_engine()
    turn = "<start_of_turn>user"
    ids = engine.tokenize(ChatPrompt(turn, (len(turn), len(turn))))
    assert ids[0] == engine.tokenize("")[0]  # BOS
    assert engine.token_text(ids[1:]) == "<start_of_turn>user"
    assert engine.count_tokens(ChatPrompt("<start_of_turn>", (15, 15))) == 2  # BOS + one special
    # A template that already starts with the BOS text gets no second BOS.
    assert engine.count_tokens(ChatPrompt("<bos>hello", (5, 10))) == engine.count_tokens("hello")


def test_multibyte_characters_split_across_tokens_are_joined(make_engine: MakeEngine) -> None:
    engine = make_engine()
    text = "naïve café 😀 数据"
    ids = engine.tokenize(text)[1:]
    assert engine.token_text(ids) == text


def test_model_without_chat_template_is_a_model_error(make_engine: MakeEngine) -> None:
    with pytest.raises(ModelError, match="no chat template"):
        make_engine().chat_prompt("hello")


def test_closed_engine_refuses_work(make_engine: MakeEngine) -> None:
    engine = make_engine()
    engine.close()
    engine.close()
    with pytest.raises(ModelError, match="closed"):
        engine.count_tokens("x")


COPY_PROMPT = f"Here is scaling.py:\n```python\n{SOURCE[:900]}```\nThe same file again:\n```python\n"


def test_prompt_lookup_is_deterministic_and_keeps_the_cache_consistent(
    make_engine: MakeEngine,
) -> None:
    first = make_engine(prompt_lookup=True)
    text = run(first, COPY_PROMPT, max_tokens=120)
    assert first.stats.generated_tokens == 120
    assert text.startswith("def scale_0")  # the model copies, which lookup drafts
    # Every token in the KV cache is one the engine knows about: rejected drafts were removed.
    cache = first._cache
    assert cache.context.seq_pos_max(0) == len(cache.cached) - 1

    second = make_engine(prompt_lookup=True)
    assert run(second, COPY_PROMPT, max_tokens=120) == text
    # The engine stays usable for plain prompts afterwards.
    assert run(first, CODE_PROMPT, max_tokens=10) == run(make_engine(), CODE_PROMPT, max_tokens=10)


def test_prompt_lookup_respects_max_tokens_and_cancel(make_engine: MakeEngine) -> None:
    engine = make_engine(prompt_lookup=True)
    for budget in (1, 2, 17):
        run(engine, COPY_PROMPT, max_tokens=budget)
        assert engine.stats.generated_tokens == budget
    cancel = threading.Event()
    for _ in engine.generate(COPY_PROMPT, max_tokens=200, cancel=cancel):
        cancel.set()
    assert engine.stats.generated_tokens <= LOOKUP_MAX_DRAFT + 1
