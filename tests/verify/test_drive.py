"""Serving a guided file's writings: one after another, or together in one batch per step."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from symergion.engine.base import GenerationRequest
from symergion.engine.fake import FakeEngine
from symergion.verify.drive import Ask, Writing, capped, run_one, run_together


def reply(prompt: str) -> str:
    """The model's answer depends on the prompt only: the name on its last line."""
    name = prompt.rsplit("\n", 1)[-1]
    if prompt.endswith(" = "):
        return f"'{name.split()[0]}'\nand more that is never read\n"
    return f"{name}_done)\nthe rest of a long reply that the writing stops before\n" * 3


def line(prompt: str, max_tokens: int) -> Writing[tuple[str, int]]:
    """One step: the completion of ``prompt`` up to the end of its line, and its tokens."""
    text, tokens = "", 0
    piece = yield Ask(prompt, max_tokens, 5)
    while piece is not None:
        tokens += 1
        text += piece
        if "\n" in text:
            break
        piece = yield None
    return text.split("\n")[0], tokens


def two_steps(name: str) -> Writing[tuple[str, str, int]]:
    """A test's writing: a bound value (one line), then the assertion (one line)."""
    value, first = yield from line(f"file\n{name} = ", 24)
    check, second = yield from line(f"file\n{name} = {value}\nassert {name}", 80)
    return value, check, first + second


def batched(engine: FakeEngine) -> object:
    def generate_many(asks: Sequence[Ask], seeds: Sequence[int], stopped: Collection[int]
                      ) -> Iterable[tuple[int, str]]:
        requests = [GenerationRequest(a.prompt, a.max_tokens, a.stable_prefix, s, 0.8)
                    for a, s in zip(asks, seeds, strict=True)]
        return engine.generate_many(requests, stopped=stopped)
    return generate_many


def test_writings_served_together_give_what_each_gives_alone_in_one_batch_per_step() -> None:
    names = ["alpha", "b", "gamma_delta"]
    alone = FakeEngine("fake", reply)
    expected = [run_one(lambda p, n, s: alone.generate(p, max_tokens=n, stable_prefix=s), two_steps(name))
                for name in names]
    assert expected[0] == ("'alpha'", "assert alpha_done)", 7) and alone.batches == []

    engine = FakeEngine("fake", reply, slots=4)
    together = run_together(batched(engine), [two_steps(name) for name in names], [1, 4, 7])  # type: ignore[arg-type]
    assert together == expected
    # Two steps, each one batch of all three; every completion was stopped where its writing was
    # done, none ran on to its max_tokens.
    assert engine.batches == [3, 3]
    assert engine.calls[:3] == ["file\nalpha = ", "file\nb = ", "file\ngamma_delta = "]
    assert [s.stop for s in engine.batch_stats] == ["stopped"] * 3


def test_each_writing_samples_with_its_own_seed_whatever_order_its_steps_come_in() -> None:
    # Prompts that differ only in a name would sample alike under one seed.
    engine = FakeEngine("fake", reply, seeded=lambda prompt, seed: f"'{seed}'\n" if prompt.endswith(" = ")
                        else f"x{seed})\n")
    got = run_together(batched(engine), [short_of("b = ", 3), two_steps("a"), short_of("c = ", 3)],  # type: ignore[arg-type]
                       [5, 8, 11])
    assert got == ["'5'\n", ("'8'", "x8)", 2), "'11'\n"]


def test_a_completion_that_ends_by_itself_is_told_so_and_results_keep_their_order() -> None:
    # "x" is one token, so its stream ends (eos) before the writing is done: it is sent None.
    engine = FakeEngine("fake", lambda prompt: "x" if prompt.endswith("one") else "abcdefghijkl")
    results = run_together(batched(engine), [short_of("one", 2), short_of("two", 2)], [1, 2])  # type: ignore[arg-type]
    assert results == ["x", "abcdefgh"]  # "two" ran to its max_tokens (2 tokens of 4 characters)
    assert engine.batches == [2] and [s.stop for s in engine.batch_stats] == ["eos", "max_tokens"]


def test_a_capped_generation_ends_every_completion_when_the_tokens_are_spent() -> None:
    engine = FakeEngine("fake", "abcdefghijklmnopqrstuvwx")  # six tokens of four characters
    within = capped(batched(engine), 5)  # type: ignore[arg-type]
    results = run_together(within, [short_of("one", 6), short_of("two", 6)], [1, 2])
    # Five pieces in all, taken in turn, then both streams end; a later call generates nothing.
    assert results == ["abcdefghijkl", "abcdefgh"]
    assert run_together(within, [short_of("three", 6)], [3]) == [""]
    assert engine.batches == [2]


def short_of(name: str, tokens: int) -> Writing[str]:
    """A writing that takes its whole stream of at most ``tokens`` pieces."""
    text = ""
    piece = yield Ask(f"file\n{name}", tokens, 5)
    while piece is not None:
        text += piece
        piece = yield None
    return text
