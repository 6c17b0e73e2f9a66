"""The kinds of test file a template makes, and what the pass needs to know of each.

A template's verify command names its kind (``VerifySpec.kind``): ``python -m unittest
{module}`` makes unittest files, ``python -m pytest {destination}`` pytest files. Everything
else the pass does with a candidate is the same machinery for both: the sandboxed run with
per-test outcomes and coverage, ranking, the prune that cuts tests by id, and the model repair
round. A kind says only what differs:

- ``runner``: the script of this package that runs one file's tests in the sandbox and writes
  the same events for every kind (``runner.py`` with unittest, ``pytest_runner.py`` with real
  pytest); test ids are dotted (``test_x.TestX.test_a``, ``test_x.test_a``) for both;
- ``top_level_tests``: whether module-level ``test*`` functions are tests (pytest collects them,
  unittest does not), so the prune may cut them and counts them as tests left;
- ``no_tests``: how a repair prompt asks for tests when a file has none;
- ``guided``: whether guided writing (``symergion.verify.guide``: the worked example, openers,
  the deterministic repairs) can write its files. It writes unittest files only; the config
  refuses ``guided`` on a template of another kind;
- ``repairs_unguided``: whether the repairs without a model (``symergion.verify.repair``) run on
  its files when no guided writer wrote them. Of those repairs, qualifying a bare name of the
  module holds in any file; the others act on unittest's assertion calls and test methods, and
  do nothing to module-level pytest functions. ``raises`` is how a repair expects an exception.

A command that is no kind's (``make test``) runs as written, with its exit status and summary
line as the only result.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from symergion.config.schema import PYTEST_KIND, UNITTEST_KIND, VerifySpec


@dataclass(frozen=True)
class TestKind:
    """What differs between the kinds of test file: see the module's docstring."""

    __test__ = False  # not a test class, whatever pytest's name rules say

    name: str
    runner: str
    top_level_tests: bool
    no_tests: str
    guided: bool
    repairs_unguided: bool
    raises: str

    def tests(self, tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
        """Return the test functions of a parsed file: its test classes' and, for a kind that
        collects them, its module-level ones."""
        found = [s for node in tree.body if isinstance(node, ast.ClassDef) for s in node.body
                 if is_test(s)]
        if self.top_level_tests:
            found += [node for node in tree.body if is_test(node)]
        return found  # type: ignore[return-value]


def is_test(node: ast.stmt) -> bool:
    """Return whether a statement defines a test function (its name starts with ``test``)."""
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")


UNITTEST = TestKind(
    name=UNITTEST_KIND,
    runner="runner.py",
    top_level_tests=False,
    no_tests="write test methods (def test_...) in a unittest.TestCase class",
    guided=True,
    repairs_unguided=False,
    raises="self.assertRaises",
)
PYTEST = TestKind(
    name=PYTEST_KIND,
    runner="pytest_runner.py",
    top_level_tests=True,
    no_tests="write test functions (def test_...) with plain assert statements",
    guided=False,
    repairs_unguided=True,
    raises="pytest.raises",
)
KINDS = {kind.name: kind for kind in (UNITTEST, PYTEST)}


def kind_of(spec: VerifySpec | None) -> TestKind:
    """Return the kind of test file a verify section's command runs; unittest for any other."""
    kind = spec.kind if spec is not None else None
    return KINDS[kind] if kind is not None else UNITTEST
