"""Values of the module's own making: objects of its classes, and the values it passes itself."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from symergion.config.schema import VerifySpec
from symergion.engine.fake import FakeEngine
from symergion.gitrepo import GitRepo
from symergion.verify import examples, fixture, guide, objects, openers, params
from symergion.verify.candidate import verify_candidate
from symergion.verify.repair import repair_candidate
from symergion.verify.sandbox import Sandbox
from tests.helpers.verify import commit_files, needs_bwrap
from tests.verify.test_guide import guided_in_sandbox

CORE = '''import re

_comma = re.compile(r",")
_semicolon = re.compile(r";")


class Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def peek(self, count: int) -> str:
        return self.text[self.position:self.position + count]

    def advance(self, count: int) -> str:
        taken = self.peek(count)
        self.position += len(taken)
        return taken


def split_on(regex: "re.Pattern[str]", text):
    return regex.split(text)


def first_word(cursor: Cursor) -> str:
    word = ""
    while cursor.peek(1).isalpha():
        word += cursor.advance(1)
    return word


def skip_spaces(cursor):
    while cursor.peek(1) == " ":
        cursor.advance(1)
    return cursor.position


def fields(text):
    return split_on(_comma, text) + split_on(_semicolon, text)
'''
PARSER = CORE + '''

from typing import NamedTuple, Optional


class Token(NamedTuple):
    kind: str
    text: str


def maybe(cursor: Optional["Cursor"], token: Token):
    return cursor, token
'''


def functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_a_parameter_annotated_with_or_used_as_a_class_of_the_module_holds_its_object() -> None:
    tree = ast.parse(PARSER)
    found = functions(tree)
    assert params.parameter_kind(tree, found["first_word"], "cursor") == "instance Cursor"  # annotated
    assert params.parameter_kind(tree, found["maybe"], "cursor") == "instance Cursor"  # Optional["..."]
    # No annotation: ``peek``, ``advance`` and ``position`` are Cursor's alone.
    assert params.parameter_kind(tree, found["skip_spaces"], "cursor") == "instance Cursor"
    # A NamedTuple is built in ways the method does not read: no object of it is built.
    assert params.parameter_kind(tree, found["maybe"], "token") == ""
    assert set(objects.buildable_classes(tree)) == {"Cursor"}


def test_the_module_level_values_the_module_passes_a_parameter_are_its_own_values() -> None:
    tree = ast.parse(PARSER)
    found = functions(tree)
    assert objects.module_values(tree, found["split_on"], "regex") == ["_comma", "_semicolon"]
    assert objects.module_values(tree, found["split_on"], "text") == []  # a local, not the module's
    assert objects.module_values(tree, found["first_word"], "cursor") == []  # never called here


def small_model(prompt: str) -> str:
    """Complete a string, a bare value (as a small model does: ``1``), or an expected value."""
    if prompt.endswith("= '"):
        return "ab cd'\n"
    return "1\n" if prompt.endswith(" = ") else "None)\n"


def test_a_guided_test_builds_the_object_a_parameter_holds_and_takes_the_modules_own_values() -> None:
    engine = FakeEngine("fake", small_model)
    asked: list[str] = []

    def sample(prompt: str, max_tokens: int, stable_prefix: int, seed: int) -> Iterable[str]:
        asked.append(prompt.rsplit("\n", 1)[-1])
        return engine.generate(prompt, max_tokens=max_tokens, stable_prefix=stable_prefix)

    starter = examples.test_case_starter("lib/parser.py", "test_parser.py")
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask("# lib/parser.py\nSOURCE\n\n" + starter, starter, PARSER,
                                              "parser", "test_parser.py"),
                             guide.GuideOptions(budget=800, variants=2, sample=sample))
    # The constructor's parameter is the model's to write; the object and the call are the method's.
    assert ("    def test_first_word(self):\n        text = 'ab cd'\n        cursor = parser.Cursor(text)\n"
            "        result = parser.first_word(cursor)\n") in done.text
    skip = "    def test_skip_spaces(self):\n        text = 'ab cd'\n        cursor = parser.Cursor(text)\n"
    assert skip in done.text
    # The pattern the module passes itself, never the model's ``1``; a variant takes the next one.
    split = "    def test_split_on(self):\n        regex = parser._comma\n        text = 'ab cd'\n"
    assert split in done.text
    assert "    def test_split_on_2(self):\n        regex = parser._semicolon\n" in done.text
    assert "cursor = 1" not in done.text and "regex = 1" not in done.text
    assert not any(line.endswith(("cursor = ", "regex = ")) for line in asked)
    ast.parse(done.text)


LINKED = '''class Link:
    def __init__(self, following: "Link"):
        self.following = following


class Source:
    def __init__(self, stream):
        self.text = stream.read()


def length(link: Link):
    return 1 + length(link.following) if link.following else 1


def lines(source: Source):
    return source.text.splitlines()
'''


def test_a_class_that_takes_its_own_kind_is_built_once_and_an_objects_file_gets_the_fixture() -> None:
    engine = FakeEngine("fake", small_model)
    starter = examples.test_case_starter("lib/linked.py", "test_linked.py")
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask("# lib/linked.py\nSOURCE\n\n" + starter, starter, LINKED,
                                              "linked", "test_linked.py"),
                             guide.GuideOptions(budget=400))
    # An object of Link needs a Link: the inner one is the model's value, not another build.
    assert ("    def test_length(self):\n        following = 1\n        link = linked.Link(following)\n"
            "        result = linked.length(link)\n") in done.text
    # Source reads a stream: its object is built on the fixture's file, so the file has the fixture.
    assert "        stream = open(self.path)\n        self.addCleanup(stream.close)\n" \
           "        source = linked.Source(stream)\n" in done.text
    assert "def setUp(self):" in done.text
    tree = ast.parse(LINKED)
    only_lines = [t for t in openers.targets(LINKED, "linked") if t.name == "lines"]
    assert fixture.needs_fixture(tree, only_lines)  # through the object it builds, not its own value
    ast.parse(done.text)


@needs_bwrap
def test_tests_on_objects_and_module_values_check_what_the_code_returned(tmp_path: Path) -> None:
    engine = FakeEngine("fake", small_model)
    done, first, repaired = guided_in_sandbox(tmp_path, "parser", CORE, engine, budget=800)
    assert "cursor = parser.Cursor(text)" in done.text and "regex = parser._comma" in done.text
    # Every call ran on a value of the kind the code uses: nothing raised, only guesses failed.
    assert first.errors == 0
    assert repaired.rerun is not None and repaired.rerun.ok
    assert "assertRaises" not in repaired.text  # no test records Python rejecting a value
    assert "self.assertEqual(result, 'ab')" in repaired.text  # first_word(Cursor('ab cd'))
    assert "self.assertEqual(result, ['ab cd'])" in repaired.text  # split_on(_comma, 'ab cd')


RECORDED = '''import unittest

from utils import parser


class TestParser(unittest.TestCase):
    def test_first_word(self):
        cursor = 1
        with self.assertRaises(AttributeError):
            parser.first_word(cursor)

    def test_split_on(self):
        with self.assertRaises(AttributeError):
            parser.split_on(1, 'a,b')
'''


@needs_bwrap
def test_a_test_that_records_python_rejecting_a_value_is_tried_with_the_modules_own(
        calc_repo: Path, sandbox: Sandbox) -> None:
    # ``1.peek`` and ``1.split`` raise Python's AttributeError. The code reads a Cursor there, and
    # passes split_on its own patterns: the repair builds the one and passes the other.
    repo = GitRepo(calc_repo)
    commit = commit_files(calc_repo, {"utils/parser.py": CORE, "test_parser.py": RECORDED})
    spec = VerifySpec(coverage=True, runs=2)
    first = verify_candidate(repo, commit, spec, "utils/parser.py", "test_parser.py", sandbox=sandbox)
    assert first.ok and first.records_error == 2
    repaired = repair_candidate(repo, commit, spec, "utils/parser.py", "test_parser.py", first,
                                sandbox=sandbox)
    assert ("        cursor = parser.Cursor('abc')\n        result = parser.first_word(cursor)\n"
            "        self.assertEqual(result, 'abc')\n") in repaired.text
    assert ("        result = parser.split_on(parser._comma, 'a,b')\n"
            "        self.assertEqual(result, ['a', 'b'])\n") in repaired.text
    assert repaired.rerun is not None and repaired.rerun.ok and repaired.rerun.records_error == 0


IMPORTS = '''import argparse
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from decimal import Decimal


def double(x: Fraction):
    return x.numerator * 2


def options(args: argparse.Namespace):
    return sorted(vars(args))


def scaled(value: "Decimal", factor: Sequence):
    return value * len(factor)


def size(path: Path, count: Fraction):
    return path.stat().st_size + count.numerator


def spaced(text: Fraction):
    return text.startswith(" ")


def wrapped(func: Fraction):
    return func
'''


def test_a_parameter_annotated_with_a_class_the_module_imports_holds_its_object() -> None:
    tree = ast.parse(IMPORTS)
    found = functions(tree)
    assert params.value_kind(tree, found["double"], "x") == "imported Fraction"
    assert params.value_kind(tree, found["options"], "args") == "imported argparse.Namespace"
    # Imported only for the type checker: not there when the code runs, so no object is built.
    assert params.value_kind(tree, found["scaled"], "value") == ""
    # ``typing`` describes values, it builds none.
    assert params.value_kind(tree, found["scaled"], "factor") == "list"
    # A name that says a file that exists keeps the fixture's file; the annotation is the rest's.
    assert params.value_kind(tree, found["size"], "path") == "path"
    assert params.value_kind(tree, found["size"], "count") == "imported Fraction"
    # So does a name that says a callable: an imported type alias (``AnyCallable``) is no class.
    assert params.value_kind(tree, found["wrapped"], "func") == "callable"
    # The code's own evidence wins over the annotation: ``startswith`` is a string's.
    assert params.value_kind(tree, found["spaced"], "text") == "str"


def test_a_guided_value_of_an_imported_class_is_built_through_the_module_and_a_variant_is_the_models(
        ) -> None:
    engine = FakeEngine("fake", small_model)
    asked: list[str] = []

    def sample(prompt: str, max_tokens: int, stable_prefix: int, seed: int) -> Iterable[str]:
        asked.append(prompt.rsplit("\n", 1)[-1])
        return engine.generate(prompt, max_tokens=max_tokens, stable_prefix=stable_prefix)

    starter = examples.test_case_starter("lib/mod.py", "test_mod.py")
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask("# lib/mod.py\nSOURCE\n\n" + starter, starter, IMPORTS,
                                              "mod", "test_mod.py"),
                             guide.GuideOptions(budget=800, variants=2, sample=sample))
    # The greedy test builds the object with the class's defaults, no model asked.
    assert "    def test_double(self):\n        x = mod.Fraction()\n" in done.text
    assert "    def test_options(self):\n        args = mod.argparse.Namespace()\n" in done.text
    # A variant has the model's own value: kept where the class needs what no default gives.
    assert "        x = " in asked and "    def test_double_2(self):\n        x = 1\n" in done.text
    ast.parse(done.text)


REJECTED = '''import unittest

from utils import mod


class TestMod(unittest.TestCase):
    def test_double(self):
        x = 'abc'
        with self.assertRaises(AttributeError):
            mod.double(x)

    def test_options(self):
        with self.assertRaises(TypeError):
            mod.options(1)

    def test_usage(self):
        with self.assertRaises(AttributeError):
            mod.usage(1)

    def test_defaults(self):
        self.assertEqual(mod.Fraction(), 0)
        self.assertEqual(vars(mod.argparse.Namespace()), {})
'''


USAGE = '''

from argparse import ArgumentParser


def usage(parser: ArgumentParser):
    return parser.format_usage()
'''


@needs_bwrap
def test_a_value_python_rejected_is_retried_with_an_object_of_the_imported_class(
        calc_repo: Path, sandbox: Sandbox) -> None:
    # Built bare by a passing test of the file: Fraction and argparse.Namespace take their
    # defaults, so the repair builds them so. No test builds an ArgumentParser: not tried.
    repo = GitRepo(calc_repo)
    source = IMPORTS.split("\n\n\ndef scaled")[0] + USAGE  # double, options and usage
    commit = commit_files(calc_repo, {"utils/mod.py": source, "test_mod.py": REJECTED})
    spec = VerifySpec(coverage=True, runs=2)
    first = verify_candidate(repo, commit, spec, "utils/mod.py", "test_mod.py", sandbox=sandbox)
    assert first.ok and first.records_error == 3
    repaired = repair_candidate(repo, commit, spec, "utils/mod.py", "test_mod.py", first, sandbox=sandbox)
    assert ("        x = mod.Fraction()\n        result = mod.double(x)\n"
            "        self.assertEqual(result, 0)\n") in repaired.text
    assert ("        result = mod.options(mod.argparse.Namespace())\n"
            "        self.assertEqual(result, [])\n") in repaired.text
    assert "        with self.assertRaises(AttributeError):\n            mod.usage(1)\n" in repaired.text
    assert repaired.rerun is not None and repaired.rerun.ok and repaired.rerun.records_error == 1
