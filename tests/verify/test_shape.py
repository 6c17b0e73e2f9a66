"""Degenerate generation by shape: real tables and cases are kept, counting loops are stopped."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from symergion.verify.finish import Finisher
from symergion.verify.shape import FUNCTION_LIMITS, TOP_LIMITS, ShapeRun, ShapeRuns
from tests.verify.test_finish import feed

DATA = Path(__file__).parent / "data" / "shape"
REAL = sorted(DATA.glob("*.py.txt"))

# The start of a test file as the model wrote it in a sync on a copy of the standard library's
# bisect module, before it fell into the counting loop.
BISECT_HEAD = '''import unittest
import bisect


class TestBisect(unittest.TestCase):
    def test_bisect_left(self):
        self.assertEqual(bisect.bisect_left([1, 2, 3], 2), 1)

    def test_insort(self):
        a = [1, 2, 3]
        bisect.insort(a, 2)
        self.assertEqual(a, [1, 2, 2, 3])
'''


def runs_in(text: str) -> list[ShapeRun]:
    watch = ShapeRuns()
    return [run for line in text.splitlines() if (run := watch.feed(line)) is not None]


def counting_loop(first: str, number: int, count: int, indent: str = "        ") -> str:
    """``t = 55``, ``u = 56`` ...: one letter and one number counted on per line."""
    return "".join(f"{indent}{chr(ord(first) + i)} = {number + i}\n" for i in range(count))


def shape_of(line: str) -> str:
    watch = ShapeRuns()
    watch.feed(line)
    watch.feed(line)
    run = watch.current(1)
    assert run is not None
    return run.shape


def test_shape_abstracts_names_numbers_and_strings_and_keeps_the_rest():
    assert shape_of("t = 55") == shape_of("x = 0x1F") == "0|N = 0"
    assert shape_of("self.assertEqual(f('a'), 1.5e3)") == "0|N . N ( N ( S ) , 0 )"
    assert shape_of("    return not x is None") == "4|return not N is None"
    assert shape_of('x = rb"\\"" + f"{y}"  # note') == "0|x = S + S".replace("x", "N")


def test_statements_span_lines_and_strings_hide_their_content():
    text = ("x = {\n    'a': 1,\n    'b': 2,\n}\n"
            'doc = """\nx = 1\nx = 1\nx = 1\n"""\n'
            "y = f(1,\n      2)\n")
    watch = ShapeRuns()
    for line in text.splitlines():
        watch.feed(line)
    run = watch.current(1)
    assert run is None, "three statements of three shapes: no run"
    assert [s.key for s in watch._recent] == [
        "0|N = { S : 0 , S : 0 , }", "0|N = S", "0|N = N ( 0 , 0 )"]


@pytest.mark.parametrize("path", REAL, ids=[p.name.split(".")[0] for p in REAL])
def test_real_tables_enums_imports_and_cases_do_not_stop(path: Path):
    text = path.read_text()
    ast.parse(text)
    assert runs_in(text) == []
    finisher = Finisher("test_real.py", "")
    out, reason = feed(finisher, text)
    assert reason == "eos"
    done = finisher.finish(out, reason)
    assert done.text == text and done.trimmed_lines == 0


def test_real_samples_reach_near_the_limits():
    """The samples are long enough to matter: each scope's limits are tested near their edge."""
    longest: dict[str, int] = {}
    for path in REAL:
        watch = ShapeRuns()
        for line in path.read_text().splitlines():
            watch.feed(line)
            for counting in (False, True):
                run = watch.current(1, counting)
                if run is not None:
                    scope = ("top" if run.top else "function") + ("-counting" if counting else "")
                    longest[scope] = max(longest.get(scope, 0), run.statements)
    assert longest["function"] >= 150  # Lib/test/test_future.py: 155 calls of one shape
    assert longest["top"] >= 60  # Lib/token.py, http.HTTPStatus
    assert longest["function-counting"] == FUNCTION_LIMITS.counting[1] - 1  # test_string_literals
    assert longest["top-counting"] == TOP_LIMITS.counting[1]  # prompt_toolkit: ControlA..ControlZ


def test_counting_loop_of_the_issue_stops_within_a_few_lines_and_is_cut_before_it():
    loop = counting_loop("a", 55, 26)
    finisher = Finisher("test_bisect.py", "import unittest\n")
    out, reason = feed(finisher, BISECT_HEAD + loop + "\n    def test_more(self):\n        pass\n")
    assert reason == "shape-loop"
    generated = out[len(BISECT_HEAD):]
    assert generated.count("\n") == FUNCTION_LIMITS.counting[1] + 1, "stopped on the first line over"
    done = finisher.finish(out, reason)
    assert done.text == BISECT_HEAD, "nothing of the loop is published"
    assert done.stop == "shape-loop"
    assert done.trimmed_lines == FUNCTION_LIMITS.counting[1] + 1
    assert done.trimmed_chars == len(out) - len(BISECT_HEAD)


def test_a_loop_that_opens_a_block_keeps_its_first_line_so_the_file_parses():
    head = BISECT_HEAD + "\n    def test_counting(self):\n"
    finisher = Finisher("test_bisect.py", "import unittest\n")
    out, reason = feed(finisher, head + counting_loop("a", 55, 20))
    assert reason == "shape-loop"
    done = finisher.finish(out, reason)
    assert done.text == head + "        a = 55\n"
    assert done.parses is True


def test_counting_test_methods_stop_but_a_few_are_kept():
    def methods(count: int) -> str:
        return "".join(f"    def test_{i}(self):\n        self.assertEqual(f({i}), {i})\n\n"
                       for i in range(count))

    head = "import unittest\n\n\nclass T(unittest.TestCase):\n"
    # Real code writes up to a dozen such blocks (Lib/test/test_patma.py); the limit is above.
    finisher = Finisher("test_x.py", "import unittest\n")
    assert feed(finisher, head + methods(12))[1] == "eos"

    finisher = Finisher("test_x.py", "import unittest\n")
    out, reason = feed(finisher, head + methods(40))
    assert reason == "shape-loop"
    assert out.count("def test_") == TOP_LIMITS.counting[2] // 2 + 1
    done = finisher.finish(out, reason)
    # The loop is the class's whole body: its first block stays, so that the file parses.
    assert done.text == head + "    def test_0(self):\n        self.assertEqual(f(0), 0)\n"


def test_counting_at_module_level_stops_past_an_alphabet():
    head = "import unittest\n\n"
    lines = "".join(f"VALUE_{i} = {i}\n" for i in range(100))
    finisher = Finisher("test_x.py", "import unittest\n")
    out, reason = feed(finisher, head + lines)
    assert reason == "shape-loop"
    assert out.count("VALUE_") == TOP_LIMITS.counting[1] + 1
    assert finisher.finish(out, reason).text == "import unittest\n"


def test_a_varied_run_of_one_shape_stops_only_past_what_real_code_has():
    head = "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_many(self):\n"
    words = [f"{chr(97 + i % 26)}{chr(97 + i * 7 % 26)}{i * i % 97}" for i in range(400)]
    body = "".join(f"        self.check('{w}', '{w[::-1]}')\n" for w in words)
    finisher = Finisher("test_x.py", "import unittest\n")
    out, reason = feed(finisher, head + body)
    assert reason == "shape-loop"
    assert out.count("self.check") == FUNCTION_LIMITS.shape[1] + 1


@pytest.mark.parametrize("loop", [
    "        self.assertEqual(x, 1)" + "1" * 300,  # a character loop
    "        # the value is the value is the value is the value is the value is the value is",
    "        x = [" + "foo, bar, " * 60,  # a phrase loop inside one line
], ids=["characters", "phrase-in-comment", "phrase-in-list"])
def test_character_and_phrase_loops_stop(loop: str):
    finisher = Finisher("test_x.py", "import unittest\n")
    out, reason = feed(finisher, BISECT_HEAD + loop * 3 + "\n")
    assert reason == "repetition"
    assert len(out) < len(BISECT_HEAD) + 400
    done = finisher.finish(out, reason)
    assert done.text == BISECT_HEAD


def test_repeated_lines_stop_as_repetition():
    finisher = Finisher("test_x.py", "import unittest\n")
    out, reason = feed(finisher, BISECT_HEAD + "        self.assertTrue(a)\n" * 30)
    assert reason == "repetition"
    done = finisher.finish(out, reason)
    assert done.text.startswith(BISECT_HEAD), "the lines before the loop are kept"
    assert done.text.count("self.assertTrue(a)") <= 1


def test_each_line_is_read_once_however_often_check_runs(monkeypatch: pytest.MonkeyPatch):
    """check costs the new text, not the whole text: a line is tokenized once."""
    seen: list[str] = []
    real_feed = ShapeRuns.feed

    def counting_feed(self: ShapeRuns, line: str) -> ShapeRun | None:
        seen.append(line)
        return real_feed(self, line)

    monkeypatch.setattr(ShapeRuns, "feed", counting_feed)
    text = (DATA / "future_annotation_cases.py.txt").read_text()
    finisher = Finisher("test_x.py", "")
    assert feed(finisher, text, step=2)[1] == "eos"
    assert seen == text.splitlines()


def test_non_python_destinations_are_not_read_as_python():
    finisher = Finisher("notes.txt", "")
    text = "".join(f"{chr(97 + i)} = {i}\n" for i in range(26))
    assert feed(finisher, text)[1] == "eos"
