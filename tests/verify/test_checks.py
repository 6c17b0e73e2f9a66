"""Every kept test checks something: unstable values, wrong-kind errors, tests that assert nothing."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG, VerifySpec
from symergion.core.ops import current_views
from symergion.gitrepo import GitRepo
from symergion.verify.candidate import verify_candidate
from symergion.verify.prune import prune
from symergion.verify.repair import repair, repair_candidate
from symergion.verify.result import Observation, TestOutcome, VerifyResult, parse_trailer, rank
from symergion.verify.sandbox import Sandbox
from symergion.verify.stable import Sample, differ, stable_checks
from symergion.verify.truncate import truncate_tests
from tests.helpers.verify import CALC, commit_files, needs_bwrap

# Two runs per verification, as the template's default: a value that changes shows it.
SPEC = VerifySpec(coverage=True, runs=2)

DRIFT = '''import os
import tempfile

# Each sandboxed run starts from the commit's files in a private /tmp, so only a mark outside
# both survives from one run to the next: without the sandbox (DRIFT_MARK reaches the module).
_MARK = os.environ.get("DRIFT_MARK") or os.path.join(os.path.dirname(__file__), ".drift-mark")


def scratch(prefix):
    """Make a new temporary folder: its path differs on every call."""
    return tempfile.mkdtemp(prefix=prefix)


def flip(name):
    """Return the name in capitals on one call and None on the next (a mark file says which)."""
    if os.path.exists(_MARK):
        os.remove(_MARK)
        return None
    with open(_MARK, "w"):
        pass
    return name.upper()


def steady(name):
    return name * 2
'''

DRIFT_TESTS = '''import unittest

from utils import drift


class TestDrift(unittest.TestCase):
    def test_scratch(self):
        prefix = 'tmp'
        result = drift.scratch(prefix)
        self.assertEqual(result, None)

    def test_flip(self):
        name = 'x'
        result = drift.flip(name)
        self.assertEqual(result, 'value')

    def test_steady(self):
        name = 'ab'
        result = drift.steady(name)
        self.assertEqual(result, None)
'''


def _test_method(text: str, name: str) -> ast.FunctionDef | None:
    tree = ast.parse(text)
    return next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _asserts(function: ast.FunctionDef) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
               and n.func.attr.startswith("assert") for n in ast.walk(function))


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_an_unstable_value_gets_the_checks_every_run_agrees_on_or_its_test_goes(
        calc_repo: Path, mode: str, bwrap_available: None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFT_MARK", str(tmp_path / "drift-mark"))
    sandbox = Sandbox(mode=mode)
    repo = GitRepo(calc_repo)
    commit = commit_files(calc_repo, {"utils/drift.py": DRIFT, "test_drift.py": DRIFT_TESTS})
    first = verify_candidate(repo, commit, SPEC, "utils/drift.py", "test_drift.py", sandbox=sandbox)
    scratch = first.tests["test_drift.TestDrift.test_scratch"]
    # Both runs' values are kept: two different paths (without the sandbox, where a value with
    # words the checkout does not hold is never kept as a literal, as their digests).
    assert {o.run for o in scratch.observed} == {0, 1}
    seen = {o.first or o.first_facts["digest"] for o in scratch.observed}
    assert len(seen) == 2
    repaired = repair_candidate(repo, commit, SPEC, "utils/drift.py", "test_drift.py", first,
                                sandbox=sandbox)
    text = repaired.text
    assert repaired.rerun is not None and repaired.rerun.ok, repaired.rerun
    # The path is checked by what every run showed: no pinned path, no bare call.
    scratch_test = _test_method(text, "test_scratch")
    assert scratch_test is not None and _asserts(scratch_test)
    assert "        self.assertIsInstance(result, str)\n" in text
    assert "        self.assertTrue(result.startswith('/tmp/'))\n" in text
    assert "        self.assertTrue(os.path.exists(result))\n" in text
    assert text.startswith("import os\n")
    assert "/tmp/tmp" not in text.replace("startswith('/tmp/')", "")
    # Two calls of scratch differ: the determinism check was tried and taken out again.
    assert "self.assertEqual(result, drift.scratch(prefix))" not in text
    message = repaired.commit_message()
    if mode == "bwrap":
        # Every run starts afresh: flip's first call is the same in both runs, and is pinned;
        # so is a stable value the code computed.
        assert "        self.assertEqual(result, 'X')\n" in text
        assert "        self.assertEqual(result, 'abab')\n" in text
    else:
        # flip's value is a string in one run and None in the other, and differs between two
        # calls: nothing holds, so the test is dropped and the message says why.
        assert _test_method(text, "test_flip") is None
        assert "Dropped, no check holds in every run:\n- test_drift.TestDrift.test_flip: " in message
        # Unsandboxed, a value is pinned only in the checkout's words: 'abab' is not one.
        assert "'abab'" not in text and "        self.assertIsInstance(result, str)\n" in text
    # Every kept test called an assertion.
    assert repaired.rerun.unchecked == 0
    assert all(o.checks for o in repaired.rerun.tests.values())


MONEY = '''def round_up(amount, step=5):
    if amount < 0:
        raise ValueError("amount must not be negative")
    return -(-amount // step) * step


def check(value):
    if not isinstance(value, int):
        raise TypeError("value must be an int")
    return value
'''

WRONG_KIND_TESTS = '''import unittest

from utils import money


class TestMoney(unittest.TestCase):
    def test_round_up(self):
        amount = '10'
        result = money.round_up(amount)
        self.assertEqual(result, None)
'''


@needs_bwrap
def test_a_wrong_kind_error_gets_one_repair_with_a_value_of_the_kind_the_code_uses(
        calc_repo: Path, sandbox: Sandbox) -> None:
    repo = GitRepo(calc_repo)
    commit = commit_files(calc_repo, {"utils/money.py": MONEY, "test_money.py": WRONG_KIND_TESTS})
    first = verify_candidate(repo, commit, SPEC, "utils/money.py", "test_money.py", sandbox=sandbox)
    assert "TypeError" in first.tests["test_money.TestMoney.test_round_up"].detail
    repaired = repair_candidate(repo, commit, SPEC, "utils/money.py", "test_money.py", first,
                                sandbox=sandbox)
    # The code orders amount against a number: it is given one, and the result is pinned,
    # instead of a test that expects Python's TypeError.
    assert "        amount = 1\n" in repaired.text
    assert "        self.assertEqual(result, 5)\n" in repaired.text
    assert "assertRaises(TypeError)" not in repaired.text
    assert "- test_money.TestMoney.test_round_up: amount = '10' -> 1" in repaired.commit_message()
    assert repaired.rerun is not None and repaired.rerun.ok and repaired.rerun.records_error == 0


def test_a_test_given_a_value_of_its_kind_once_expects_the_error_the_next_time() -> None:
    text = WRONG_KIND_TESTS
    detail = ('Traceback (most recent call last):\n  File "test_money.py", line 9, in test_round_up\n'
              '    result = money.round_up(amount)\n  File "utils/money.py", line 2, in round_up\n'
              '    if amount < 0:\nTypeError: \'<\' not supported between instances of \'str\' and \'int\'\n')
    result = VerifyResult(source="utils/money.py",
                          tests={"test_money.TestMoney.test_round_up": TestOutcome("error", detail)})
    first = repair(text, result, MONEY, "test_money.py")
    assert [r.after for r in first.rekinded] == ["1"] and not first.raising
    again = repair(text, result, MONEY, "test_money.py",
                   retried=frozenset({"test_money.TestMoney.test_round_up"}))
    assert not again.rekinded and again.raising == ("test_money.TestMoney.test_round_up",)
    # An error the module raised itself is what its author wrote: expected, never re-valued.
    own = detail.replace(
        "    if amount < 0:\nTypeError: '<' not supported between instances of 'str' and 'int'",
        "    raise TypeError('no')\nTypeError: no")
    result = VerifyResult(source="utils/money.py",
                          tests={"test_money.TestMoney.test_round_up": TestOutcome("error", own)})
    assert not repair(text, result, MONEY, "test_money.py").rekinded


COUNTED_TESTS = '''import unittest

from utils import money


class TestMoney(unittest.TestCase):
    def test_value(self):
        self.assertEqual(money.round_up(1), 5)

    def test_python_rejects(self):
        with self.assertRaises(TypeError):
            money.round_up(None)

    def test_module_rejects(self):
        with self.assertRaises(TypeError):
            money.check('x')

    def test_bare(self):
        money.check(3)
'''


@needs_bwrap
def test_the_trailer_counts_wrong_kind_tests_and_tests_that_assert_nothing(
        calc_repo: Path, sandbox: Sandbox) -> None:
    commit = commit_files(calc_repo, {"utils/money.py": MONEY, "test_money.py": COUNTED_TESTS})
    result = verify_candidate(GitRepo(calc_repo), commit, SPEC, "utils/money.py", "test_money.py",
                              sandbox=sandbox)
    tests = {t.rsplit(".", 1)[-1]: o for t, o in result.tests.items()}
    assert tests["test_python_rejects"].records_error
    assert not tests["test_module_rejects"].records_error  # the module's own raise
    assert tests["test_value"].checks_values and not tests["test_bare"].asserts
    assert (result.records_error, result.unchecked) == (1, 1)
    trailer = result.trailer()
    assert "; 1 records an error; 1 asserts nothing; values cover " in trailer
    back = parse_trailer(trailer)
    assert (back.records_error, back.unchecked, back.value_coverage) == (1, 1, result.value_coverage)
    # Without the bare call and the wrong-kind test, fewer lines are covered.
    assert result.tested_coverage(strict=True, only="values") < result.tested_coverage(strict=True)
    # The prune takes the bare call out and says why.
    pruned = prune(COUNTED_TESTS, result, "test_money.py")
    assert [(r.test, r.reason) for r in pruned.removed] == [
        ("test_money.TestMoney.test_bare", "asserts nothing: it passes whatever the code returns")]
    assert "def test_bare" not in pruned.text and "Prune: removed 1 test\n" in pruned.commit_message()


def test_candidates_rank_by_what_their_value_checking_tests_cover() -> None:
    errors = VerifyResult(source="x.py", passed=5, exercising=5, coverage=80.0, value_coverage=20.0)
    values = VerifyResult(source="x.py", passed=2, exercising=2, coverage=60.0, value_coverage=55.0)
    assert [name for name, _ in rank([("errors", errors), ("values", values)])] == ["values", "errors"]


def test_a_cut_never_leaves_a_test_that_checks_nothing() -> None:
    text = ("import unittest\n\nfrom utils import calc\n\n\nclass T(unittest.TestCase):\n"
            "    def test_a(self):\n        result = calc.add(1, 2)\n        self.assertTrue(result > 10)\n"
            "\n    def test_b(self):\n        self.assertEqual(calc.add(1, 1), 2)\n"
            "        self.assertTrue(calc.add(1, 2) > 10)\n")
    detail = ('Traceback (most recent call last):\n  File "test_calc.py", line {}, in t\n'
              'AssertionError: False\n')
    result = VerifyResult(source="utils/calc.py", tests={
        "test_calc.T.test_a": TestOutcome("failed", detail.format(9)),
        "test_calc.T.test_b": TestOutcome("failed", detail.format(13))})
    new, cut, _ = truncate_tests(text, result, "utils/calc.py", "test_calc.py")
    # test_a would keep its call alone: left whole (the prune removes it); test_b keeps a check.
    assert cut == ("test_calc.T.test_b",)
    assert "        result = calc.add(1, 2)\n        self.assertTrue(result > 10)\n" in new
    assert "self.assertTrue(calc.add(1, 2) > 10)" not in new


def test_checks_come_from_what_every_sample_agrees_on() -> None:
    crypt_like = [Sample("'$6$ab1$QQ'", {"type": "builtins.str", "len": 10}),
                  Sample("'$6$zz9$RR'", {"type": "builtins.str", "len": 10})]
    assert differ(crypt_like)
    stable = stable_checks("self", "result", crypt_like, type_expression="str")
    # A prefix stops at a separator: two salts may share a character by chance.
    assert stable.said == ("type str", "length 10", "prefix '$6$'")
    assert "self.assertTrue(result.startswith('$6$'))" in stable.lines
    # Items drawn from the test's own input: membership holds; a sorted list stays sorted.
    picked = [Sample("'b'", {"type": "builtins.str", "len": 1}),
              Sample("'c'", {"type": "builtins.str", "len": 1})]
    assert "self.assertIn(result, items)" in stable_checks("self", "result", picked, type_expression="str",
                                                          inputs={"items": ["a", "b", "c"]}).lines
    lists = [Sample(None, {"type": "builtins.list", "len": 3, "sorted": True}),
             Sample(None, {"type": "builtins.list", "len": 4, "sorted": True})]
    assert stable_checks("self", "result", lists, type_expression="list").lines == (
        "self.assertIsInstance(result, list)", "self.assertEqual(list(result), sorted(result))")
    # Types that differ and no property: nothing holds.
    mixed = [Sample("None", {"type": "builtins.NoneType"}), Sample("1", {"type": "builtins.int"})]
    assert differ(mixed) and stable_checks("self", "result", mixed, type_expression=None).lines == ()
    # The same value in every run is no reason to leave the pin.
    assert not differ([Sample("'a'", {}), Sample("'a'", {})])


def test_observations_of_both_runs_are_kept_for_a_failing_assertion() -> None:
    first = Observation(8, "assertEqual", "'/tmp/a'", "None", run=0)
    second = Observation(8, "assertEqual", "'/tmp/b'", "None", run=1)
    text = ("import unittest\n\nfrom utils import calc\n\n\nclass T(unittest.TestCase):\n"
            "    def test_a(self):\n        self.assertEqual(calc.add(1, 2), None)\n")
    result = VerifyResult(source="utils/calc.py", tests={
        "test_calc.T.test_a": TestOutcome("failed", "AssertionError", observed=(first, second))})
    fixed = repair(text, result, CALC, "test_calc.py")
    # The paths differ: neither is pinned; two calls may still agree, so determinism is tried.
    assert not fixed.pinned and len(fixed.stabilized) == 1
    assert "        self.assertEqual(calc.add(1, 2), calc.add(1, 2))\n" in fixed.text


RECORDED_TESTS = '''import unittest

from utils import money


class TestMoney(unittest.TestCase):
    def test_round_up(self):
        with self.assertRaises(TypeError):
            money.round_up('10')

    def test_check(self):
        with self.assertRaises(TypeError):
            money.check('x')
'''


@needs_bwrap
def test_a_passing_test_that_only_records_a_wrong_kind_error_is_tried_with_a_value_of_its_kind(
        calc_repo: Path, sandbox: Sandbox) -> None:
    repo = GitRepo(calc_repo)
    commit = commit_files(calc_repo, {"utils/money.py": MONEY, "test_money.py": RECORDED_TESTS})
    first = verify_candidate(repo, commit, SPEC, "utils/money.py", "test_money.py", sandbox=sandbox)
    assert first.ok and first.records_error == 1
    repaired = repair_candidate(repo, commit, SPEC, "utils/money.py", "test_money.py", first,
                                sandbox=sandbox)
    assert ("    def test_round_up(self):\n        result = money.round_up(1)\n"
            "        self.assertEqual(result, 5)\n") in repaired.text
    # The module's own TypeError is what its author wrote: kept as it is.
    assert "        with self.assertRaises(TypeError):\n            money.check('x')\n" in repaired.text
    assert repaired.rerun is not None and repaired.rerun.ok and repaired.rerun.records_error == 0


# Three passing tests that run the module: two record Python's TypeError, one asserts nothing.
ERRORS_ONLY = '''from utils import calc


class TestCalc(unittest.TestCase):
    def test_add_none(self):
        with self.assertRaises(TypeError):
            calc.add(1, None)

    def test_sub_none(self):
        with self.assertRaises(TypeError):
            calc.sub(None, 1)

    def test_call(self):
        calc.add(2, 2)
'''


@needs_bwrap
def test_status_shows_wrong_kind_tests_apart_and_ranks_value_checks_first(calc_repo, make_reconciler):
    from tests.verify.test_sync_check import REPAIRED, TASK, continued, start

    start(calc_repo)
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["checkpoints"] = [{"name_or_path": f"/models/{m}.gguf", "trait": "coding"} for m in ("alpha", "beta")]
    raw["templates"]["TestCase"]["verify"].update(prune=False, repair_rounds=0)
    raw["templates"]["TestCase"]["guided"] = False
    cfg = parse_config(raw, base_dir=Path("/models"))
    replies = {"alpha": ERRORS_ONLY, "beta": REPAIRED}
    reconciler = make_reconciler(calc_repo, cfg)
    reconciler.engines.reply = lambda m, p: continued(p, replies[m])
    reconciler.sync()
    rows = {r["model"]: r for r in current_views(GitRepo(calc_repo), cfg).rows}
    # More passing tests that run the module, but none checks a value: ranked second.
    assert rows["alpha"]["verify"].startswith("3 passed, 0 failed, 0 errors; coverage 100%")
    assert "; 2 record an error; 1 asserts nothing; values cover 0%" in rows["alpha"]["verify"]
    assert rows["beta"]["verify"].endswith("; values cover 100%")
    assert (rows["beta"]["rank"], rows["alpha"]["rank"]) == (1, 2)
    assert TASK in rows["alpha"]["branch"]


CLAMP = '''def clamp(n, low):
    if n < low:
        return low
    if n > 100:
        return 100
    return n


def first(items):
    if not items:
        return None
    return items[0]
'''


def test_variants_of_one_target_take_the_edge_cases_the_code_branches_on() -> None:
    from symergion.engine.fake import FakeEngine
    from symergion.verify import examples, guide

    # A model that writes the same literal whatever it is asked: the variants must still differ.
    engine = FakeEngine("fake", lambda p: "5]\n" if p.endswith("= [") else "5\n" if p.endswith(" = ")
                        else "None)\n")

    def sample(prompt: str, max_tokens: int, stable_prefix: int, seed: int) -> list[str]:
        return list(engine.generate(prompt, max_tokens=max_tokens, stable_prefix=stable_prefix))

    starter = examples.test_case_starter("lib/clamp.py", "test_clamp.py")
    done = guide.guided_file(lambda p, n, s: engine.generate(p, max_tokens=n, stable_prefix=s),
                             guide.GuidedTask("# lib/clamp.py\nSOURCE\n\n" + starter, starter, CLAMP, "clamp",
                                              "test_clamp.py"),
                             guide.GuideOptions(budget=600, variants=3, sample=sample))
    tree = ast.parse(done.text)
    inputs: dict[str, list[str]] = {}
    tests = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    for function in tests:
        bound = [ast.unparse(s) for s in function.body if isinstance(s, ast.Assign)
                 and isinstance(s.targets[0], ast.Name) and s.targets[0].id != "result"]
        inputs.setdefault(function.name.rstrip("_23"), []).append("; ".join(bound))
    # n is ordered against 100, the boundary, then zero; low shows no kind, so it is the model's.
    # A list's edge case is the empty list.
    assert inputs["test_clamp"] == ["n = 5; low = 5", "n = 100; low = 5", "n = 0; low = 5"]
    assert inputs["test_first"] == ["items = [5]", "items = []"]


PLAIN_ASSERT_TESTS = '''import unittest

from utils import calc


class TestCalc(unittest.TestCase):
    def test_plain(self):
        assert calc.add(1, 2) == 3

    def test_bare(self):
        calc.add(1, 2)
'''


@needs_bwrap
def test_a_plain_assert_statement_counts_as_a_check(calc_repo: Path, sandbox: Sandbox) -> None:
    commit = commit_files(calc_repo, {"test_calc.py": PLAIN_ASSERT_TESTS})
    result = verify_candidate(GitRepo(calc_repo), commit, SPEC, "utils/calc.py", "test_calc.py",
                              sandbox=sandbox)
    assert result.tests["test_calc.TestCalc.test_plain"].checks == 1
    assert result.tests["test_calc.TestCalc.test_bare"].checks == 0
    assert [r.test for r in prune(PLAIN_ASSERT_TESTS, result, "test_calc.py").removed] == [
        "test_calc.TestCalc.test_bare"]


THIRDS = '''import fractions


def third(n):
    return fractions.Fraction(n, 3)
'''

THIRDS_TESTS = '''import unittest

from utils import thirds


class TestThirds(unittest.TestCase):
    def test_third(self):
        n = 1
        result = thirds.third(n)
        self.assertEqual(result, 2)
'''


@needs_bwrap
def test_a_value_of_another_modules_class_is_checked_by_its_class_name_not_cut_to_a_bare_call(
        calc_repo: Path, sandbox: Sandbox) -> None:
    repo = GitRepo(calc_repo)
    commit = commit_files(calc_repo, {"utils/thirds.py": THIRDS, "test_thirds.py": THIRDS_TESTS})
    first = verify_candidate(repo, commit, SPEC, "utils/thirds.py", "test_thirds.py", sandbox=sandbox)
    repaired = repair_candidate(repo, commit, SPEC, "utils/thirds.py", "test_thirds.py", first,
                                sandbox=sandbox)
    # The file has no name for fractions.Fraction, and this side imports nothing a run named.
    assert "        self.assertEqual(type(result).__name__, 'Fraction')\n" in repaired.text
    assert repaired.rerun is not None and repaired.rerun.ok and repaired.rerun.unchecked == 0


REPORT = '''def describe(exc_type, value):
    name = exc_type.__name__
    if exc_type is SyntaxError:
        return 'syntax error: ' + str(value)
    return name + ': ' + str(value)
'''

RECORDED_CLASS_TESTS = '''import unittest

from utils import report


class TestReport(unittest.TestCase):
    def test_describe(self):
        with self.assertRaises(AttributeError):
            report.describe(1, 'bad')
'''


@needs_bwrap
def test_a_test_that_records_a_class_parameter_rejected_is_tried_with_a_class_the_code_checks(
        calc_repo: Path, sandbox: Sandbox) -> None:
    # ``exc_type.__name__`` on 1 raises Python's AttributeError: the code reads a class there,
    # and compares it with SyntaxError, so the repair passes that class and pins the result.
    repo = GitRepo(calc_repo)
    commit = commit_files(calc_repo, {"utils/report.py": REPORT, "test_report.py": RECORDED_CLASS_TESTS})
    first = verify_candidate(repo, commit, SPEC, "utils/report.py", "test_report.py", sandbox=sandbox)
    assert first.ok and first.records_error == 1
    repaired = repair_candidate(repo, commit, SPEC, "utils/report.py", "test_report.py", first,
                                sandbox=sandbox)
    assert ("        result = report.describe(SyntaxError, 'bad')\n"
            "        self.assertEqual(result, 'syntax error: bad')\n") in repaired.text
    assert repaired.rerun is not None and repaired.rerun.ok and repaired.rerun.records_error == 0
