"""The repository's schema: trailers written into a message parse back to what was written."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from symergion import trailers as schema
from symergion.trailers import (
    Decode,
    NoteRef,
    Reasoning,
    Repair,
    Trailers,
    Trimmed,
    body_of,
    parse_trailers,
)
from tests.helpers.git import git

# A value as symergion writes one: no line break, no space at either end, never empty.
WORD = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs")),
               min_size=1, max_size=12)
VALUE = st.lists(WORD, min_size=1, max_size=3).map(" ".join)
HEX = st.text("0123456789abcdef", min_size=1, max_size=40)
COUNT = st.integers(min_value=0, max_value=10**9)
# Figures are written with one decimal: the values a written trailer can hold.
TENTHS = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False).map(lambda x: round(x, 1))
KNOWN = {*schema.ORDER}
OTHER_NAME = st.from_regex(r"Symergion-[A-Za-z0-9][A-Za-z0-9-]{0,10}", fullmatch=True).filter(
    lambda name: name not in KNOWN)


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


TRAILERS = st.builds(
    Trailers,
    model=optional(VALUE), task=optional(VALUE), prompt=optional(HEX),
    notes=optional(st.lists(st.builds(NoteRef, optional(HEX), HEX), max_size=4).map(tuple)),
    tokens=optional(st.integers()), seconds=optional(TENTHS), cache=optional(VALUE),
    stop=optional(VALUE), trimmed=optional(st.builds(Trimmed, COUNT, COUNT)),
    decode=optional(st.builds(Decode, COUNT, COUNT, TENTHS, TENTHS)),
    reasoning=optional(st.builds(Reasoning, HEX, COUNT)), restart=optional(st.integers()), hand=optional(HEX),
    repair=optional(st.builds(Repair, HEX, COUNT)), fix=optional(VALUE), prune=optional(VALUE),
    verify=optional(VALUE), cut=st.lists(VALUE, max_size=3).map(tuple),
    other=st.dictionaries(OTHER_NAME, VALUE, max_size=3),
)
# Body lines that look like trailers, symergion's own names included: outside the last
# paragraph they are text.
LINE = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30),
    st.builds(lambda name, value: f"{name}: {value}", st.sampled_from([*schema.ORDER, "Signed-off-by"])
              | OTHER_NAME, VALUE),
)
PARAGRAPH = st.lists(LINE, min_size=1, max_size=4).map("\n".join)
BODY = st.lists(PARAGRAPH, min_size=1, max_size=4).map("\n\n".join)


@given(TRAILERS)
def test_written_trailers_parse_back(trailers: Trailers) -> None:
    assert Trailers.parse(trailers.write("Subject")) == trailers
    assert Trailers.parse(trailers.block()) == trailers


@given(TRAILERS, BODY)
def test_trailers_after_any_body_parse_back_and_the_body_is_not_read(trailers: Trailers,
                                                                      body: str) -> None:
    assume(trailers.items())  # with no block, the body's last paragraph is the message's
    message = trailers.write(body)
    assert Trailers.parse(message) == trailers
    assert message.endswith(trailers.block() + "\n")


@given(TRAILERS)
def test_the_block_follows_the_written_order(trailers: Trailers) -> None:
    names = [name for name, _value in trailers.items() if name not in trailers.other]
    assert names == sorted(names, key=schema.ORDER.index)
    assert len(trailers.block().splitlines()) == len(trailers.items())


@given(TRAILERS, TRAILERS)
def test_merged_keeps_the_first_and_sets_what_the_second_has(first: Trailers,
                                                             later: Trailers) -> None:
    merged = first.merged(later)
    for f in dataclasses.fields(Trailers):
        if f.name == "cut":
            assert merged.cut == first.cut + later.cut
        elif f.name == "other":
            assert merged.other == {**first.other, **later.other}
        else:
            expected = getattr(later, f.name)
            assert getattr(merged, f.name) == (getattr(first, f.name) if expected is None else expected)


@pytest.fixture(scope="module")
def empty_tree_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("schema")
    git(path, "init", "-q")
    tree = git(path, "hash-object", "-t", "tree", "-w", "--stdin", input="").strip()
    return path, tree


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TRAILERS.filter(lambda t: bool(t.items())), BODY)
def test_git_stores_the_message_and_reads_the_same_trailers(
        empty_tree_repo: tuple[Path, str], trailers: Trailers, body: str) -> None:
    path, tree = empty_tree_repo
    message = trailers.write(body)
    commit = git(path, "commit-tree", tree, "-F", "-", input=message).strip()
    stored = git(path, "log", "-1", "--format=%B", commit)
    assert Trailers.parse(stored) == trailers
    # git's own trailer parser sees the same block.
    parsed = subprocess.run(["git", "interpret-trailers", "--parse", "--no-divider"], cwd=path,
                            input=stored, capture_output=True, text=True, check=True).stdout
    assert parsed.splitlines() == [f"{name}: {value}" for name, value in trailers.items()]


def test_a_candidate_block_is_written_in_symergions_order() -> None:
    trailers = Trailers(
        verify="1 passed, 0 failed, 0 errors; imports x; 0.1s", repair=Repair("p", 1),
        decode=Decode(12, 10, 2.0, 6.0), notes=(NoteRef("c1", "b1"), NoteRef(None, "b0")),
        model="alpha", task="TestCase_x", prompt="p1", tokens=12, seconds=2.04, cache="miss",
        stop="eos", trimmed=Trimmed(3, 1), reasoning=Reasoning("d", 2), restart=1,
        cut=("max_seconds 5: repair round 2 left for the next sync",))
    assert trailers.block().splitlines() == [
        "Symergion-Model: alpha", "Symergion-Task: TestCase_x", "Symergion-Prompt: p1",
        "Symergion-Notes: c1:b1 b0", "Symergion-Tokens: 12", "Symergion-Seconds: 2.0",
        "Symergion-Cache: miss", "Symergion-Stop: eos", "Symergion-Trimmed: 3 chars, 1 lines",
        "Symergion-Decode: 12 decoded, 10 kept, 2.0 s decoding, 6.0 tok/s",
        "Symergion-Reasoning: d 2", "Symergion-Restart: 1", "Symergion-Repair: p 1",
        "Symergion-Verify: 1 passed, 0 failed, 0 errors; imports x; 0.1s",
        "Symergion-Cut: max_seconds 5: repair round 2 left for the next sync"]
    assert Trailers(notes=()).block() == "Symergion-Notes: -"


def test_only_the_last_paragraph_is_read() -> None:
    message = ("Use setUp\n\nSymergion-Model: quoted in the body\nSymergion-Task: body\n\n"
               "Symergion-Model: alpha\nSigned-off-by: A <a@b>\nSymergion-Notes: -\n")
    assert Trailers.parse(message) == Trailers(model="alpha", notes=())
    assert parse_trailers(message) == {"Symergion-Model": "alpha", "Symergion-Notes": "-"}
    assert Trailers.parse("Subject only\n") == Trailers()
    assert Trailers.parse("") == Trailers()


def test_a_line_needs_colon_and_space_and_trailing_blank_lines_do_not_matter() -> None:
    message = "Subject\n\nSymergion-Model:alpha\nSymergion-Task:  T  \n\n\n  \n"
    # The last paragraph is the one before the trailing blank lines; values are stripped.
    assert Trailers.parse(message) == Trailers(task="T")


def test_a_repeated_trailer_keeps_its_last_value_and_cut_lines_all_stay() -> None:
    message = ("S\n\nSymergion-Model: a\nSymergion-Cut: first\nSymergion-Model: b\n"
               "Symergion-Cut: second\n")
    parsed = Trailers.parse(message)
    assert (parsed.model, parsed.cut) == ("b", ("first", "second"))
    assert parse_trailers(message)["Symergion-Cut"] == "second"


def test_unknown_and_unreadable_trailers_are_kept_as_written_and_read_as_absent() -> None:
    message = ("S\n\nSymergion-Model: a\nSymergion-Tokens: many\nSymergion-Repair: p x\n"
               "Symergion-Trimmed: some\nSymergion-Future: 1 2 3\nSymergion-Reasoning: d\n")
    parsed = Trailers.parse(message)
    assert (parsed.tokens, parsed.repair, parsed.trimmed, parsed.reasoning) == (None, None, None, None)
    assert parsed.other == {"Symergion-Tokens": "many", "Symergion-Repair": "p x",
                            "Symergion-Trimmed": "some", "Symergion-Future": "1 2 3",
                            "Symergion-Reasoning": "d"}
    assert Trailers.parse(parsed.write("S")) == parsed
    # A readable value later in the block replaces an unreadable one, and the reverse.
    assert Trailers.parse("Symergion-Tokens: x\nSymergion-Tokens: 5") == Trailers(tokens=5)
    assert Trailers.parse("Symergion-Tokens: 5\nSymergion-Tokens: x") == Trailers(
        other={"Symergion-Tokens": "x"})


def test_values_as_older_commits_wrote_them() -> None:
    parsed = Trailers.parse("Symergion-Notes: b1 c2:b2 -\nSymergion-Trimmed: 7 chars")
    assert parsed.notes == (NoteRef(None, "b1"), NoteRef("c2", "b2"))
    assert parsed.trimmed == Trimmed(7, 0)


def test_body_of_is_the_text_before_symergions_block() -> None:
    trailers = Trailers(model="alpha", task="T")
    assert body_of(trailers.write("Subject\n\nbody")) == "Subject\n\nbody"
    assert body_of("Subject\n\nSigned-off-by: x\n") == "Subject\n\nSigned-off-by: x\n"
