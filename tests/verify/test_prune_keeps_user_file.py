"""A pruned candidate never deletes the user's file: the destination comes back as it was at
the task tip (real git, the real bubblewrap sandbox, a fake model)."""

from __future__ import annotations

import pytest

from tests.helpers.fleet import FakeFleet
from tests.helpers.git import git
from tests.helpers.verify import commit_files, needs_bwrap
from tests.verify.test_sync_check import EMPTY, TASK, config, continued, messages, start, subjects

pytestmark = needs_bwrap

USER_TEST = '''import unittest

from utils import calc


class TestCalc(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(1, 2), 3)
'''


@pytest.fixture
def fleet() -> FakeFleet:
    """A model whose file tests nothing of the source: prune drops it."""
    return FakeFleet(lambda _m, p: continued(p, EMPTY))


def test_a_dropped_candidate_restores_the_users_destination(calc_repo, make_reconciler):
    commit_files(calc_repo, {"test_calc.py": USER_TEST}, "the user's passing test")
    start(calc_repo)
    cfg = config("import unittest\n", repair_rounds=0)
    report = make_reconciler(calc_repo, cfg).sync()
    assert not report.failed, report.as_dict()
    assert subjects(calc_repo)[-1].startswith(f"Prune: restored test_calc.py as on {TASK} (")
    assert "Symergion-Prune: dropped" in messages(calc_repo)[-1]
    assert git(calc_repo, "diff", "--stat", TASK, f"alpha_{TASK}") == ""
    assert git(calc_repo, "show", f"alpha_{TASK}:test_calc.py") == USER_TEST
