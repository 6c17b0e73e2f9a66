"""What leaves the machine: a teammate's task cannot make a sync push a file's content back.

Real git (a bare remote, a teammate's clone, the victim's clone), the CLI's ``sync --remote``,
the real sandbox or none, fake models. The teammate pushes a task whose source raises an
ImportError carrying a secret file's content at import; every candidate then fails, and the
failure text is what ``Prune:`` and ``Repair:`` commits record and the sync pushes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import symergion.app.runtime as runtime
from symergion.cli.main import main
from symergion.config.schema import DEFAULT_CONFIG
from symergion.engine.fake import FakeEngine
from symergion.verify.report import WITHHELD, Report
from tests.helpers.git import git
from tests.helpers.verify import CALC, commit_files

TASK = "TestCase_calc"
SECRET = "hunter2-Zq8vK3mP9xR2wLb"
TOKEN = "ghp_9fQ2xKcT4mWv7LrB1nZs8YdE3uHa6JpG0tXo"
TEST_FILE = '''from utils import calc


class TestCalc(unittest.TestCase):
    def test_add(self):
        self.assertEqual(calc.add(1, 2), 3)
'''


def reply(_model: str, prompt: str) -> str:
    opener = "(unittest.TestCase):\n"
    return TEST_FILE.split(opener, 1)[1] if prompt.endswith(opener) else TEST_FILE


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    engines: dict[str, FakeEngine] = {}

    def load(_config: Any, checkpoint: Any) -> FakeEngine:
        name = checkpoint.model_name
        return engines.setdefault(name, FakeEngine(name, lambda p, n=name: reply(n, p)))

    monkeypatch.setattr(runtime, "load_engine", load)
    monkeypatch.setattr(runtime, "fingerprint", lambda _config, c: f"fp-{c.model_name}")


def config_file(tmp_path: Path) -> Path:
    raw = json.loads(json.dumps(DEFAULT_CONFIG))
    raw["templates"]["TestCase"]["guided"] = False
    raw["templates"]["TestCase"]["verify"].update({"prune": True, "repair_rounds": 1, "runs": 1})
    raw["checkpoints"] = [{"name_or_path": "/models/alpha.gguf", "trait": "coding"}]
    path = tmp_path / "symergion.json"
    path.write_text(json.dumps(raw))
    return path


def everything_pushed(remote: Path) -> str:
    """Return every commit message and note text the remote holds."""
    messages = git(remote, "log", "--all", "--format=%B")
    notes = git(remote, "log", "--format=%H", "refs/notes/commits", "--").split()
    texts = [git(remote, "show", f"{n}:{path}") for n in notes[:1]
             for path in git(remote, "ls-tree", "-r", "--name-only", n).split()]
    return messages + "\n".join(texts)


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_a_secret_raised_at_import_never_reaches_a_pushed_commit(
        mode: str, tmp_path: Path, fake_models: None, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    if mode == "bwrap":
        request.getfixturevalue("bwrap_available")
    monkeypatch.setenv("SYMERGION_SANDBOX", mode)
    # The victim's clone lives outside HOME, as CI runners keep them, with a token in its config.
    remote, mate, victim = tmp_path / "remote.git", tmp_path / "mate", tmp_path / "victim"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    mate.mkdir()
    git(mate, "init", "-q", "-b", "main")
    commit_files(mate, {"utils/__init__.py": "", "utils/calc.py": CALC}, "initial")
    git(mate, "remote", "add", "origin", str(remote))
    git(mate, "push", "-q", "origin", "main")
    git(tmp_path, "clone", "-q", str(remote), str(victim))
    git(victim, "config", "credential.token", TOKEN)
    secret = tmp_path / "srv" / "secret"
    secret.parent.mkdir()
    secret.write_text(f"password = {SECRET}\n")
    config = victim / ".git" / "config"
    # The teammate's task: its source sends both files back through the failure text.
    git(mate, "checkout", "-q", "-b", TASK)
    commit_files(mate, {"utils/calc.py": CALC + f"\nraise ImportError(open({str(secret)!r}).read() + "
                                                f"open({str(config)!r}).read())\n"}, "the task")
    git(mate, "notes", "add", "-m",
        f"task_branch: {TASK}, source: utils/calc.py, destination: test_calc.py", TASK)
    git(mate, "push", "-q", "origin", TASK, "refs/notes/commits")

    code = main(["sync", "--remote", "origin", "--repo", str(victim), "--config", str(config_file(tmp_path))])
    assert code == 0

    pushed = everything_pushed(remote)
    # The failure was recorded and pushed: the check below looks at real commit bodies.
    assert f"alpha_{TASK}" in git(remote, "branch", "--list", f"alpha_{TASK}")
    assert "cannot be imported" in pushed or "LOAD" in pushed, pushed
    assert "ImportError" in pushed or "FileNotFoundError" in pushed, pushed
    for leaked in (SECRET, "hunter2", "Zq8vK3mP9xR2wLb", TOKEN, "9fQ2xKcT4mWv7LrB1nZs8YdE3uHa6JpG0tXo"):
        assert leaked not in pushed
        assert leaked not in git(victim, "log", "--all", "--format=%B")


def test_a_report_keeps_the_tests_own_words_and_withholds_the_rest(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "utils").mkdir(parents=True)
    (checkout / "utils" / "calc.py").write_text(CALC)
    (checkout / "test_calc.py").write_text(TEST_FILE + "        self.assertEqual(calc.sub(5, 2), 4)\n")
    report = Report(checkout)
    traceback = (
        'Traceback (most recent call last):\n'
        '  File "/usr/lib/python3.11/unittest/case.py", line 57, in testPartExecutor\n'
        '    yield\n'
        '  File "test_calc.py", line 7, in test_add\n'
        '    self.assertEqual(calc.sub(5, 2), 4)\n'
        'AssertionError: 3 != 4\n')
    kept = report.detail(traceback)
    assert kept == ('Traceback (most recent call last):\n'
                    '  File "test_calc.py", line 7, in test_add\n'
                    '    self.assertEqual(calc.sub(5, 2), 4)\n'
                    'AssertionError: 3 != 4')
    assert report.detail(f"ImportError: password = {SECRET}") == \
        f"ImportError: {WITHHELD} = {WITHHELD}-{WITHHELD}"
    assert report.detail("NameError: name 'subtract' is not defined") == \
        f"NameError: name '{WITHHELD}' is not defined"
    assert report.detail("OSError: [Errno 28] No space left on device") == \
        "OSError: [Errno 28] No space left on device"
    assert len(report.detail("AssertionError: " + "1 " * 10000)) < 4100
    # A compared value made of words of the checkout is kept for a pin; any other is not.
    assert report.literal("'add'") == "'add'" and report.literal(f"'{SECRET}'") is None
    assert report.test_id("test_calc.TestCalc.test_add") == "test_calc.TestCalc.test_add"


def test_a_secret_made_of_the_checkouts_words_is_still_redacted(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    key = "AKIAIOSFODNN7EXAMPLE"
    (checkout / "settings.py").write_text(f"KEY = '{key}'\n")
    report = Report(checkout)
    assert report.words_only(key) == key  # the filter alone would let it through
    kept = report.detail(f"AssertionError: '{key}' != ''")
    assert key not in kept and "[redacted AWS Access Key]" in kept
