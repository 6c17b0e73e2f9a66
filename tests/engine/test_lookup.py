"""Unit tests of prompt lookup's draft policy (no model needed); the decoding is in test_llama."""

from __future__ import annotations

from symergion.engine.lookup import LOOKUP_COOLDOWN, LOOKUP_MAX_DRAFT, LOOKUP_MIN_DRAFT, LOOKUP_NGRAM, _Drafts


def test_a_recurring_ngram_drafts_what_followed_it_within_the_budget() -> None:
    # The prompt, then the token just generated: the n-gram it completes came before.
    drafts = _Drafts([1, 2, 3, 4, 5, 6, 9, 1, 2])
    drafts.history.append(3)
    assert drafts.propose(budget=10) == [4, 5]
    assert drafts.length == LOOKUP_MIN_DRAFT == 2
    again = _Drafts([1, 2, 3, 4, 5, 6, 9, 1, 2])
    again.history.append(3)
    assert again.propose(budget=1) == [4]


def test_an_ngram_seen_for_the_first_time_drafts_nothing_and_is_remembered() -> None:
    drafts = _Drafts([7, 8])
    drafts.history.append(9)
    assert drafts.propose(budget=10) == []
    drafts.history.extend([10, 7, 8, 9])
    assert drafts.propose(budget=10) == [10, 7]


def test_accepted_drafts_grow_to_the_maximum_and_a_rejection_pauses_drafting() -> None:
    drafts = _Drafts([])
    for _ in range(10):
        drafts.judge(drafted=drafts.length, accepted=drafts.length)
    assert drafts.length == LOOKUP_MAX_DRAFT
    drafts.judge(drafted=LOOKUP_MAX_DRAFT, accepted=5)
    assert drafts.length == 6
    drafts.judge(drafted=6, accepted=0)
    assert (drafts.length, drafts.cooldown) == (LOOKUP_MIN_DRAFT, LOOKUP_COOLDOWN)
    drafts.history.extend([1, 2, 3, 4, 1, 2, 3])
    for _ in range(LOOKUP_COOLDOWN):
        assert drafts.propose(budget=10) == []
    drafts.history.extend([4, 1, 2, 3])
    assert drafts.propose(budget=10) == [4, 1]


def test_extend_records_the_ngram_an_accepted_token_completes() -> None:
    drafts = _Drafts([5, 6])
    drafts.extend(7)
    assert drafts.seen[(5, 6, 7)] == 3
    assert len(next(iter(drafts.seen))) == LOOKUP_NGRAM
