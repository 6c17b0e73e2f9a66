"""Template kinds: the verify command names the kind, and the prune cuts each kind's tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symergion.config.load import load_config
from symergion.config.parse import parse_config
from symergion.config.schema import DEFAULT_CONFIG, VerifySpec
from symergion.core.chain import repair_feedback
from symergion.errors import ConfigError
from symergion.verify.kinds import PYTEST, UNITTEST, kind_of
from symergion.verify.prune import prune
from symergion.verify.result import TestOutcome, VerifyResult


@pytest.mark.parametrize(("command", "kind"), [
    ("python -m unittest {module}", "unittest"),
    ("{python} -m unittest  {module}", "unittest"),
    ("python -m pytest {destination}", "pytest"),
    ("{python} -m pytest {destination}", "pytest"),
    ("pytest {destination}", "pytest"),
    ("python -m pytest -q {destination}", None),  # options the runner would not honour
    ("make test", None),
])
def test_the_verify_command_names_the_kind(command: str, kind: str | None) -> None:
    spec = VerifySpec(command=command)
    assert (spec.kind, spec.structured) == (kind, kind is not None)
    assert kind_of(spec) is (PYTEST if kind == "pytest" else UNITTEST)


def test_the_built_in_config_has_a_pytest_template_that_runs_pytest() -> None:
    config = load_config()
    template = config.templates["PyTest"]
    assert template.verify is not None and kind_of(template.verify) is PYTEST
    assert template.guided is None
    assert template.code_starter.startswith("import pytest\n")
    assert (template.verify.prune, template.verify.coverage, template.verify.repair_rounds) == (True, True, 1)
    # A PyTest task branch gets that template, a TestCase one the unittest template.
    assert config.template_for("PyTest_bisect") is template
    assert config.template_for("TestCase_bisect") is config.templates["TestCase"]


def test_guided_writing_on_a_pytest_template_is_refused_with_the_fix() -> None:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["templates"]["PyTest"]["guided"] = True
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=Path("/"))
    assert "templates.PyTest.guided" in str(caught.value)
    assert "unittest" in str(caught.value) and 'remove "guided"' in (caught.value.hint or "")


PYTEST_FILE = '''import pytest

from utils import x


def helper():
    return 1


def test_ok():
    assert x.f(1) == 1


# checks two
@pytest.mark.parametrize("n", [1, 2])
def test_cases(n):
    assert x.f(n) == 1


def test_unchecked():
    x.f(1)


class TestGroup:
    def test_in_class(self):
        assert x.f(3) == 4

    def test_kept(self):
        assert x.f(0) == 0
'''


def outcomes(**tests: TestOutcome) -> VerifyResult:
    return VerifyResult(source="utils/x.py", tests={f"test_x.{k}": v for k, v in tests.items()})


def test_the_prune_cuts_failing_module_level_and_class_tests_of_a_pytest_file() -> None:
    result = VerifyResult(source="utils/x.py", tests={
        "test_x.test_ok": TestOutcome("passed", checks=1),
        "test_x.test_cases[1]": TestOutcome("passed", checks=1),
        "test_x.test_cases[2]": TestOutcome("failed", "AssertionError: assert 2 == 1", checks=1),
        "test_x.test_unchecked": TestOutcome("passed", checks=0),
        "test_x.TestGroup.test_in_class": TestOutcome("failed", "AssertionError", checks=1),
        "test_x.TestGroup.test_kept": TestOutcome("passed", checks=1),
    })
    pruned = prune(PYTEST_FILE, result, "test_x.py", kind=PYTEST)
    assert [r.test for r in pruned.removed] == [
        "test_x.test_cases[2]", "test_x.test_unchecked", "test_x.TestGroup.test_in_class"]
    assert not pruned.drop_reason
    # Whole functions go, with the comment above them; the helper and other tests stay as written.
    assert pruned.text == PYTEST_FILE.replace(
        '''

# checks two
@pytest.mark.parametrize("n", [1, 2])
def test_cases(n):
    assert x.f(n) == 1
''', "").replace('''

def test_unchecked():
    x.f(1)
''', "").replace('''    def test_in_class(self):
        assert x.f(3) == 4
''', "")


def test_a_pytest_file_whose_every_test_failed_is_dropped() -> None:
    failing = TestOutcome("failed", "AssertionError", checks=1)
    result = outcomes(test_ok=failing, **{"test_cases[1]": failing, "test_cases[2]": failing},
                      test_unchecked=failing, **{"TestGroup.test_in_class": failing,
                                                 "TestGroup.test_kept": failing})
    pruned = prune(PYTEST_FILE, result, "test_x.py", kind=PYTEST)
    assert pruned.drop_reason == "no passing tests left"


def test_for_unittest_a_module_level_test_function_is_no_test() -> None:
    # unittest collects no module-level functions: the prune neither cuts nor counts them.
    text = "import unittest\n\nfrom utils import x\n\n\ndef test_loose():\n    assert x.f(1) == 1\n"
    pruned = prune(text, outcomes(test_loose=TestOutcome("failed", "AssertionError")), "test_x.py")
    assert (pruned.removed, pruned.drop_reason) == ((), "no passing tests left")
    as_pytest = prune(text, outcomes(test_loose=TestOutcome("passed", checks=1)), "test_x.py", kind=PYTEST)
    assert (as_pytest.removed, as_pytest.drop_reason) == ((), "")


def test_a_repair_prompt_asks_for_the_kind_of_tests_the_template_makes() -> None:
    empty = VerifyResult(source="utils/x.py", imports_source=True)
    assert "plain assert statements" in repair_feedback(empty, "test_x.py", PYTEST)
    assert "unittest.TestCase" in repair_feedback(empty, "test_x.py", UNITTEST)


def test_a_pytest_test_expects_the_exception_the_module_raised_with_pytest_raises() -> None:
    from symergion.verify.truncate import truncate_tests

    text = ("import pytest\n\nfrom utils import x\n\n\nclass TestF:\n"
            "    def test_f(self):\n        x.f(-1)\n")
    detail = ('Traceback (most recent call last):\n  File "test_x.py", line 8, in test_f\n'
              '    x.f(-1)\n  File "utils/x.py", line 3, in f\n    raise ValueError("negative")\n'
              "ValueError: negative\n")
    result = VerifyResult(source="utils/x.py",
                          tests={"test_x.TestF.test_f": TestOutcome("error", detail)})
    new, _cut, raising = truncate_tests(text, result, "utils/x.py", "test_x.py", raises=PYTEST.raises)
    assert raising == ("test_x.TestF.test_f",)
    assert new.endswith("    def test_f(self):\n"
                        "        with pytest.raises(ValueError):\n            x.f(-1)\n")
