"""Stopping and trimming generated files."""

from __future__ import annotations

import ast

from symergion.verify.finish import Finisher

STARTER = "import unittest\n"


def feed(finisher: Finisher, text: str, step: int = 3) -> tuple[str, str]:
    """Feed ``text`` token by token; return (text so far, stop reason)."""
    out = ""
    for i in range(0, len(text), step):
        out += text[i : i + step]
        reason = finisher.check(out)
        if reason:
            return out, reason
    return out, "eos"


def test_degenerate_loop_stops_early_and_is_cut():
    finisher = Finisher("test_x.py", STARTER)
    good = STARTER + "\n\nclass T(unittest.TestCase):\n    def test_a(self):\n        pass\n"
    text, reason = feed(finisher, good + "    mock" + "_mock" * 200)
    assert reason == "repetition"
    assert len(text) < len(good) + 200, "must stop long before the loop runs out of budget"
    done = finisher.finish(text, reason)
    assert "mock_mock" not in done.text
    ast.parse(done.text)
    assert done.text.startswith(good.rstrip())
    assert done.trimmed_chars > 0 and done.stop == "repetition"


def test_repeated_block_keeps_one_copy():
    finisher = Finisher("test_x.py", STARTER)
    block = "    def test_same(self):\n        self.assertEqual(1, 1)\n"
    text, reason = feed(finisher, STARTER + "class T(unittest.TestCase):\n" + block * 6)
    assert reason == "repetition"
    done = finisher.finish(text, reason)
    assert done.text.count("def test_same") == 1
    ast.parse(done.text)


def test_stops_after_main_guard_and_at_second_file():
    body = (STARTER + "class T(unittest.TestCase):\n    pass\n\n\n"
            "if __name__ == '__main__':\n    unittest.main()\n")
    finisher = Finisher("test_x.py", STARTER)
    text, reason = feed(finisher, body + "print('another file')\nimport os\n")
    assert reason == "complete"
    assert finisher.finish(text, reason).text == body

    finisher = Finisher("test_x.py", STARTER)
    text, reason = feed(finisher, STARTER + "x = 1\n\nimport unittest\nmore = 2\n")
    assert reason == "restart"
    assert finisher.finish(text, reason).text == STARTER + "x = 1\n"


def test_fence_stops():
    finisher = Finisher("test_x.py", STARTER)
    text, reason = feed(finisher, STARTER + "x = 1\n```\nSome explanation\n")
    assert reason == "fence"
    assert finisher.finish(text, reason).text == STARTER + "x = 1\n"


def test_budget_cut_keeps_longest_parsing_prefix():
    finisher = Finisher("test_x.py", STARTER)
    complete = STARTER + "class T(unittest.TestCase):\n    def test_a(self):\n        pass\n"
    raw = complete + "    def test_b(self):\n        x = foo(1,\n"
    done = finisher.finish(raw, "budget")
    assert done.parses is True
    assert done.text == complete
    assert done.trimmed_lines == 2


def test_complete_file_is_unchanged():
    finisher = Finisher("test_x.py", STARTER)
    raw = STARTER + "\n\nclass T(unittest.TestCase):\n    def test_a(self):\n        pass\n"
    done = finisher.finish(raw, "eos")
    assert done.text == raw and done.trimmed_chars == 0 and done.stop == "eos"


def test_non_python_drops_partial_last_line_on_budget():
    finisher = Finisher("notes.txt", "")
    done = finisher.finish("line one\nline two\nhalf a li", "budget")
    assert done.text == "line one\nline two\n" and done.parses is None


def test_legitimate_repeats_do_not_stop():
    """Similar tests are not exact repeats; a dozen counting ones is within what real code
    writes (tests/verify/test_shape.py stops longer counting runs)."""
    finisher = Finisher("test_x.py", STARTER)
    text = STARTER + "".join(
        f"    def test_{i}(self):\n        self.assertEqual(f({i}), {i})\n" for i in range(12)
    ) + "# " + "=" * 70 + "\n"
    assert feed(finisher, text)[1] == "eos"


def test_text_the_parser_gives_up_on_is_not_a_crash():
    """Deep nesting and long operator runs make ast.parse raise RecursionError/MemoryError."""
    for junk in ("(" * 200_000, "-" * 100_000, "x = " + "[" * 50_000):
        finisher = Finisher("test_x.py", "import unittest\n")
        done = finisher.finish("import unittest\n" + junk + "\n", "budget")
        assert done.text == "import unittest\n" and done.parses is True


def test_nothing_that_parses_gives_an_empty_text():
    done = Finisher("test_x.py", "").finish("def broken(:\n", "eos")
    assert done.text == "" and done.parses is False
