"""Guided generation: one short test per public name, kept only as far as it parses."""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from symergion.config.schema import VerifySpec
from symergion.engine.base import GenerationRequest
from symergion.engine.fake import FakeEngine
from symergion.gitrepo import GitRepo
from symergion.verify import constants, examples, fixture, guide, openers, params
from symergion.verify.candidate import verify_candidate
from symergion.verify.drive import Ask, GenerateMany
from symergion.verify.repair import RepairResult, repair_candidate
from symergion.verify.result import VerifyResult
from symergion.verify.sandbox import Sandbox
from tests.helpers.git import git
from tests.helpers.verify import CALC, commit_files, needs_bwrap

SOURCE = '''"""Shapes."""
import os

__all__ = ["area", "Square", "scale"]


def area(w, h):
    return w * h


def _helper():
    pass


def unexported():
    pass


class Square:
    def __init__(self, side):
        self.side = side


def scale(x, factor=2):
    return x * factor
'''

STARTER = examples.test_case_starter("lib/shapes.py", "test_shapes.py")


def test_public_names_follow_all_and_functions_come_before_classes() -> None:
    assert openers.public_names(SOURCE) == [("area", "function"), ("Square", "class"), ("scale", "function")]
    assert openers.public_names("def a():\n    pass\n\n\ndef _b():\n    pass\n\n\nclass C:\n    pass\n") == [
        ("a", "function"), ("C", "class")]
    assert openers.public_names("def broken(:\n") == []
    opened = [t.opener for t in openers.targets(SOURCE, "shapes", bind=False)]
    assert opened == [
        "    def test_area(self):\n        self.assertEqual(shapes.area(",
        "    def test_scale(self):\n        self.assertEqual(shapes.scale(",
        "    def test_square(self):\n        square = shapes.Square(",
    ]
    # A class named like the module gets a variable that does not shadow the module.
    assert openers.targets("class shapes:\n    pass\n", "shapes", bind=False)[0].opener.endswith(
        "shapes_object = shapes.shapes(")
    assert len(openers.targets(SOURCE, "shapes", limit=1)) == 1


def test_the_worked_example_opens_its_tests_like_the_guide() -> None:
    (_, _), (_, tests) = examples.few_shot_files("lib/x.py", "test_x.py")
    for target in openers.targets(examples.EXAMPLE_SOURCE, "temperature"):
        if target.kind == "method":
            continue
        first, second = target.opener.split("\n")
        assert first in tests.split("\n") and second in tests


def test_a_literal_all_that_names_no_function_or_class_falls_back_to_public_names() -> None:
    source = ('__all__ = ["TABLE", "helper"]\nfrom os.path import join as helper\nTABLE = {}\n\n\n'
              'def define(name, op):\n    TABLE[name] = op\n\n\ndef _private():\n    pass\n\n\n'
              'class Table:\n    pass\n')
    assert openers.public_names(source) == [("define", "function"), ("Table", "class")]
    # An __all__ that names one function defined here still decides alone.
    assert openers.public_names(source.replace('"helper"', '"define"')) == [("define", "function")]


def test_a_name_bound_to_a_function_at_import_time_is_a_target_with_that_functions_parameters() -> None:
    # ``__all__`` lists the alias; the platform's choice is made in a try at import time.
    source = ('__all__ = ["ask", "user"]\n\n\ndef unix_ask(prompt, stream=None):\n    return prompt\n\n\n'
              'def fallback_ask(prompt, stream=None):\n    return prompt\n\n\n'
              'def user():\n    return "me"\n\n\ntry:\n    import termios\nexcept ImportError:\n'
              '    ask = fallback_ask\nelse:\n    ask = unix_ask\n')
    assert openers.public_names(source) == [("user", "function"), ("ask", "function")]
    ask = next(t for t in openers.targets(source, "mod") if t.name == "ask")
    assert ask.binds == (("prompt", "prompt"),)  # fallback_ask's parameters: the first in the source
    assert openers.call_text(ask, "mod") == "mod.ask(prompt)"
    # Without __all__, an alias is public when it is the only public way to a private function.
    private = "def _dumps(obj):\n    return str(obj)\n\n\ndumps = _dumps\nalso = dumps_too = None\n"
    assert openers.public_names(private) == [("dumps", "function")]
    public = "def dumps(obj):\n    return str(obj)\n\n\nencode = dumps\n"
    assert openers.public_names(public) == [("dumps", "function")]


def test_with_more_targets_than_tests_the_largest_are_kept_in_source_order() -> None:
    small = "".join(f"def tiny{i}(x):\n    return x\n\n\n" for i in range(3))
    large = "def big(x):\n    if x:\n        x += 1\n    y = x * 2\n    return y\n\n\n"
    klass = ("class Box:\n    def __init__(self, v):\n        self.v = v\n\n"
             "    def fill(self, n):\n        for i in range(n):\n            self.v += i\n"
             "        return self.v\n\n    def peek(self):\n        return self.v\n")
    source = small + large + klass
    assert [t.name for t in openers.targets(source, "m", limit=10)] == [
        "tiny0", "tiny1", "tiny2", "big", "Box", "Box.fill", "Box.peek"]
    # Three tests: the two largest functions, and the method takes its class along.
    assert [t.name for t in openers.targets(source, "m", limit=3)] == ["big", "Box", "Box.fill"]
    assert [t.name for t in openers.targets(source, "m", limit=4)] == ["tiny0", "big", "Box", "Box.fill"]


MEMBERS = '''class Box:
    def __init__(self, size):
        self._size = size

    @property
    def size(self):
        return self._size * 2

    @size.setter
    def size(self, value):
        self._size = value

    @staticmethod
    def parse(text):
        return Box(int(text))

    @classmethod
    def empty(cls, kind):
        return cls(0)

    @functools.wraps(print)
    def wrapped(self):
        pass
'''


def test_a_property_is_read_and_static_and_class_methods_bind_their_own_parameters() -> None:
    assert openers.public_members(MEMBERS, "Box") == [
        ("size", "property"), ("parse", "staticmethod"), ("empty", "classmethod")]
    found = {t.name: t for t in openers.targets(MEMBERS, "boxes")}
    assert found["Box.size"].binds == () and openers.call_text(found["Box.size"], "boxes") == "box.size"
    assert found["Box.parse"].binds == (("text", "text"),)  # no instance to skip
    assert found["Box.empty"].binds == (("kind", "kind"),)  # the class is skipped
    assert openers.call_text(found["Box.parse"], "boxes") == "box.parse(text)"
    engine = FakeEngine("fake", lambda p: "2\n" if p.endswith(" = ") else "4)\n")
    starter = examples.test_case_starter("lib/boxes.py", "test_boxes.py")
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask("SOURCE\n" + starter, starter, MEMBERS, "boxes",
                                              "test_boxes.py"),
                             guide.GuideOptions(budget=300))
    assert ("    def test_box_size(self):\n        size = 2\n        box = boxes.Box(size)\n"
            "        result = box.size\n        self.assertEqual(result, 4)\n") in done.text
    ast.parse(done.text)
    # Without bound parameters, the property's opener reads it too.
    [unbound] = [t for t in openers.targets(MEMBERS, "boxes", bind=False) if t.name == "Box.size"]
    assert openers.method_opener(unbound, "        box = boxes.Box(2)", "boxes").endswith(
        "        self.assertEqual(box.size, ")


ROUNDTRIP = '''def compress(data, level=9):
    return data[::-1]


def decompress(data):
    return data[::-1]


def rgb_to_hsv(r, g, b):
    return b, g, r


def hsv_to_rgb(h, s, v):
    return v, s, h


def encode(in_file, out_file):
    out_file.write(in_file.read())


def decode(in_file):
    return in_file.read()
'''


def test_functions_that_undo_each_other_get_a_round_trip_test_whose_oracle_is_the_value() -> None:
    tree = ast.parse(ROUNDTRIP)
    pairs = openers.roundtrips(tree, openers.targets(ROUNDTRIP, "codec"))
    # One direction per pair; streams the method writes itself are no value to round-trip.
    assert [(t.name, t.inverse) for t in pairs] == [("compress", "decompress"), ("rgb_to_hsv", "hsv_to_rgb")]
    assert openers.call_text(pairs[0], "codec") == "codec.decompress(codec.compress(data))"
    assert openers.call_text(pairs[1], "codec") == "codec.hsv_to_rgb(*codec.rgb_to_hsv(r, g, b))"
    engine = FakeEngine("fake", lambda p: "1\n")
    starter = examples.test_case_starter("lib/codec.py", "test_codec.py")
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask("SOURCE\n" + starter, starter, ROUNDTRIP, "codec",
                                              "test_codec.py"),
                             guide.GuideOptions(budget=300))
    assert ("    def test_compress_decompress(self):\n        data = [1]\n"
            "        result = codec.decompress(codec.compress(data))\n"
            "        self.assertEqual(result, data)\n") in done.text
    assert ("        result = codec.hsv_to_rgb(*codec.rgb_to_hsv(r, g, b))\n"
            "        self.assertEqual(result, (r, g, b))\n") in done.text
    assert done.tested[-2:] == ["compress+decompress", "rgb_to_hsv+hsv_to_rgb"]
    ast.parse(done.text)
    # Variant rounds sample other values for the targets; a round trip has its one test.
    sampled = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                                guide.GuidedTask("SOURCE\n" + starter, starter, ROUNDTRIP, "codec",
                                                 "test_codec.py"),
                                guide.GuideOptions(budget=600, variants=2,
                                                   sample=lambda p, n, s, seed: iter(["2", "\n"])))
    assert "def test_compress_2(self)" in sampled.text and "test_compress_decompress_2" not in sampled.text


def test_a_parameter_whose_missing_default_the_code_rejects_is_bound_by_keyword() -> None:
    # ``new`` hands its digest to the class, whose constructor raises without one: a test that
    # leaves it out tests that error only. ``msg`` is optional in practice, so it stays out.
    source = ('class Mac:\n    def __init__(self, key, msg=None, digest=""):\n'
              '        if not digest:\n            raise TypeError("digest is required")\n'
              '        if not isinstance(key, bytes):\n            raise TypeError(key)\n'
              '        self.key = key\n        if msg is not None:\n            self.update(msg)\n\n'
              '    def update(self, msg):\n        pass\n\n\n'
              'def new(key, msg=None, digest=""):\n    return Mac(key, msg, digest=digest)\n\n\n'
              'def check(value, limit=None):\n    if limit is None:\n        raise ValueError("no limit")\n'
              '    return value < limit\n\n\n'
              'def loose(value, limit=None):\n    if limit is None:\n        limit = 10\n'
              '    return value < limit\n')
    tree = ast.parse(source)
    new = next(t for t in openers.targets(source, "mod") if t.name == "new")
    assert new.binds == (("key", "key"), ("digest", "digest=digest"))
    check = next(t for t in openers.targets(source, "mod") if t.name == "check")
    assert check.binds == (("value", "value"), ("limit", "limit=limit"))
    loose = next(t for t in openers.targets(source, "mod") if t.name == "loose")
    assert loose.binds == (("value", "value"),)
    mac = next(t for t in openers.targets(source, "mod") if t.name == "Mac")
    assert mac.binds == (("key", "key"), ("digest", "digest=digest"))
    # The evidence of the class's constructor reaches the function that builds it: key is bytes.
    assert params.parameter_kind(tree, tree.body[1], "key") == "bytes"
    assert openers.rejects_missing(tree, tree.body[1], "digest", depth=0) is False  # only deeper


BOUND = '''"""Parameters of every kind."""


def join(a, b=1, *parts, sep, end="", **options):
    return sep.join([a, *parts]) + end


def shapes(result, self):
    return result


class Box:
    def __init__(self, box, /, size, *, label):
        self.size = size

    def put(self, item, *, force=False):
        return item

    def clear(self):
        return None


class Empty:
    pass
'''


def test_required_parameters_are_bound_to_variables_named_after_them() -> None:
    found = {t.name: t for t in openers.targets(BOUND, "shapes")}
    # No default, not *args or **kwargs; a keyword-only one is passed by keyword.
    assert found["join"].binds == (("a", "a"), ("sep", "sep=sep"))
    # Names that would shadow the module, the instance, the result or the class variable get a suffix.
    assert found["shapes"].binds == (("result_value", "result_value"), ("self_value", "self_value"))
    assert found["Box"].binds == (("box_value", "box_value"), ("size", "size"), ("label", "label=label"))
    assert found["Box.put"].binds == (("item", "item"),) and found["Box.clear"].binds == ()
    assert found["Empty"].binds == ()
    assert found["join"].opener == "    def test_join(self):\n"
    assert openers.call_text(found["join"], "shapes") == "shapes.join(a, sep=sep)"
    assert openers.call_text(found["Box.put"], "shapes") == "box.put(item)"
    # A function with optional parameters only keeps the bare call as its opener (the model may
    # pass some); one without any parameter gets its call written, the model's arguments would
    # only raise TypeError.
    assert openers.targets("def now(tz=None):\n    pass\n", "clock")[0].opener.endswith(
        "self.assertEqual(clock.now(")
    [today] = openers.targets("def today():\n    pass\n", "clock")
    assert today.opener == "    def test_today(self):\n" and today.binds == ()
    assert openers.call_text(today, "clock") == "clock.today()"
    engine = FakeEngine("fake", lambda p: "'monday')\n")
    starter = examples.test_case_starter("lib/clock.py", "test_clock.py")
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask("SOURCE\n" + starter, starter, "def today():\n    pass\n",
                                              "clock", "test_clock.py"),
                             guide.GuideOptions(budget=50))
    assert ("    def test_today(self):\n        result = clock.today()\n"
            "        self.assertEqual(result, 'monday')\n") in done.text


def test_a_bound_value_is_one_expression_of_builtins_and_names_defined_before() -> None:
    assert guide.value_ok("'*.txt'", {"shapes"}) and guide.value_ok("[1, 2]", set())
    assert guide.value_ok("len(names)", {"names"}) and guide.value_ok("shapes.Box(1)", {"shapes"})
    assert not guide.value_ok("glob_open_flags", {"shapes"})  # a name the test never defined
    assert not guide.value_ok("1, 2)", set()) and not guide.value_ok("", set())
    assert not guide.value_ok("self.value", set())


def bound_replies(prompt: str) -> str:
    """Complete bound values and assertions as a small model does: well, or with an unknown name."""
    if prompt.endswith("        w = "):
        return "2\n        h = 5\n"  # only the first line is the value
    if prompt.endswith("        h = "):
        return "3\n"
    if prompt.endswith("        x = "):
        return "factor_of_x\n"  # never defined: the test is left out
    if prompt.endswith("        side = "):
        return "4\n"
    if prompt.endswith("self.assertEqual(result, "):
        return "6)\n\n    def test_more(self):\n"
    return "[[[\n"


def test_a_bound_test_defines_every_name_its_call_uses() -> None:
    engine = FakeEngine("fake", bound_replies)
    prompt = "# lib/shapes.py\nSOURCE\n\n" + STARTER
    done = guide.guided_file(run(engine),
                             guide.GuidedTask(prompt, STARTER, SOURCE, "shapes", "test_shapes.py"),
                             guide.GuideOptions(budget=400))
    assert done.tested == ["area", "Square"] and done.skipped == ["scale"]
    assert done.text == STARTER + (
        "    def test_area(self):\n        w = 2\n        h = 3\n"
        "        result = shapes.area(w, h)\n        self.assertEqual(result, 6)\n\n"
        "    def test_square(self):\n        side = 4\n        square = shapes.Square(side)\n"
        "        self.assertIsInstance(square, shapes.Square)\n"
        "\n\nif __name__ == \"__main__\":\n    unittest.main()\n")
    ast.parse(done.text)
    # Each value's prompt continues the previous one, so the KV-cache prefix carries over.
    assert engine.calls[0].endswith("        w = ")
    assert engine.calls[1] == engine.calls[0] + "2\n        h = "


def test_the_file_ends_with_the_tests_written_when_the_next_one_might_not_fit_the_context() -> None:
    engine = FakeEngine("fake", bound_replies)
    prompt = "# lib/shapes.py\nSOURCE\n\n" + STARTER
    # Room for the first test only: the context holds the prompt and 180 tokens more.
    n_ctx = engine.count_tokens(prompt) + 180
    asked: list[str] = []

    def room(text: str) -> int:
        asked.append(text)
        return n_ctx - engine.count_tokens(text)

    done = guide.guided_file(run(engine),
                             guide.GuidedTask(prompt, STARTER, SOURCE, "shapes", "test_shapes.py"),
                             guide.GuideOptions(budget=400, room=room))
    assert done.tested == ["area"] and "def test_square" not in done.text
    assert done.text.endswith("self.assertEqual(result, 6)\n\n\nif __name__ == \"__main__\":\n"
                              "    unittest.main()\n")
    ast.parse(done.text)
    assert asked[0] == prompt and asked[1].endswith("self.assertEqual(result, 6)\n\n")
    assert not any("Square" in call for call in engine.calls)  # the model was not asked again


def test_a_bound_call_without_a_usable_expected_value_still_gets_an_assertion() -> None:
    engine = FakeEngine("fake", lambda p: "1\n" if p.endswith(" = ") else "[[[\n")
    prompt = "# lib/shapes.py\nSOURCE\n\n" + STARTER
    done = guide.guided_file(run(engine),
                             guide.GuidedTask(prompt, STARTER, SOURCE, "shapes", "test_shapes.py"),
                             guide.GuideOptions(budget=400))
    assert "        result = shapes.area(w, h)\n        self.assertEqual(result, None)\n" in done.text
    ast.parse(done.text)


def replies(prompt: str) -> str:
    """Complete each opener the way a small model does: well, too long, or broken."""
    if prompt.endswith("shapes.area("):
        return ("2, 3), 6)\n        self.assertEqual(shapes.area(2, 3), 6)\n"
                "        self.assertEqual(shapes.perimeter(2), 8)\n\n    def test_more(self):\n")
    if prompt.endswith("shapes.scale("):
        return ("2), 4)\n        self.assertEqual(shapes.scale(3), 6)\n"
                "        self.assertEqual(shapes.scale(4), 8)\n"
                "        self.assertEqual(shapes.scale(5), 10)\n")
    return "[[[\n"  # never closes: the test is left out


def run(engine: FakeEngine) -> guide.Generate:
    def generate(prompt: str, max_tokens: int, stable_prefix: int) -> Iterable[str]:
        assert prompt[:stable_prefix] == "# lib/shapes.py\nSOURCE\n\n"  # the prompt before the starter
        return engine.generate(prompt, max_tokens=max_tokens, stable_prefix=stable_prefix)
    return generate


def test_each_test_ends_where_the_model_leaves_it_repeats_or_invents_a_name() -> None:
    engine = FakeEngine("fake", replies)
    prompt = "# lib/shapes.py\nSOURCE\n\n" + STARTER
    done = guide.guided_file(run(engine),
                             guide.GuidedTask(prompt, STARTER, SOURCE, "shapes", "test_shapes.py"),
                             guide.GuideOptions(budget=400, bind=False))
    assert done.tested == ["area", "scale"] and done.skipped == ["Square"]
    assert done.text == STARTER + (
        "    def test_area(self):\n        self.assertEqual(shapes.area(2, 3), 6)\n\n"
        "    def test_scale(self):\n        self.assertEqual(shapes.scale(2), 4)\n"
        "        self.assertEqual(shapes.scale(3), 6)\n        self.assertEqual(shapes.scale(4), 8)\n"
        "\n\nif __name__ == \"__main__\":\n    unittest.main()\n")
    ast.parse(done.text)
    # Each segment continues the previous prompt, so a KV-cache prefix carries over.
    assert engine.calls[1].startswith(engine.calls[0])
    assert done.tokens > 0


def test_the_budget_bounds_every_segment_and_the_whole_file() -> None:
    engine = FakeEngine("fake", lambda p: "1" * 400)
    prompt = "# lib/shapes.py\nSOURCE\n\n" + STARTER
    done = guide.guided_file(run(engine),
                             guide.GuidedTask(prompt, STARTER, SOURCE, "shapes", "test_shapes.py"),
                             guide.GuideOptions(budget=30, segment_tokens=20, bind=False))
    assert done.tokens == 30 and len(engine.calls) == 2
    assert done.tested == [] and done.text == STARTER + "    pass\n" + guide.MAIN_GUARD
    ast.parse(done.text)


def calc_replies(prompt: str) -> str:
    if prompt.endswith("calc.add("):
        return "1, 2), 4)\n        self.assertEqual(calc.add(2, 2))\n"
    return "5, 2), 7)\n        self.assertEqual(calc.sub(1, None), 0)\n"


def bound_calc_replies(prompt: str) -> str:
    """Bind ``add``'s arguments well, and ``sub``'s second to a string (the call raises TypeError)."""
    if prompt.endswith("        a = "):
        return "5\n"
    if prompt.endswith("        b = "):
        return "'x'\n" if "def test_sub" in prompt[-80:] else "2\n"
    return "0)\n"


@needs_bwrap
def test_a_guided_file_repaired_in_the_sandbox_passes_and_runs_the_module(calc_repo: Path) -> None:
    engine = FakeEngine("fake", calc_replies)
    starter = examples.test_case_starter("utils/calc.py", "test_calc.py")
    prompt = "# utils/calc.py\n" + CALC + "\n" + starter
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask(prompt, starter, CALC, "calc", "test_calc.py"),
                             guide.GuideOptions(budget=200, bind=False))
    assert done.tested == ["add", "sub"]
    commit = commit_files(calc_repo, {"test_calc.py": done.text})
    repo, spec, sandbox = GitRepo(calc_repo), VerifySpec(coverage=True, runs=1), Sandbox(mode="bwrap")
    first = verify_candidate(repo, commit, spec, "utils/calc.py", "test_calc.py", sandbox=sandbox)
    assert first.failed == 2 and first.passed == 0
    repaired = repair_candidate(repo, commit, spec, "utils/calc.py", "test_calc.py", first, sandbox=sandbox)
    assert repaired.rerun is not None and repaired.rerun.ok
    assert repaired.rerun.exercising == 2 and repaired.rerun.tested_coverage() == 100.0
    # Pinned (add 4 -> 3, then the completed one-argument assertion), and sub cut before
    # the statement that raised.
    assert "self.assertEqual(calc.add(1, 2), 3)" in repaired.text
    assert "self.assertEqual(calc.add(2, 2), 4)" in repaired.text
    assert repaired.completed and repaired.truncated == ("test_calc.TestCalc.test_sub",)
    assert "calc.sub(1, None)" not in repaired.text


@needs_bwrap
def test_bound_tests_repaired_in_the_sandbox_pin_the_result_and_expect_the_raise(calc_repo: Path) -> None:
    engine = FakeEngine("fake", bound_calc_replies)
    starter = examples.test_case_starter("utils/calc.py", "test_calc.py")
    prompt = "# utils/calc.py\n" + CALC + "\n" + starter
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask(prompt, starter, CALC, "calc", "test_calc.py"),
                             guide.GuideOptions(budget=200))
    assert done.tested == ["add", "sub"] and "        result = calc.sub(a, b)\n" in done.text
    commit = commit_files(calc_repo, {"test_calc.py": done.text})
    repo, spec, sandbox = GitRepo(calc_repo), VerifySpec(coverage=True, runs=1), Sandbox(mode="bwrap")
    first = verify_candidate(repo, commit, spec, "utils/calc.py", "test_calc.py", sandbox=sandbox)
    assert first.failed == 1 and first.errors == 1
    repaired = repair_candidate(repo, commit, spec, "utils/calc.py", "test_calc.py", first, sandbox=sandbox)
    assert repaired.rerun is not None and repaired.rerun.ok and repaired.rerun.exercising == 2
    assert "        self.assertEqual(result, 7)\n" in repaired.text
    # The bindings stay; the call that raised inside the module becomes the expected exception.
    assert ("        a = 5\n        b = 'x'\n        with self.assertRaises(TypeError):\n"
            "            calc.sub(a, b)\n") in repaired.text
    assert repaired.raising == ("test_calc.TestCalc.test_sub",)


KINDS = '''import os
from io import BytesIO


def find(pathname, flags: int, names):
    if pathname.startswith("~"):
        pathname = os.path.expanduser(pathname)
    return [n for n in names if match(n, pathname)]


def match(name, pattern):
    return os.path.normcase(name) == pattern


def decode(data, table: dict, *, sep):
    if sep == ",":
        return BytesIO(data), table
    return data.decode()


def anything(value):
    return value


def first(args, pat):
    return args[0] if args[1] else args[2] + pat[0] + pat.lower()
'''


def test_a_parameter_kind_is_read_from_its_annotation_and_its_use() -> None:
    tree = ast.parse(KINDS)
    find, match_, decode, anything, first = (n for n in tree.body if isinstance(n, ast.FunctionDef))
    assert params.parameter_kind(tree, find, "pathname") == "str"  # a string method, os.path
    assert params.parameter_kind(tree, find, "names") == "list"  # iterated
    assert params.parameter_kind(tree, find, "flags") == ""  # an int: the model picks the number
    assert params.parameter_kind(tree, match_, "name") == "str"
    assert params.parameter_kind(tree, decode, "data") == "bytes"  # .decode(), BytesIO
    assert params.parameter_kind(tree, decode, "table") == "dict"  # annotated
    assert params.parameter_kind(tree, decode, "sep") == "str"  # compared with a string
    assert params.parameter_kind(tree, anything, "value") == ""
    # Indexing counts once, for a list; a string method on the same parameter outweighs it.
    assert params.parameter_kind(tree, first, "args") == "list"
    assert params.parameter_kind(tree, first, "pat") == "str"
    target = next(t for t in openers.targets(KINDS, "kinds") if t.name == "decode")
    assert openers.openings(tree, target) == ["b'", "{", "'"]
    assert openers.openings(tree, target, hint=False) == ["", "", ""]


def test_a_hinted_value_starts_as_its_kind_and_the_model_completes_it() -> None:
    engine = FakeEngine("fake", lambda p: "*.txt'\n" if p.endswith("pathname = '") else
                        "'a.txt']\n" if p.endswith("names = [") else "3\n" if p.endswith("flags = ")
                        else "[])\n")
    starter = examples.test_case_starter("lib/kinds.py", "test_kinds.py")
    prompt = "# lib/kinds.py\nSOURCE\n\n" + starter
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask(prompt, starter, KINDS, "kinds", "test_kinds.py"),
                             guide.GuideOptions(budget=60, limit=1))
    assert ("    def test_find(self):\n        pathname = '*.txt'\n        flags = 3\n"
            "        names = ['a.txt']\n        result = kinds.find(pathname, flags, names)\n"
            "        self.assertEqual(result, [])\n") in done.text


def test_variants_add_sampled_tests_after_the_greedy_round_unless_they_repeat_one() -> None:
    engine = FakeEngine("fake", bound_replies)
    seeds: list[int] = []

    def sample(prompt: str, max_tokens: int, stable_prefix: int, seed: int) -> Iterable[str]:
        seeds.append(seed)
        # Seeds 1 and 2 give the same values: the third round repeats the second.
        return iter(["11\n"] if prompt.endswith(" = ") else ["0)\n"])

    prompt = "# lib/shapes.py\nSOURCE\n\n" + STARTER
    done = guide.guided_file(run(engine),
                             guide.GuidedTask(prompt, STARTER, SOURCE, "shapes", "test_shapes.py"),
                             guide.GuideOptions(budget=400, variants=3, sample=sample))
    assert done.tested == ["area", "Square"] and done.variants == ["area", "scale", "Square"]
    assert ("    def test_area_2(self):\n        w = 11\n        h = 11\n"
            "        result = shapes.area(w, h)\n        self.assertEqual(result, 0)\n") in done.text
    assert "    def test_scale_2(self):\n        x = 11\n" in done.text
    assert "test_area_3" not in done.text and set(seeds) == {1, 2}
    ast.parse(done.text)
    # Without a sampler only the greedy round runs.
    single = guide.guided_file(run(FakeEngine("fake", bound_replies)),
                               guide.GuidedTask(prompt, STARTER, SOURCE, "shapes", "test_shapes.py"),
                               guide.GuideOptions(budget=400, variants=3))
    assert single.variants == [] and "_2(self)" not in single.text


def test_a_hinted_literal_the_model_does_not_close_within_its_share_is_closed() -> None:
    engine = FakeEngine("fake", lambda p: "a:b:" * 20 if p.endswith("pathname = '") else "'a']\n"
                        if p.endswith("names = [") else "3\n" if p.endswith(" = ") else "[])\n")
    starter = examples.test_case_starter("lib/kinds.py", "test_kinds.py")
    prompt = "# lib/kinds.py\nSOURCE\n\n" + starter
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask(prompt, starter, KINDS, "kinds", "test_kinds.py"),
                             guide.GuideOptions(budget=60, limit=1, value_tokens=3))
    pathname = next(line for line in done.text.splitlines() if "pathname =" in line)
    assert pathname.strip().startswith("pathname = 'a:b:") and pathname.endswith("'")
    ast.parse(done.text)


FILES = '''import os


def size_of(filename):
    with open(filename, "rb") as handle:
        return len(handle.read())


def count_entries(folder):
    return len(os.listdir(folder))


def header(path, n):
    return first_bytes(path, n)


def first_bytes(name, n):
    with open(name, "rb") as handle:
        return handle.read(n)


def describe(data, srcfile, label):
    return data, srcfile, label


def apply(transform, items):
    return [transform(item) for item in items]


def summary(filename):
    label = "%s (Python)" % filename if filename.endswith(".py") else os.path.basename(filename)
    with open(filename) as handle:
        return label, len(handle.readlines())
'''


def test_a_parameter_that_must_name_an_existing_file_or_folder_is_a_path_or_a_folder() -> None:
    tree = ast.parse(FILES)
    size_of, count_entries, header, _first, describe, apply, summary = (
        n for n in tree.body if isinstance(n, ast.FunctionDef))
    assert params.parameter_kind(tree, size_of, "filename") == "path"  # open() needs it to exist
    assert params.parameter_kind(tree, count_entries, "folder") == "folder"  # os.listdir
    assert params.parameter_kind(tree, header, "path") == "path"  # through the module's own function
    assert params.parameter_kind(tree, header, "n") == ""
    # More string evidence than file evidence still makes a path: a file name is a string too.
    assert params.parameter_kind(tree, summary, "filename") == "path"
    # Without evidence in the code, the name decides; a name that says nothing gives "".
    assert params.parameter_kind(tree, describe, "data") == ""
    target = next(t for t in openers.targets(FILES, "files") if t.name == "describe")
    assert openers.value_kinds(tree, target) == ["bytes", "path", "str"]
    assert openers.openings(tree, target) == ["b'", "self.path", "'"]
    assert [params.name_kind(n) for n in ("config_path", "cachedir", "module_name", "x", "ITEMS", "sort_func")
            ] == ["path", "folder", "str", "", "list", "callable"]
    # A parameter the code calls is a callable, whatever its name; the method writes one that
    # takes anything.
    assert params.parameter_kind(tree, apply, "transform") == "callable"
    target = next(t for t in openers.targets(FILES, "files") if t.name == "apply")
    assert openers.openings(tree, target) == ["lambda *args, **kwargs: None", "["]


def test_a_fixture_opens_the_class_when_a_test_needs_an_existing_file() -> None:
    engine = FakeEngine("fake", lambda p: "4\n" if p.endswith("n = ") else "0)\n")
    starter = examples.test_case_starter("lib/files.py", "test_files.py")
    prompt = "# lib/files.py\nSOURCE\n\n" + starter
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask(prompt, starter, FILES, "files", "test_files.py"),
                             guide.GuideOptions(budget=200))
    # The imports go before the starter's, the setUp right after its class line.
    assert done.text.startswith("import shutil\nimport tempfile\nimport unittest\n\nfrom lib import files\n")
    assert (starter.split("import unittest\n", 1)[1] + fixture.FIXTURE.format(alias="files")) in done.text
    # The method writes the fixture's values itself: the model is never asked for them.
    assert ("    def test_size_of(self):\n        filename = self.path\n"
            "        result = files.size_of(filename)\n") in done.text
    assert "        folder = self.folder\n" in done.text
    assert ("        path = self.path\n        n = 4\n        result = files.header(path, n)\n") in done.text
    assert not any(call.endswith(("filename = ", "folder = ", "path = ")) for call in engine.calls)
    ast.parse(done.text)
    # A module without such parameters keeps the starter as it is.
    plain = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                              guide.GuidedTask("# lib/kinds.py\nSOURCE\n\n" + starter, starter, KINDS,
                                               "kinds", "test_kinds.py"),
                              guide.GuideOptions(budget=60, limit=1))
    assert plain.text.startswith(starter) and "setUp" not in plain.text


def test_the_fixture_imports_come_after_a_future_import() -> None:
    future = "from __future__ import annotations\n\n"
    starter = future + "import unittest\n\nimport m\n\n\nclass TestM(unittest.TestCase):\n"
    fixed = fixture.with_fixture(starter, "m")
    assert fixed.startswith(future + "import shutil\nimport tempfile\nimport unittest\n")
    ast.parse(fixed)


def guided_in_sandbox(tmp_path: Path, name: str, code: str, engine: FakeEngine, **options: Any
                      ) -> tuple[guide.Guided, VerifyResult, RepairResult]:
    """Write ``lib/<name>.py``'s guided test file with a fake model, then verify and repair it."""
    source, destination = f"lib/{name}.py", f"test_{name}.py"
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit_files(path, {"lib/__init__.py": "", source: code}, "initial")
    starter = examples.test_case_starter(source, destination)
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask(f"# {source}\n{code}\n{starter}", starter, code, name,
                                              destination),
                             guide.GuideOptions(**options))
    commit = commit_files(path, {destination: done.text})
    repo, spec, sandbox = GitRepo(path), VerifySpec(coverage=True, runs=1), Sandbox(mode="bwrap")
    first = verify_candidate(repo, commit, spec, source, destination, sandbox=sandbox)
    return done, first, repair_candidate(repo, commit, spec, source, destination, first, sandbox=sandbox)


@needs_bwrap
def test_tests_on_the_fixture_read_a_real_file_and_leave_the_checkout_alone(tmp_path: Path) -> None:
    engine = FakeEngine("fake", lambda p: "4\n" if p.endswith("n = ") else "0)\n")
    source = FILES.split("\n\n\ndef header")[0] + "\n"  # size_of and count_entries
    _, first, repaired = guided_in_sandbox(tmp_path, "files", source, engine, budget=200)
    # Every call ran on a file or folder that exists: nothing raised, only the expected values fail.
    assert first.errors == 0 and first.failed == 2
    assert repaired.rerun is not None and repaired.rerun.ok and repaired.rerun.passing_exercising == 2
    assert f"self.assertEqual(result, {len(source.encode())})" in repaired.text  # the copy's size
    assert "self.assertEqual(result, 1)" in repaired.text  # the folder holds the copy alone


CONSTANTS = '''MODES = {"fast": 1, "slow": 2}


def run(mode, level, text):
    if mode not in MODES:
        raise ValueError(mode)
    if level == 3 or 7 == level:
        return text
    if text.startswith("#"):
        return None
    return mode, level, text
'''


def test_the_constants_a_parameter_is_compared_with_are_its_seeds() -> None:
    tree = ast.parse(CONSTANTS)
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert constants.constant_values(tree, function, "mode") == ["'fast'", "'slow'"]  # a module table's keys
    assert constants.constant_values(tree, function, "level") == ["3", "7"]
    assert constants.constant_values(tree, function, "text") == ["'#'"]


def test_variant_rounds_bind_the_seeds_and_ask_the_model_for_the_rest() -> None:
    engine = FakeEngine("fake", lambda p: "5\n" if p.endswith(" = ") else "x'\n" if p.endswith("= '")
                        else "None)\n")
    asked: list[str] = []

    def sample(prompt: str, max_tokens: int, stable_prefix: int, seed: int) -> Iterable[str]:
        asked.append(prompt.rsplit("\n", 1)[-1])
        return iter(["9\n"] if prompt.endswith(" = ") else ["y'\n"] if prompt.endswith("= '") else ["0)\n"])

    starter = examples.test_case_starter("lib/consts.py", "test_consts.py")
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask("# lib/consts.py\nSOURCE\n\n" + starter, starter, CONSTANTS,
                                              "consts", "test_consts.py"),
                             guide.GuideOptions(budget=400, variants=3, sample=sample))
    # The greedy round is the model's; round 2 takes the first constants, round 3 the second,
    # and a string out of constants ("text" has one) its edge case, the empty string.
    def bound(name: str, mode: str, level: int, text: str) -> str:
        lines = [f"def {name}(self):", f"    mode = {mode}", f"    level = {level}", f"    text = {text}"]
        return "".join(f"    {line}\n" for line in lines)

    assert bound("test_run", "'x'", 5, "'x'") in done.text
    assert bound("test_run_2", "'fast'", 3, "'#'") in done.text
    assert bound("test_run_3", "'slow'", 7, "''") in done.text
    assert [a for a in asked if a.endswith("= '")] == []
    ast.parse(done.text)


STREAMS = '''def copy_lines(source, sink):
    count = 0
    for line in iter(source.readline, b""):
        sink.write(line.replace(b"\\t", b" "))
        count += 1
    return count


def shout(stream):
    return stream.read().upper()
'''


@needs_bwrap
def test_a_parameter_read_or_written_like_a_file_gets_a_file_object_closed_after_the_test(
        tmp_path: Path) -> None:
    tree = ast.parse(STREAMS)
    copy_lines, shout = (n for n in tree.body if isinstance(n, ast.FunctionDef))
    # Bytes literals in the function make it a binary stream, else a text one.
    assert params.parameter_kind(tree, copy_lines, "source") == "binary reader"
    assert params.parameter_kind(tree, copy_lines, "sink") == "binary writer"
    assert params.parameter_kind(tree, shout, "stream") == "text reader"
    engine = FakeEngine("fake", lambda p: "0)\n")
    done, first, repaired = guided_in_sandbox(tmp_path, "streams", STREAMS, engine, budget=200)
    assert ("        source = open(self.path, 'rb')\n        self.addCleanup(source.close)\n"
            "        sink = open(self.folder + '/output', 'wb')\n        self.addCleanup(sink.close)\n"
            "        result = streams.copy_lines(source, sink)\n") in done.text
    assert "        stream = open(self.path)\n        self.addCleanup(stream.close)\n" in done.text
    assert first.errors == 0 and first.failed == 2  # both ran on real files; the values are wrong
    assert repaired.rerun is not None and repaired.rerun.ok and repaired.rerun.tested_coverage() == 100.0
    assert f"self.assertEqual(result, {len(STREAMS.splitlines())})" in repaired.text  # lines copied


OPTIONAL = '''class Reader:
    def __init__(self, filename=None, mode="r", fileobj=None):
        self.handle = open(filename) if filename is not None else fileobj


def total(values, scale=1, *, log=None, out_file=None):
    return sum(values) * scale
'''


def test_the_first_parameter_that_defaults_to_none_but_holds_a_file_is_bound_by_keyword() -> None:
    found = {t.name: t for t in openers.targets(OPTIONAL, "optional")}
    assert found["Reader"].binds == (("filename", "filename=filename"),)  # one, not fileobj too
    assert found["total"].binds == (("values", "values"), ("out_file", "out_file=out_file"))
    tree = ast.parse(OPTIONAL)
    assert openers.openings(tree, found["total"]) == ["[", "self.path"]
    assert openers.call_text(found["total"], "optional") == "optional.total(values, out_file=out_file)"
    # Without the module's tree (no kinds known) only required parameters are bound.
    [total] = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert openers.required_parameters(total) == [("values", False)]


ITEMS = '''def options(args, names):
    while args and args[0].startswith("-"):
        args = args[1:]
    for name in names:
        if name == "--":
            break
    return args


def numbers(values):
    return [v + 1 for v in values]
'''


def test_a_list_whose_items_are_used_as_strings_is_a_list_of_strings() -> None:
    tree = ast.parse(ITEMS)
    options, numbers = (n for n in tree.body if isinstance(n, ast.FunctionDef))
    assert params.parameter_kind(tree, options, "args") == "strlist"  # args[0].startswith
    assert params.parameter_kind(tree, options, "names") == "strlist"  # an item compared with '--'
    assert params.parameter_kind(tree, numbers, "values") == "list"
    target = next(t for t in openers.targets(ITEMS, "items") if t.name == "options")
    assert openers.openings(tree, target) == ["['", "['"]


def test_a_variant_asks_the_model_for_a_value_the_greedy_test_had_written_for_it() -> None:
    engine = FakeEngine("fake", lambda p: "2]\n" if p.endswith("= [") else "0)\n")

    def sample(prompt: str, max_tokens: int, stable_prefix: int, seed: int) -> Iterable[str]:
        line = prompt.rsplit("\n", 1)[-1]
        return iter(["missing.txt'\n"] if line.endswith("filename = '") else
                    ["None\n"] if line.endswith("transform = ") else ["1]\n"] if line.endswith("= [")
                    else ["0)\n"])

    starter = examples.test_case_starter("lib/files.py", "test_files.py")
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask("# lib/files.py\nSOURCE\n\n" + starter, starter, FILES, "files",
                                              "test_files.py"),
                             guide.GuideOptions(budget=400, variants=2, sample=sample))
    # The greedy tests have the fixture's file and a callable; their variants the model's values,
    # which take the branches that check them.
    assert "    def test_size_of(self):\n        filename = self.path\n" in done.text
    assert "    def test_size_of_2(self):\n        filename = 'missing.txt'\n" in done.text
    assert "    def test_apply(self):\n        transform = lambda *args, **kwargs: None\n" in done.text
    # A list's edge case, the empty list, is the variant's without the model.
    assert "    def test_apply_2(self):\n        transform = None\n        items = []\n" in done.text
    ast.parse(done.text)


KEPT = '''import os


class Compare:
    def __init__(self, a, b, label):
        self.left = a
        self.right = b
        self.label = label

    def listing(self):
        return sorted(os.listdir(self.left)), sorted(os.listdir(self.right))
'''


def test_a_constructor_parameter_kept_as_an_attribute_has_the_kind_its_methods_use() -> None:
    tree = ast.parse(KEPT)
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    kinds = [params.parameter_kind(tree, init, name) for name in ("a", "b", "label")]
    assert kinds == ["folder", "folder", ""]
    target = next(t for t in openers.targets(KEPT, "kept") if t.name == "Compare")
    assert openers.openings(tree, target) == ["self.folder", "self.folder", "'"]  # label: by its name


CLASSES = '''class Unknown(Exception):
    pass


def describe(exc_type, value):
    name = exc_type.__name__
    if exc_type is SyntaxError:
        return 'syntax: ' + str(value)
    return name + ': ' + str(value)


def catch(kind, func):
    try:
        return func()
    except kind:
        return None


def family(cls):
    if issubclass(cls, (KeyError, Unknown)):
        return 'lookup'
    return [base.__name__ for base in cls.__mro__]


def label(func):
    return func.__name__ + str(func())
'''


def test_a_parameter_used_as_a_class_is_a_class_and_the_classes_it_is_checked_against_seed_it() -> None:
    tree = ast.parse(CLASSES)
    describe, catch, family, label = (n for n in tree.body if isinstance(n, ast.FunctionDef))
    assert params.parameter_kind(tree, describe, "exc_type") == "class"  # __name__, ``is SyntaxError``
    assert params.parameter_kind(tree, describe, "value") == ""
    assert params.parameter_kind(tree, catch, "kind") == "class"  # ``except kind:``
    assert params.parameter_kind(tree, family, "cls") == "class"  # issubclass, __mro__
    # A function has a __name__ too: being called outweighs it.
    assert params.parameter_kind(tree, label, "func") == "callable"
    assert params.class_values(tree, describe, "exc_type") == ["SyntaxError"]
    # The module's own class is written through the test's name for the module, or left out.
    assert params.class_values(tree, family, "cls", "errors") == ["KeyError", "errors.Unknown"]
    assert params.class_values(tree, family, "cls") == ["KeyError"]
    assert params.class_values(tree, catch, "kind") == []
    # The variant rounds bind it to the class it is checked against, then to a plain class.
    assert openers.seeds(tree, describe, "exc_type") == ["SyntaxError", "object"]


def sampled(prompt: str, seed: int) -> str:
    """A sampled value or assertion that depends on the prompt's last line only."""
    return "11\n" if prompt.endswith(" = ") else "0)\n"


def sample(prompt: str, max_tokens: int, stable_prefix: int, seed: int) -> Iterable[str]:
    return iter([sampled(prompt, seed)])


def together(engine: FakeEngine) -> GenerateMany:
    """A variant round's generation on an engine's ``generate_many``, as ``core.guided`` makes it."""
    def sample_many(asks: Sequence[Ask], seeds: Sequence[int], stopped: Collection[int]
                    ) -> Iterable[tuple[int, str]]:
        requests = [GenerationRequest(a.prompt, a.max_tokens, a.stable_prefix, s, 0.8)
                    for a, s in zip(asks, seeds, strict=True)]
        return engine.generate_many(requests, stopped=stopped)
    return sample_many


def test_a_variant_round_writes_its_tests_together_each_from_the_file_at_the_rounds_start() -> None:
    prompt = "# lib/shapes.py\nSOURCE\n\n" + STARTER
    task = guide.GuidedTask(prompt, STARTER, SOURCE, "shapes", "test_shapes.py")
    one_by_one = guide.guided_file(run(FakeEngine("fake", bound_replies)), task,
                                   guide.GuideOptions(budget=400, variants=3, sample=sample))
    engine = FakeEngine("fake", bound_replies, seeded=sampled)
    sample_many = together(engine)

    done = guide.guided_file(run(engine), task,
                             guide.GuideOptions(budget=400, variants=3, sample_many=sample_many))
    # The model's values depend on their prompt's last line only, so the file is the same.
    assert done.text == one_by_one.text and done.variants == ["area", "scale", "Square"]
    # One batch per step of a round: three first values, then area's second value and scale's
    # assertion, then area's assertion. A variant's prompt holds no other variant of its round.
    assert engine.batches == [3, 2, 1, 3, 2, 1]
    rounds = engine.calls[-12:-6], engine.calls[-6:]
    assert all(call.count("_2(self)") == 1 and "_3(self)" not in call for call in rounds[0])
    assert all(call.count("_3(self)") == 1 for call in rounds[1])


def test_a_variant_round_together_shares_the_files_budget_as_tests_one_by_one_do() -> None:
    prompt = "# lib/shapes.py\nSOURCE\n\n" + STARTER
    task = guide.GuidedTask(prompt, STARTER, SOURCE, "shapes", "test_shapes.py")
    greedy = guide.guided_file(run(FakeEngine("fake", bound_replies)), task, guide.GuideOptions(budget=400))
    # Room for a round of short variants, not for three tests of a whole share (80 tokens) each.
    budget = greedy.tokens + 40
    one_by_one = guide.guided_file(run(FakeEngine("fake", bound_replies)), task,
                                   guide.GuideOptions(budget=budget, variants=2, sample=sample))
    engine = FakeEngine("fake", bound_replies, seeded=sampled)
    sample_many = together(engine)

    done = guide.guided_file(run(engine), task,
                             guide.GuideOptions(budget=budget, variants=2, sample_many=sample_many))
    assert done.variants == one_by_one.variants == ["area", "scale", "Square"]
    assert done.tokens <= budget
    # With less left than the round needs, the round stops generating at the budget.
    options = guide.GuideOptions(budget=greedy.tokens + 3, variants=2, sample_many=sample_many)
    tight = guide.guided_file(run(FakeEngine("fake", bound_replies)), task, options)
    assert tight.tokens <= greedy.tokens + 3 and len(tight.variants) < 3
