"""A response becomes a dict only in the response store, and the stored record is unchanged."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symergion.cache import ResponseStore
from symergion.core.respond import response_record
from symergion.core.response import RECORD_KEYS, Response
from symergion.engine.base import GenerationStats
from symergion.engine.fake import FakeEngine
from symergion.engine.jobs import JobResult
from symergion.verify.finish import Finished

SECONDS = st.floats(min_value=0, max_value=1e5, allow_nan=False).map(lambda s: round(s, 3))
COUNT = st.integers(min_value=0, max_value=10**6)
REASONS = st.sampled_from(["trimmed", "no valid file", "guided variants", "repeated test"])


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A record as the pass stores one (a generated or a guided file): every key, in order."""
    values: dict[str, Any] = {
        "text": draw(st.text(max_size=200)), "tokens": draw(COUNT), "budget": draw(COUNT),
        "seconds": draw(SECONDS),
        "stop": draw(st.sampled_from(["eos", "budget", "repetition", "guided", "complete"])),
        "trimmed_chars": draw(COUNT), "trimmed_lines": draw(COUNT),
        "parses": draw(st.none() | st.booleans()),  # None: a file no language check knows
        "kept_tokens": draw(COUNT),
        "discarded": draw(st.dictionaries(REASONS, st.integers(min_value=1, max_value=10**6),
                                          max_size=3)),
        "decode_seconds": draw(SECONDS),
    }
    return {key: values[key] for key in RECORD_KEYS}


@given(records())
def test_a_stored_record_round_trips_byte_for_byte(record: dict[str, Any]) -> None:
    response = Response.from_record(record)
    assert response.cache == "hit" and response.blob is None and response.text == record["text"]
    again = response.to_record()
    assert list(again) == list(record)
    assert pickle.dumps(again) == pickle.dumps(record)  # what diskcache writes for the value


def test_a_generated_response_is_stored_as_the_pass_always_stored_it(tmp_path: Path) -> None:
    engine = FakeEngine("coder", "x")
    done = Finished(text="def f():\n    return 1\n", stop="complete", trimmed_chars=7,
                    trimmed_lines=1, parses=True)
    result = JobResult(text=done.text + "garbage", tokens=40, seconds=1.23456, stop="complete",
                       stats=GenerationStats(generation_seconds=0.98765))
    response = response_record(engine, done, result, 128, "def f():\n")
    assert response.cache == "miss"
    kept = engine.count_tokens(done.text) - engine.count_tokens("def f():\n")
    # The record as stored before responses were typed, key for key and in this order.
    before = {"text": done.text, "tokens": 40, "budget": 128, "seconds": 1.235,
              "stop": "complete", "trimmed_chars": 7, "trimmed_lines": 1, "parses": True,
              "kept_tokens": kept, "discarded": {"trimmed": 40 - kept}, "decode_seconds": 0.988}
    record = response.to_record()
    assert pickle.dumps(record) == pickle.dumps(before)
    store = ResponseStore(tmp_path / "responses", 10)
    try:
        store.put("key", record)
        stored = store.get("key")
    finally:
        store.close()
    assert stored == before and list(stored) == list(before)
    assert Response.from_record(stored) == replace(response, cache="hit")


def test_an_invalid_file_is_text_nothing_and_still_stored() -> None:
    response = Response(text="", tokens=12, stop="budget", discarded={"no valid file": 12})
    assert not response.has_file and not response.reused
    assert Response.from_record(response.to_record()) == response


def test_an_older_record_without_the_decode_figures_reads_as_not_recording_them() -> None:
    older = {"text": "x = 1\n", "tokens": 9, "seconds": 0.4, "stop": "eos", "trimmed_chars": 0,
             "trimmed_lines": 0}
    response = Response.from_record(older)
    assert response.has_file and response.tokens == 9
    assert (response.budget, response.parses, response.kept_tokens, response.discarded,
            response.decode_seconds) == (None, None, None, None, None)


def test_a_reused_response_holds_the_blob_alone_and_is_never_stored() -> None:
    reused = Response(blob="0123abcd", tokens=5, seconds=0.5)
    assert reused.reused and reused.has_file and reused.text is None
    with pytest.raises(ValueError, match="blob"):
        reused.generated  # noqa: B018 - the property raises
    with pytest.raises(ValueError, match="blob"):
        reused.to_record()


@pytest.mark.parametrize("fields", [{}, {"text": "x", "blob": "0123abcd"},
                                    {"text": "", "blob": "0123abcd"}])
def test_a_response_has_exactly_one_of_text_and_blob(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="either"):
        Response(**fields)


@pytest.mark.parametrize("record", [
    {"text": "x", "tokens": 1, "seconds": 0.1, "stop": "eos", "trimmed_chars": 0,
     "trimmed_lines": 0, "blob": "0123abcd"},
    {"text": "x", "tokens": 1, "seconds": 0.1, "stop": "eos"},
])
def test_a_record_that_is_not_a_response_is_refused(record: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a response record"):
        Response.from_record(record)
