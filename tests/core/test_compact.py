"""Compacting a source for a prompt that does not fit: shorter at each level, valid, names kept."""

from __future__ import annotations

import ast

from symergion.core import prompt as prompts
from symergion.core.compact import LEVELS, compact
from symergion.verify.syntax import top_level_names

SOURCE = '''"""Tables and lookups."""

# The table is generated: do not edit.
TABLE = [''' + ", ".join(str(i) for i in range(300)) + ''']
NAMES = {''' + ", ".join(f"'k{i}': 'välue {i}'" for i in range(40)) + '''}
BANNER = "''' + "é" * 300 + '''"
SHORT = [1, 2, 3]


def lookup(index):
    """Return the table's entry."""
    if index < 0:
        raise ValueError(f"negative index {index}: ''' + "x" * 250 + '''")
    return TABLE[index]


def _check(index):
    return 0 <= index < len(TABLE)


class Table:
    """A view of the table."""

    def __init__(self, rows):
        self.rows = rows

    def _scan(self):
        for row in self.rows:
            yield row

    def first(self):
        return next(self._scan())
'''


def test_each_level_is_shorter_valid_python_with_every_top_level_name() -> None:
    views = [compact(SOURCE, level) for level in range(LEVELS)]
    assert views[0] == SOURCE
    for shorter, longer in zip(views[1:], views, strict=False):
        assert len(shorter) < len(longer)
    for view in views:
        ast.parse(view)
        assert set(top_level_names(view)) == set(top_level_names(SOURCE))
        # What says what the code is for stays: comments, docstrings, short literals.
        assert "# The table is generated: do not edit." in view
        assert '"""Return the table\'s entry."""' in view and "SHORT = [1, 2, 3]" in view


def test_level_one_elides_long_literals_and_keeps_code_and_f_strings() -> None:
    view = compact(SOURCE, 1)
    assert "TABLE = [0, 1, 2, 3, ...]" in view
    assert "NAMES = {'k0': 'välue 0', 'k1': 'välue 1', 'k2': 'välue 2', 'k3': 'välue 3', ...: ...}" in view
    assert f"BANNER = {'é' * 80!r} '...'" in view  # columns count UTF-8 bytes; the text is kept whole
    assert "x" * 250 in view  # an f-string's text is part of the code that raises
    assert "def _check(index):\n    return 0 <= index < len(TABLE)" in view


def test_level_two_elides_private_bodies_and_level_three_every_body() -> None:
    private = compact(SOURCE, 2)
    assert "def _check(index):\n    ...\n" in private
    assert "def _scan(self):\n        ...\n" in private
    assert "def first(self):\n        return next(self._scan())" in private
    assert "def __init__(self, rows):\n        self.rows = rows" in private  # dunders are interface
    stub = compact(SOURCE, 3)
    assert 'def lookup(index):\n    """Return the table\'s entry."""\n    ...\n' in stub
    assert "def first(self):\n        ...\n" in stub


def test_a_source_that_does_not_parse_is_kept_as_it_is() -> None:
    assert compact("def broken(:\n" + "x = [" + "1, " * 100 + "]\n", 3).startswith("def broken(:")


def test_a_compacted_prompt_changes_only_the_source_it_shows() -> None:
    prompt = prompts.render([("test_t.py", "import t\n"), ("t.py", SOURCE)], ["Create tests"], ["be brief"],
                            "class T:\n")
    assert prompts.compacted(prompt, 0) is prompt
    shorter = prompts.compacted(prompt, 1)
    assert shorter.text == prompt.text.replace(SOURCE.rstrip(), compact(SOURCE, 1).rstrip())
    assert shorter.code_starter == prompt.code_starter and shorter.text.endswith("# be brief\nclass T:\n")
    assert shorter.stable_prefix == len(shorter.text) - len("class T:\n")


def test_fit_takes_the_least_compacted_view_whose_budget_reaches_ntokens() -> None:
    prompt = prompts.render([("t.py", SOURCE)], ["Create tests"], [], "class T:\n")

    def count(text: str) -> int:
        return len(text) // 4

    whole = count(prompt.text)
    as_is = prompts.fit(prompt, count, whole + 600, 512)
    assert as_is is not None and as_is.prompt is prompt and as_is.level == 0
    elided = prompts.fit(prompt, count, whole, 512)
    assert elided is not None and elided.level == 1 and elided.full_tokens == whole
    assert elided.budget >= 512 and elided.tokens == count(elided.prompt.text) < whole
    # No level reaches ntokens: the most compact one that leaves a budget at all.
    stub = count(prompts.compacted(prompt, 3).text)
    tight = prompts.fit(prompt, count, stub + 10, 512)
    assert tight is not None and tight.level == 3 and 0 < tight.budget < 512
    assert prompts.fit(prompt, count, stub, 512) is None
