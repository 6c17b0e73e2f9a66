"""Where prompt batches start, and which prefixes a feedback round's prompt shares."""

from __future__ import annotations

from symergion.core import prompt as prompts
from symergion.engine.base import batch_starts


def test_batches_start_every_n_tokens_and_again_at_each_bound() -> None:
    assert batch_starts(1200, [], 512) == [0, 512, 1024]
    assert batch_starts(1200, [700], 512) == [0, 512, 700]
    assert batch_starts(1200, [700, 750, 750, 1300, 0], 512) == [0, 512, 700, 750]
    # Without marks the rule batches always followed: from 0, and again from the stable prefix
    # (so a batch of requests without marks is split as before, and its greedy texts stay).
    for length in (1, 511, 512, 513, 1300, 2049):
        for stable in (0, 1, 300, 512, length - 1, length):
            assert batch_starts(length, [stable], 512) == [
                *range(0, stable, 512), *range(stable, length, 512)], (length, stable)


def test_a_round_prompt_marks_where_each_earlier_round_ended_its_stable_prefix() -> None:
    files = [("utils/x.py", "def x():\n    return 1\n")]
    first = prompts.render(files, ["Create unittest TestCase"], [], "import unittest\n")
    second = prompts.render(files, ["Create unittest TestCase"], ["Use setUp"], "import unittest\n")
    third = prompts.render(files, ["Create unittest TestCase"], ["Use setUp", "Fix test_x"],
                           "import unittest\n")
    assert first.earlier_marks == ()
    assert second.earlier_marks == (first.stable_prefix,)
    assert third.earlier_marks == (first.stable_prefix, second.stable_prefix)
    assert third.text.startswith(second.text[:second.stable_prefix])
