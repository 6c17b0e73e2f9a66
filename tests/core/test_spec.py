"""The note grammar both ways: what symergion writes parses back to what was asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG
from symergion.core.spec import (
    Section,
    literal_label,
    normalise_path,
    parse_params,
    read_note,
    split_sections,
    write_sections,
    write_spec,
)
from symergion.errors import NoteError

CONFIG = parse_config(DEFAULT_CONFIG, base_dir=Path("."))
TEMPLATE = CONFIG.templates["TestCase"]
SPEC = CONFIG.task_branch_spec
GRAMMAR = "abcXYZ019_-.é"
segment = st.text(GRAMMAR, min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
grammar_path = st.lists(segment, min_size=1, max_size=3).map("/".join)
any_text = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20)


def read_back(text: str) -> tuple[list[str | None], dict[str, str]]:
    sections = split_sections(text, SPEC)
    return [s.task_branch for s in sections], parse_params(sections[0].text, TEMPLATE)[0]


@settings(max_examples=200, deadline=None)
@given(name=grammar_path, source=grammar_path, destination=grammar_path)
def test_what_the_grammar_can_carry_round_trips(name, source, destination):
    branch = f"TestCase_{name}"
    text = write_spec(SPEC, TEMPLATE, branch, {"source": source, "destination": destination})
    names, params = read_back(text)
    assert names == [branch]
    assert params == {"source": normalise_path(source), "destination": normalise_path(destination)}


@settings(max_examples=300, deadline=None)
@given(name=any_text, destination=any_text, extra=st.text(max_size=20))
def test_anything_else_is_refused_or_round_trips(name, destination, extra):
    branch = f"TestCase_{name}"
    try:
        text = write_spec(SPEC, TEMPLATE, branch, {"destination": destination}, extra)
    except NoteError:
        return
    names, params = read_back(text)
    assert names == [branch] and params["destination"] == destination


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.none() | grammar_path.map(lambda n: f"TestCase_{n}"), any_text),
                min_size=1, max_size=3))
def test_kept_sections_are_refused_or_read_back_as_they_are(pairs):
    sections = [Section(name, text) for name, text in pairs]
    try:
        text = write_sections(SPEC, sections)
    except NoteError:
        return
    back = split_sections(text, SPEC)
    expected = [s for s in sections if s.task_branch is None]
    expected += [s for s in sections if s.task_branch is not None]
    assert [(s.task_branch, s.text.strip(" \t\n,;")) for s in back] == [
        (s.task_branch, s.text.strip(" \t\n,;")) for s in expected]


def test_paths_lose_their_dot_segments():
    assert normalise_path("./utils/x.py") == "utils/x.py"
    assert normalise_path("a/./b/./c.py") == "a/b/c.py"
    assert normalise_path("../x.py") == "../x.py", "'..' is refused later, not rewritten"


def test_a_path_the_grammar_cannot_carry_is_refused_with_what_it_would_become():
    with pytest.raises(NoteError, match="would read back as 'tests/test'"):
        write_spec(SPEC, TEMPLATE, "TestCase_x", {"destination": "tests/test x+y.py"})


def test_labels_come_from_the_configs_patterns():
    assert literal_label(SPEC) == "task_branch: "
    assert literal_label(r"ergon\s*:\s+(\w+)") == "ergon: "
    assert literal_label(TEMPLATE.params["source"]) == "source: "
    with pytest.raises(NoteError):
        literal_label(r"(?:task|ergon):(\w+)")


def test_read_note_gives_each_section_the_task_it_starts_or_its_feedback():
    note = ("Use setUp\n"
            "task_branch: TestCase_a, source: utils/a.py, destination: ./test_a.py, mock the clock\n"
            "task_branch: TestCase_b, use subTest\n"
            "task_branch: Other_c, destination: c.py")
    read = read_note(note, "c0ffee", "b10b", CONFIG)
    assert [r.section.task_branch for r in read] == [None, "TestCase_a", "TestCase_b", "Other_c"]
    assert [r.template for r in read] == [None, TEMPLATE, TEMPLATE, None]
    assert [r.spec is not None for r in read] == [False, True, False, False]
    spec = read[1].spec
    assert spec is not None
    assert (spec.task_branch, spec.target, spec.blob) == ("TestCase_a", "c0ffee", "b10b")
    assert spec.params == {"source": "utils/a.py", "destination": "test_a.py"}
    assert spec.rows == ("mock the clock",)
    assert [r.feedback for r in read] == [
        "Use setUp", "source: utils/a.py, destination: ./test_a.py, mock the clock", "use subTest",
        "destination: c.py"]
    assert read_note("", "c0ffee", "b10b", CONFIG) == []
